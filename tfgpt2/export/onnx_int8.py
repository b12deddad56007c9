"""The ONNX int8 recipe: int8 weights, float activations, the tied embedding stored once as int8.

ORT's `quantize_dynamic` quantizes every MatMul weight (per output channel) but would quantize the
tied head by transposing the embedding table in place, breaking the lookup that reads it, or store the
table twice. So the table is quantized here first, once, as int8 (C, V) with one scale per token:
the lookup gathers its columns and rescales them; the head is the pattern quantize_dynamic itself
writes (DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul), which ORT fuses into one
DynamicQuantizeMatMul at session load.
"""

import numpy as np


def quantize(proto, table):
    """The int8 ModelProto of the fp32 `proto` (onnx_export.convert); `table` = the embedding's name."""
    import os
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    share_int8_table(proto.graph, table)
    with tempfile.TemporaryDirectory() as tmp:  # quantize_dynamic writes its result to a file
        out = os.path.join(tmp, "int8.onnx")
        quantize_dynamic(proto, out, op_types_to_quantize=["MatMul"], per_channel=True, weight_type=QuantType.QInt8,
                         extra_options={"MatMulConstBOnly": True})
        return onnx.load(out)


def share_int8_table(graph, table):
    """Gather(table, ids) and the Gemm head over `table` -> both read one int8 (C, V) table + (V,) scales."""
    from onnx import helper, numpy_helper

    from tfgpt2.export.onnx_export import _replace

    init = next(i for i in graph.initializer if i.name == table)
    values = numpy_helper.to_array(init)  # (V, C)
    scale = np.maximum(np.abs(values).max(axis=1), 1e-12) / 127.0  # (V,)
    q = np.clip(np.round(values / scale[:, None]), -127, 127).astype(np.int8)  # (V, C)
    q_name, s_name = f"{table}.int8", f"{table}.scale"
    graph.initializer.remove(init)
    graph.initializer.extend([numpy_helper.from_array(np.ascontiguousarray(q.T), q_name),  # (C, V)
                              numpy_helper.from_array(scale.astype(np.float32), s_name)])
    del values, q
    lookup = next(n for n in graph.node if n.op_type == "Gather" and n.input[0] == table)
    head = next(n for n in graph.node if n.op_type == "Gemm" and n.input[1] == table)
    ids, rows = lookup.input[1], lookup.output[0]
    _replace(graph, lookup, [
        helper.make_node("Gather", [q_name, ids], ["wte_int8/columns"], axis=1),  # (C, B, T)
        helper.make_node("Transpose", ["wte_int8/columns"], ["wte_int8/rows"], perm=[1, 2, 0]),  # (B, T, C)
        helper.make_node("Cast", ["wte_int8/rows"], ["wte_int8/rows_f"], to=1),
        helper.make_node("Gather", [s_name, ids], ["wte_int8/scale"], axis=0),  # (B, T)
        helper.make_node("Unsqueeze", ["wte_int8/scale", "wte_int8/last_axis"], ["wte_int8/scale_1"]),
        helper.make_node("Mul", ["wte_int8/rows_f", "wte_int8/scale_1"], [rows])])  # (B, T, C)
    hidden, logits = head.input[0], head.output[0]  # (N, C) -> (N, V)
    _replace(graph, head, [
        helper.make_node("DynamicQuantizeLinear", [hidden], ["head_int8/x", "head_int8/x_scale", "head_int8/x_zero"]),
        helper.make_node("MatMulInteger", ["head_int8/x", q_name, "head_int8/x_zero"], ["head_int8/acc"]),  # (N, V)
        helper.make_node("Cast", ["head_int8/acc"], ["head_int8/acc_f"], to=1),
        helper.make_node("Mul", ["head_int8/x_scale", s_name], ["head_int8/scales"]),  # (V,)
        helper.make_node("Mul", ["head_int8/acc_f", "head_int8/scales"], [logits])])
    graph.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), "wte_int8/last_axis"))
