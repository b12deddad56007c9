"""The ONNX int8 recipe: int8 weights (one scale per output channel), float activations.

Every MatMul over a weight becomes the pattern ORT's own `quantize_dynamic` writes
(DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul), which ORT fuses into one
DynamicQuantizeMatMul at session load. It is written here rather than by quantize_dynamic because
the tied embedding must stay one tensor: quantize_dynamic transposes the head's weight in place,
breaking the lookup that reads the same table (or stores the table twice). Here the table is one
int8 (C, V) tensor with a scale per token: the head multiplies by it, the lookup gathers its columns
and rescales them. Symmetric int8 (zero point 0), as quantize_dynamic's default for weights, from the
project's one int8 quantizer (quantization.int8_rows), in 7 bits (|q| <= 63, quantize_dynamic's
`reduce_range`): ORT multiplies uint8 activations by int8 weights with VPMADDUBSW on AVX2 CPUs without
VNNI, whose int16 pair sums saturate for full-range weights (logit errors of a third of their range on
a small random model); the file must run the same on every CPU.
"""

import numpy as np

WEIGHT_LEVELS = 63  # quantize_dynamic's reduce_range


def quantize(graph, weights, table):
    """Rewrites the fp32 graph (onnx_passes, tie_head done) in place; `table` = the embedding's name."""
    q_table, s_table = share_int8_table(graph, weights, table)
    count = {}
    for node in graph.node:
        for name in node.input:
            count[name] = count.get(name, 0) + 1
    for node in [n for n in graph.node if n.op_type == "MatMul" and weights.get(n.input[1]) is not None
                 and weights[n.input[1]].ndim == 2]:
        name = node.input[1]
        q, scale = _per_column(weights[name])  # (in, out) int8, (out,)
        weights[f"{name}.int8"], weights[f"{name}.scale"] = q, scale
        count[name] -= 1
        if count[name] == 0:
            del weights[name]
        _int8_matmul(graph, node, f"{name}.int8", f"{name}.scale")
    head = next((n for n in graph.node if n.op_type == "Gemm" and n.input[1] == table), None)
    if head is not None:  # the base-model graph has no head
        _int8_matmul(graph, head, q_table, s_table)
    del weights[table]


def _per_column(w):
    """(in, out) float -> int8 (in, out) in [-WEIGHT_LEVELS, WEIGHT_LEVELS], float32 scale (out,): the
    project's int8 quantizer (quantization.int8_rows) over the columns."""
    from tfgpt2 import quantization

    q, scale = quantization.int8_rows(np.ascontiguousarray(w.T), WEIGHT_LEVELS)  # (out, in), (out,)
    return np.ascontiguousarray(q.numpy().T), scale.numpy()


def _int8_matmul(graph, node, q_name, s_name):
    """node (MatMul x @ W, or the head's Gemm) -> x @ int8 weight `q_name` (in, out) * scales `s_name` (out,)."""
    from onnx import helper

    from tfgpt2.export.onnx_passes import replace

    x, out, p = node.input[0], node.output[0], f"{node.output[0]}/int8"
    replace(graph, node, [
        helper.make_node("DynamicQuantizeLinear", [x], [f"{p}/x", f"{p}/x_scale", f"{p}/x_zero"]),
        helper.make_node("MatMulInteger", [f"{p}/x", q_name, f"{p}/x_zero"], [f"{p}/acc"]),  # (..., out) int32
        helper.make_node("Cast", [f"{p}/acc"], [f"{p}/acc_f"], to=1),
        helper.make_node("Mul", [f"{p}/x_scale", s_name], [f"{p}/scales"]),  # (out,)
        helper.make_node("Mul", [f"{p}/acc_f", f"{p}/scales"], [out])])


def share_int8_table(graph, weights, table):
    """The lookup Gather(table (V, C), ids) -> rows of one int8 (C, V) table * per-token scales.
    Returns the int8 table's and the scales' names (the head reads them too)."""
    from onnx import helper

    from tfgpt2.export.onnx_passes import replace

    q, scale = _per_column(weights[table].T)  # (C, V) int8, (V,)
    q_name, s_name = f"{table}.int8", f"{table}.scale"
    weights[q_name], weights[s_name] = np.ascontiguousarray(q), scale
    weights["wte_int8/last_axis"] = np.array([-1], np.int64)
    lookup = next(n for n in graph.node if n.op_type == "Gather" and n.input[0] == table)
    ids, rows = lookup.input[1], lookup.output[0]
    replace(graph, lookup, [
        helper.make_node("Gather", [q_name, ids], ["wte_int8/columns"], axis=1),  # (C, B, T)
        helper.make_node("Transpose", ["wte_int8/columns"], ["wte_int8/rows"], perm=[1, 2, 0]),  # (B, T, C)
        helper.make_node("Cast", ["wte_int8/rows"], ["wte_int8/rows_f"], to=1),
        helper.make_node("Gather", [s_name, ids], ["wte_int8/scale"], axis=0),  # (B, T)
        helper.make_node("Unsqueeze", ["wte_int8/scale", "wte_int8/last_axis"], ["wte_int8/scale_1"]),
        helper.make_node("Mul", ["wte_int8/rows_f", "wte_int8/scale_1"], [rows])])  # (B, T, C)
    return q_name, s_name
