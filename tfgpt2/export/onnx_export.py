"""ONNX export: build the graph (onnx_graph.py), convert with tf2onnx, write a directory ORT GenAI opens.

    DIR/onnx/<recipe>/model.onnx         (+ model.onnx.data for models over protobuf's 2 GB)
    DIR/onnx/<recipe>/genai_config.json  ORT GenAI "decoder" model (the LM graph only)
    DIR/onnx/<recipe>/tokenizer.json     HF tokenizers file of the bundled GPT-2 vocabulary

Conversion: tf2onnx sees the weights as graph inputs (no constants to freeze and copy); here they
become initializers named after the Keras variables, and the weight-only Transpose/Concat/Reshape
nodes the converter wrote are folded into them. The tied LM head reads the embedding table itself
(fp32: a Gemm with transB; int8: one int8 table that both the lookup and the head read), so the
table is stored once. int8 = ORT's dynamic quantization of every other MatMul weight (onnx_int8.py).
Every file written is loaded back in ONNX Runtime before the export goes on.
"""

import json
import os

import numpy as np

ONNX_OPSET = 17
GRAPHS = ("lm", "base")  # logits, or the base model's last_hidden_state
INSTALL = "pip install 'tfgpt2[onnx]' (tf2onnx, onnxruntime, tokenizers)"
_FOLDABLE = ("Transpose", "Concat", "Reshape", "Cast", "Unsqueeze", "Squeeze")


def check_installed():
    """ImportError naming the install command when a library the ONNX export needs is missing."""
    import importlib.util

    missing = [m for m in ("tf2onnx", "onnx", "onnxruntime", "tokenizers") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"the ONNX export needs {', '.join(missing)}: {INSTALL}")


def write_recipe(model, recipe, directory, base=False):
    """DIR/model.onnx (+ genai_config.json for the LM graph) and tokenizer.json for `recipe` (recipes.Recipe:
    fp32, or int8 when it quantizes dynamically); loaded back in ORT and run on one token. {"bytes": ...}"""
    import gc

    from tfgpt2.export import onnx_int8
    from tfgpt2.export.contract import special_tokens
    from tfgpt2.export.onnx_graph import weight_name

    proto = convert(model, base)
    if recipe.optimize == "dynamic":
        proto = onnx_int8.quantize(proto, weight_name(model.transformer.wte.embeddings))
    elif recipe.optimize is not None:
        raise ValueError(f"recipe {recipe.name!r} has no ONNX form; ONNX recipes: fp32, int8.")
    path = save(proto, directory)
    del proto
    gc.collect()
    check_runs(path)
    if not base:
        write_genai_config(directory, model.config, special_tokens(model.config)[0], model.config.n_positions)
    write_tokenizer_json(directory)
    return {"bytes": sum(os.path.getsize(os.path.join(directory, n)) for n in os.listdir(directory)
                         if n.startswith("model.onnx"))}


def check_runs(path):
    """Loads `path` in ONNX Runtime and runs one token (ValueError naming the file if either fails)."""
    from tfgpt2.export.onnx_run import OnnxLM

    lm = OnnxLM(path, threads=1)
    lm.reset()
    try:
        lm.step(np.zeros((1, 1), np.int64))
    except Exception as e:  # onnxruntime's own exception types
        raise ValueError(f"ONNX Runtime loads {os.path.basename(path)} but cannot run it: "
                         f"{str(e).strip().splitlines()[0]}") from None


def convert(model, base=False):
    """The fp32 ModelProto of `model`'s graph (onnx_graph.graph_function), weights as initializers."""
    import tf2onnx

    from tfgpt2.export import onnx_graph

    _patch_tf2onnx()
    fn, signature, variables = onnx_graph.graph_function(model, base)
    proto, _ = tf2onnx.convert.from_function(fn, signature, opset=ONNX_OPSET)
    weights = {f"weight_{j}": v for j, v in enumerate(variables)}
    _inputs_to_initializers(proto.graph, weights)
    fold_weights(proto.graph)
    _reduce_means(proto.graph)
    tie_head(proto.graph, onnx_graph.weight_name(model.transformer.wte.embeddings))
    name_dims(proto.graph, model.config)
    _drop_unused(proto.graph)
    return proto


def _patch_tf2onnx():
    """tf2onnx 1.17 uses numpy aliases numpy 2 removed; Keras ships the patch (keras.export's ONNX path)."""
    try:
        from keras.src.export.tf2onnx_lib import patch_tf2onnx
    except ImportError:  # a Keras without it: numpy < 2 needs none
        return
    patch_tf2onnx()


def _inputs_to_initializers(graph, weights):
    from onnx import numpy_helper

    from tfgpt2.export.onnx_graph import weight_name

    for graph_input in [i for i in graph.input if i.name in weights]:
        variable = weights[graph_input.name]
        name = weight_name(variable)
        for node in graph.node:
            node.input[:] = [name if i == graph_input.name else i for i in node.input]
        graph.input.remove(graph_input)
        graph.initializer.append(numpy_helper.from_array(np.asarray(variable.numpy()), name))


def fold_weights(graph):
    """Replaces each node in _FOLDABLE whose inputs are all initializers by its result (an initializer).

    A Transpose of a table that a Gather also reads stays (folding it would store the table twice):
    tie_head turns it into a Gemm.
    """
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in graph.initializer}
    gathered = {n.input[0] for n in graph.node if n.op_type == "Gather"}
    changed = True
    while changed:
        changed = False
        for node in list(graph.node):
            inputs = [i for i in node.input if i]
            if node.op_type not in _FOLDABLE or not all(i in inits for i in inputs):
                continue
            if node.op_type == "Transpose" and inputs[0] in gathered:
                continue
            values = [numpy_helper.to_array(inits[i]) for i in inputs]
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            result = _fold(node.op_type, values, attrs)
            graph.node.remove(node)
            new = numpy_helper.from_array(np.ascontiguousarray(result), node.output[0])
            graph.initializer.append(new)
            inits[new.name] = new
            changed = True
    _drop_unused(graph)


def _fold(op, values, attrs):
    from onnx import helper

    x = values[0]
    if op == "Transpose":
        return np.transpose(x, attrs.get("perm"))
    if op == "Concat":
        return np.concatenate(values, attrs["axis"])
    if op == "Reshape":
        shape = [x.shape[k] if d == 0 else d for k, d in enumerate(values[1].tolist())]
        return x.reshape(shape)
    if op == "Cast":
        return x.astype(helper.tensor_dtype_to_np_dtype(attrs["to"]))
    axes = tuple(values[1].tolist()) if len(values) > 1 else tuple(attrs.get("axes", ()))
    if op == "Unsqueeze":
        for axis in sorted(a % (x.ndim + len(axes)) for a in axes):
            x = np.expand_dims(x, axis)
        return x
    return np.squeeze(x, axes or None)


def _reduce_means(graph):
    """GlobalAveragePool -> ReduceMean over the last axis. tf2onnx rewrites the layer norms' means of
    (B, T, C) tensors as pools over the trailing axis, which ORT's LayerNormFusion does not match."""
    from onnx import helper

    for node in [n for n in graph.node if n.op_type == "GlobalAveragePool"]:
        _replace(graph, node, [helper.make_node("ReduceMean", list(node.input), list(node.output), axes=[-1],
                                                keepdims=1, name=node.name)])


def _replace(graph, node, nodes):
    """Puts `nodes` where `node` was (the graph's nodes stay in topological order)."""
    at = list(graph.node).index(node)
    graph.node.remove(node)
    for k, new in enumerate(nodes):
        graph.node.insert(at + k, new)


def tie_head(graph, table):
    """MatMul(h, Transpose(table)) -> Gemm(h2d, table, transB=1): the head reads the lookup's table."""
    from onnx import helper, numpy_helper

    transposes = {n.output[0]: n for n in graph.node if n.op_type == "Transpose" and n.input[0] == table}
    heads = [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in transposes]
    if not transposes:
        return
    if len(heads) != 1:
        raise ValueError(f"expected one tied head MatMul over {table}, found {len(heads)}")
    head = heads[0]
    rows, out = head.input[0], head.output[0]
    width = _table_shape(graph, table)  # (V, C)
    nodes = [helper.make_node("Shape", [rows], ["head/shape"], end=-1),
             helper.make_node("Reshape", [rows, "head/rows_shape"], ["head/rows"]),
             helper.make_node("Gemm", ["head/rows", table], ["head/logits_2d"], transB=1),
             helper.make_node("Concat", ["head/shape", "head/vocab"], ["head/logits_shape"], axis=0),
             helper.make_node("Reshape", ["head/logits_2d", "head/logits_shape"], [out])]
    graph.initializer.extend([numpy_helper.from_array(np.array([-1, width[1]], np.int64), "head/rows_shape"),
                              numpy_helper.from_array(np.array([width[0]], np.int64), "head/vocab")])
    graph.node.remove(transposes[head.input[1]])
    _replace(graph, head, nodes)


def _table_shape(graph, name):
    return next(tuple(i.dims) for i in graph.initializer if i.name == name)


def _drop_unused(graph):
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)


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


def save(proto, directory):
    """DIR/model.onnx; tensors in DIR/model.onnx.data when the model is over protobuf's 2 GB limit."""
    import onnx

    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "model.onnx")
    large = sum(len(i.raw_data) for i in proto.graph.initializer) > (1 << 31) - (64 << 20)
    onnx.save(proto, path, save_as_external_data=large, location="model.onnx.data" if large else None)
    return path


def session(path, threads=2):
    """An ONNX Runtime CPU session on `path` (ValueError naming the file when ORT refuses it)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail / InvalidGraph / ... types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"ONNX Runtime cannot load {os.path.basename(path)}: {first}") from None


def genai_config(config, special, context_length):
    """genai_config.json for ORT GenAI's "decoder" model type over the LM graph."""
    L = config.n_layer
    eos = special["eos_token_id"]
    model = {"type": "decoder", "vocab_size": config.vocab_size, "context_length": context_length,
             "eos_token_id": eos if eos is not None else [],
             "pad_token_id": special["pad_token_id"] if special["pad_token_id"] is not None else 0,
             "bos_token_id": special["bos_token_id"] if special["bos_token_id"] is not None else 0,
             "decoder": {"filename": "model.onnx", "session_options": {"provider_options": []},
                         "head_size": config.head_dim, "hidden_size": config.n_embd, "num_hidden_layers": L,
                         "num_attention_heads": config.n_head, "num_key_value_heads": config.n_head,
                         "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask",
                                    "position_ids": "position_ids",
                                    "past_key_names": "past_key_values.%d.key",
                                    "past_value_names": "past_key_values.%d.value"},
                         "outputs": {"logits": "logits", "present_key_names": "present.%d.key",
                                     "present_value_names": "present.%d.value"}}}
    search = {"do_sample": False, "max_length": context_length, "min_length": 0, "num_beams": 1,
              "num_return_sequences": 1, "past_present_share_buffer": False, "top_k": 1, "top_p": 1.0,
              "temperature": 1.0, "repetition_penalty": 1.0}
    return {"model": model, "search": search}


def write_genai_config(directory, config, special, context_length):
    with open(os.path.join(directory, "genai_config.json"), "w", encoding="utf-8") as f:
        json.dump(genai_config(config, special, context_length), f, indent=2)


def write_tokenizer_json(directory):
    """DIR/tokenizer.json (+ tokenizer_config.json): the bundled GPT-2 vocabulary as an HF tokenizers file,
    built by `tokenizers` the way transformers converts GPT-2's slow tokenizer."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    from tfgpt2.tokenizer import ASSETS, EOT

    vocab, merges = os.path.join(ASSETS, "vocab.json"), os.path.join(ASSETS, "merges.txt")
    tokenizer = Tokenizer(models.BPE.from_file(vocab, merges, fuse_unk=False))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.add_special_tokens([AddedToken(EOT, special=True, normalized=False)])
    tokenizer.save(os.path.join(directory, "tokenizer.json"))
    with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"tokenizer_class": "GPT2Tokenizer", "bos_token": EOT, "eos_token": EOT, "unk_token": EOT,
                   "add_prefix_space": False, "model_max_length": 1024}, f, indent=2)
