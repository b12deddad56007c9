"""Passes over the converted ONNX graph, with the weights beside it as numpy arrays.

tf2onnx converts a graph whose weights are inputs (onnx_graph.py). The passes here keep the weights
in a dict {initializer name: array} instead of inside the ModelProto until the file is written:
protobuf keeps the memory of removed tensors until the whole message is freed, so folding inside
the proto held every weight twice.
"""

import numpy as np

_FOLDABLE = ("Transpose", "Concat", "Reshape", "Cast", "Unsqueeze", "Squeeze")


def inputs_to_weights(graph, variables):
    """{name: array} for the graph inputs `weight_<j>` = `variables[j]`, renamed after the Keras variables
    (onnx_graph.weight_name) and no longer graph inputs."""
    from tfgpt2.export.onnx_graph import weight_name

    names = {f"weight_{j}": weight_name(v) for j, v in enumerate(variables)}
    for node in graph.node:
        node.input[:] = [names.get(i, i) for i in node.input]
    for graph_input in [i for i in graph.input if i.name in names]:
        graph.input.remove(graph_input)
    return {weight_name(v): np.asarray(v.numpy()) for v in variables}


def constants_to_weights(graph, weights):
    """Moves the converter's own initializers (shapes, scalars) into `weights` too."""
    from onnx import numpy_helper

    for init in list(graph.initializer):
        weights[init.name] = numpy_helper.to_array(init)
        graph.initializer.remove(init)


def replace(graph, node, nodes):
    """Puts `nodes` where `node` was (the graph's nodes stay in topological order)."""
    at = list(graph.node).index(node)
    graph.node.remove(node)
    for k, new in enumerate(nodes):
        graph.node.insert(at + k, new)


def readers(graph):
    """{tensor name: how many node inputs and graph outputs read it}."""
    counts = {}
    for name in [i for n in graph.node for i in n.input] + [o.name for o in graph.output]:
        counts[name] = counts.get(name, 0) + 1
    return counts


def fold_weights(graph, weights):
    """Replaces each node in _FOLDABLE whose inputs are all weights by its result (a weight), dropping a
    weight as soon as nothing reads it. A Transpose of a table that a Gather also reads stays (folding
    it would store the table twice): tie_head turns it into a Gemm."""
    from onnx import helper

    count = readers(graph)
    gathered = {n.input[0] for n in graph.node if n.op_type == "Gather"}
    for node in list(graph.node):  # topological order: a folded result is folded further by later nodes
        inputs = [i for i in node.input if i]
        if node.op_type not in _FOLDABLE or not all(i in weights for i in inputs):
            continue
        if node.op_type == "Transpose" and inputs[0] in gathered:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        result = np.ascontiguousarray(_fold(node.op_type, [weights[i] for i in inputs], attrs))
        graph.node.remove(node)
        for name in inputs:
            count[name] -= 1
            if count[name] == 0:
                del weights[name]
        weights[node.output[0]] = result


def _fold(op, values, attrs):
    from onnx import helper

    x = values[0]
    if op == "Transpose":
        return np.transpose(x, attrs.get("perm"))
    if op == "Concat":
        return np.concatenate(values, attrs["axis"])
    if op == "Reshape":
        return x.reshape([x.shape[k] if d == 0 else d for k, d in enumerate(values[1].tolist())])
    if op == "Cast":
        return x.astype(helper.tensor_dtype_to_np_dtype(attrs["to"]))
    axes = tuple(values[1].tolist()) if len(values) > 1 else tuple(attrs.get("axes", ()))
    if op == "Unsqueeze":
        for axis in sorted(a % (x.ndim + len(axes)) for a in axes):
            x = np.expand_dims(x, axis)
        return x
    return np.squeeze(x, axes or None)


def reduce_means(graph):
    """GlobalAveragePool -> ReduceMean over the last axis. tf2onnx rewrites the layer norms' means of
    (B, T, C) tensors as pools over the trailing axis, which ORT's LayerNormFusion does not match."""
    from onnx import helper

    for node in [n for n in graph.node if n.op_type == "GlobalAveragePool"]:
        replace(graph, node, [helper.make_node("ReduceMean", list(node.input), list(node.output), axes=[-1],
                                               keepdims=1, name=node.name)])


def tie_head(graph, weights, table):
    """MatMul(h, Transpose(table)) -> Gemm(h2d, table, transB=1): the head reads the lookup's table."""
    from onnx import helper

    transposes = {n.output[0]: n for n in graph.node if n.op_type == "Transpose" and n.input[0] == table}
    heads = [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in transposes]
    if not transposes:
        return
    if len(heads) != 1:
        raise ValueError(f"expected one tied head MatMul over {table}, found {len(heads)}")
    head = heads[0]
    vocab, width = weights[table].shape
    weights["head/rows_shape"], weights["head/vocab"] = np.array([-1, width], np.int64), np.array([vocab], np.int64)
    graph.node.remove(transposes[head.input[1]])
    replace(graph, head, [
        helper.make_node("Shape", [head.input[0]], ["head/shape"], end=-1),
        helper.make_node("Reshape", [head.input[0], "head/rows_shape"], ["head/rows"]),  # (N, C)
        helper.make_node("Gemm", ["head/rows", table], ["head/logits_2d"], transB=1),  # (N, V)
        helper.make_node("Concat", ["head/shape", "head/vocab"], ["head/logits_shape"], axis=0),
        helper.make_node("Reshape", ["head/logits_2d", "head/logits_shape"], [head.output[0]])])  # (B, T, V)


def drop_unused(graph, weights):
    count = readers(graph)
    for name in [n for n in weights if n not in count]:
        del weights[name]


def dim_names(name, config):
    """Symbolic dims of a graph input/output, in the names ORT GenAI and optimum use."""
    H, D = config.n_head, config.head_dim
    if name in ("input_ids", "position_ids"):
        return ["batch_size", "sequence_length"]
    if name == "attention_mask":
        return ["batch_size", "total_sequence_length"]
    if name == "logits":
        return ["batch_size", "sequence_length", config.vocab_size]
    if name == "last_hidden_state":
        return ["batch_size", "sequence_length", config.n_embd]
    if name.startswith("past_key_values."):
        return ["batch_size", H, "past_sequence_length", D]
    if name.startswith("present."):
        return ["batch_size", H, "total_sequence_length", D]
    return None


def name_dims(graph, config):
    for value in list(graph.input) + list(graph.output):
        names = dim_names(value.name, config)
        dims = value.type.tensor_type.shape.dim
        if names is None or len(names) != len(dims):
            continue
        for dim, want in zip(dims, names):
            if isinstance(want, str):
                dim.ClearField("dim_value")
                dim.dim_param = want
            else:
                dim.ClearField("dim_param")
                dim.dim_value = want
