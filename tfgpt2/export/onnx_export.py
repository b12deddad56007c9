"""ONNX export: build the graph (onnx_graph.py), convert with tf2onnx, write a directory ORT GenAI opens.

    DIR/onnx/<recipe>/model.onnx         (+ model.onnx.data for models over protobuf's 2 GB)
    DIR/onnx/<recipe>/genai_config.json  ORT GenAI "decoder" model (the LM graph only)
    DIR/onnx/<recipe>/tokenizer.json     HF tokenizers file of the bundled GPT-2 vocabulary

Conversion: tf2onnx sees the weights as graph inputs (no constants to freeze and copy); the passes
(onnx_passes.py) name them after the Keras variables and fold the weight-only Transpose/Concat/Reshape
nodes the converter wrote into them. The tied LM head reads the embedding table itself (fp32: a Gemm
with transB; int8: one int8 table that both the lookup and the head read, onnx_int8.py), so the table
is stored once. Every file written is loaded back in ONNX Runtime before the export goes on.
"""

import json
import os

import numpy as np

ONNX_OPSET = 17
GRAPHS = ("lm", "base")  # logits, or the base model's last_hidden_state
INSTALL = "pip install 'tfgpt2[onnx]' (tf2onnx, onnxruntime, tokenizers)"


def check_installed():
    """ImportError naming the install command when a library the ONNX export needs is missing."""
    from tfgpt2.export.extras import require

    require(("tf2onnx", "onnx", "onnxruntime", "tokenizers"), "the ONNX export", INSTALL)


def write_recipe(src, recipe, directory, base=False):
    """DIR/model.onnx (+ genai_config.json for the LM graph) and tokenizer.json for `recipe` (recipes.Recipe:
    fp32, or int8 when it quantizes dynamically) of the model at `src`; loaded back in ORT and run on one
    token. The Keras model is released before the file is written. Returns {"bytes": ...}."""
    import gc

    from tfgpt2.export import onnx_int8
    from tfgpt2.export.contract import special_tokens
    from tfgpt2.export.hf_tokenizer import write_tokenizer_json
    from tfgpt2.export.onnx_graph import weight_name
    from tfgpt2.export.source import load_model

    if recipe.optimize not in (None, "dynamic"):
        raise ValueError(f"recipe {recipe.name!r} has no ONNX form; ONNX recipes: fp32, int8.")
    model = load_model(src)
    config, table = model.config, weight_name(model.transformer.wte.embeddings)
    proto, weights = convert(model, base)
    del model
    gc.collect()
    if recipe.optimize == "dynamic":
        onnx_int8.quantize(proto.graph, weights, table)
    path = save(proto, weights, directory)
    del proto, weights
    gc.collect()
    check_runs(path)
    if not base:
        write_genai_config(directory, config, special_tokens(config)[0], config.n_positions)
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
    """(ModelProto without initializers, {name: array} of its weights) for `model`'s graph
    (onnx_graph.graph_function): weight-only nodes folded, the head tied to the table, dims named."""
    import tf2onnx

    from tfgpt2.export import onnx_graph, onnx_passes

    _patch_tf2onnx()
    fn, signature, variables = onnx_graph.graph_function(model, base)
    proto, _ = tf2onnx.convert.from_function(fn, signature, opset=ONNX_OPSET)
    graph = proto.graph
    weights = onnx_passes.inputs_to_weights(graph, variables)
    onnx_passes.constants_to_weights(graph, weights)
    onnx_passes.fold_weights(graph, weights)
    onnx_passes.reduce_means(graph)
    onnx_passes.tie_head(graph, weights, onnx_graph.weight_name(model.transformer.wte.embeddings))
    onnx_passes.name_dims(graph, model.config)
    onnx_passes.drop_unused(graph, weights)
    return proto, weights


def _patch_tf2onnx():
    """tf2onnx 1.17 uses numpy aliases numpy 2 removed; Keras ships the patch (keras.export's ONNX path)."""
    try:
        from keras.src.export.tf2onnx_lib import patch_tf2onnx
    except ImportError:  # a Keras without it: numpy < 2 needs none
        return
    patch_tf2onnx()


def save(proto, weights, directory):
    """DIR/model.onnx with `weights` as its initializers (each array freed once copied into the proto);
    tensors go to DIR/model.onnx.data when the model is over protobuf's 2 GB limit."""
    import onnx
    from onnx import numpy_helper

    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "model.onnx")
    large = sum(w.nbytes for w in weights.values()) > (1 << 31) - (64 << 20)
    for name in list(weights):
        proto.graph.initializer.append(numpy_helper.from_array(weights.pop(name), name))
    onnx.save(proto, path, save_as_external_data=large, location="model.onnx.data" if large else None)
    return path


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
