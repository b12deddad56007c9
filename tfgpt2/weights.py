"""HF checkpoint I/O: config.json + model.safetensors | pytorch_model.bin | tf_model.h5.

Checkpoint tensors are normalised to transformers' PyTorch layout and key names
(`transformer.h.0.attn.c_attn.weight`, ...); HF `Conv1D` weights are `(in, out)`
like Keras Dense kernels, `nn.Linear` head weights are `(out, in)` and get transposed.
"""

import json
import logging
import os
import re
import tempfile

import numpy as np

from tfgpt2.config import GPT2Config
from tfgpt2.errors import CheckpointError, CheckpointNotFoundError, GPT2InputError
from tfgpt2.generation.generation_config import GenerationConfig
from tfgpt2.hub import WEIGHT_FILES, resolve
from tfgpt2.lazy_weights import RenamedState, SafetensorsState, shape_of, uninitialized_variables

log = logging.getLogger(__name__)

# Buffers or tied copies found in real checkpoints that carry no weights of their own.
_IGNORED = re.compile(r"(^|\.)attn\.(bias|masked_bias)$|^lm_head\.weight$")
# Keys of other heads: fine to find when loading into a different class.
_OTHER_HEADS = re.compile(r"^(multiple_choice_head|score)\.")

_ARCHITECTURES = {"TFGPT2Model": "GPT2Model", "TFGPT2LMHeadModel": "GPT2LMHeadModel",
                  "TFGPT2DoubleHeadsModel": "GPT2DoubleHeadsModel",
                  "TFGPT2ForSequenceClassification": "GPT2ForSequenceClassification"}


def conv1d_layers(model):
    """(HF key prefix, Conv1D) of every block's projections: `transformer.h.0.attn.c_attn`, ..."""
    for i, block in enumerate(model.transformer.h):
        for name, layer in (("attn.c_attn", block.attn.c_attn), ("attn.c_proj", block.attn.c_proj),
                            ("mlp.c_fc", block.mlp.c_fc), ("mlp.c_proj", block.mlp.c_proj)):
            yield f"transformer.h.{i}.{name}", layer


def large_variables(model):
    """The Conv1D weight blocks and the wte table: the weights whose bytes grow with the model."""
    return [k for _, layer in conv1d_layers(model) for k in layer.kernels] + [model.transformer.wte.embeddings]


def model_weights(model):
    """HF key -> (Keras variable, transposed?) for every weight of `model`."""
    t = model.transformer
    out = {"transformer.wte.weight": (_table(t.wte), False),
           "transformer.wpe.weight": (_table(t.wpe), False),
           "transformer.ln_f.weight": (t.ln_f.gamma, False),
           "transformer.ln_f.bias": (t.ln_f.beta, False)}
    for i, block in enumerate(t.h):
        p = f"transformer.h.{i}."
        for name, norm in (("ln_1", block.ln_1), ("ln_2", block.ln_2)):
            out[p + name + ".weight"] = (norm.gamma, False)
            out[p + name + ".bias"] = (norm.beta, False)
    for prefix, dense in conv1d_layers(model):
        out[prefix + ".weight"] = (dense.hf_kernel, False)
        out[prefix + ".bias"] = (dense.bias, False)
    out.update(model.head_weights())
    return out


class _DequantizedTable:
    """A quantized Keras Embedding's table seen as float (Keras stores w = q / scale): shape, numpy()."""

    def __init__(self, layer):
        self.layer, self.shape, self.dtype = layer, (layer.input_dim, layer.output_dim), "float32"

    def numpy(self):
        return self.layer._embeddings.numpy().astype(np.float32) / self.layer.embeddings_scale.numpy()[:, None]

    def assign(self, value):
        raise GPT2InputError(f"{self.layer.name} is quantized ({self.layer.quantization_mode}); load float "
                             "weights before model.quantize().")


def _table(embedding):
    return embedding.embeddings if embedding.quantization_mode is None else _DequantizedTable(embedding)


# ------------------------------------------------------------------ reading
def read_checkpoint(directory):
    """The state dict (numpy, PyTorch layout) of the first weight file found in `directory`."""
    for filename in WEIGHT_FILES:
        path = os.path.join(directory, filename)
        if os.path.exists(path):
            return _read_or_explain(path, {"model.safetensors": read_safetensors, "pytorch_model.bin": read_torch_bin,
                                           "tf_model.h5": read_hf_h5}[filename])
    sharded = [f for f in os.listdir(directory) if f.endswith(".index.json")]
    if sharded:
        return _read_or_explain(os.path.join(directory, sharded[0]), read_sharded)
    raise CheckpointNotFoundError(
        f"{directory} has no weights: expected one of {', '.join(WEIGHT_FILES)} "
        "(write them with save_pretrained).")


def _read_or_explain(path, reader):
    """The reader's state dict; a truncated or corrupt file (whatever the library raises) -> one CheckpointError."""
    try:
        return reader(path)
    except (CheckpointError, ImportError, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - safetensors, torch, h5py and json each raise their own types
        detail = " ".join(str(e).split())[:200]
        raise CheckpointError(f"{path} cannot be read ({type(e).__name__}: {detail}); the file is truncated or "
                              "corrupt: save it again with save_pretrained or download it again.") from e


def read_safetensors(path):
    """A lazy state dict (lazy_weights.SafetensorsState): each tensor is read when it is assigned."""
    return SafetensorsState([path])


def read_sharded(index_path):
    with open(index_path, encoding="utf-8") as f:
        files = sorted(set(json.load(f)["weight_map"].values()))
    if files[0].endswith(".safetensors"):
        return SafetensorsState.from_index(index_path)
    reader = read_torch_bin
    state = {}
    for name in files:
        state.update(reader(os.path.join(os.path.dirname(index_path), name)))
    return state


def read_torch_bin(path):
    try:
        import torch
    except ImportError as e:
        raise CheckpointNotFoundError(
            f"{path} is a PyTorch pickle and reading it needs torch (pip install torch), or convert "
            "it to model.safetensors, which tfgpt2 reads without torch.") from e
    state = torch.load(path, map_location="cpu", weights_only=True)  # no arbitrary code from pickles
    return {k: v.float().numpy() for k, v in state.items()}


_H5_PATTERNS = [  # (regex on the h5 dataset path, HF key template, transpose?)
    (r"transformer/wte/(weight|embeddings):0$", "transformer.wte.weight", False),
    (r"transformer/wpe/(weight|embeddings):0$", "transformer.wpe.weight", False),
    (r"transformer/h_\._(\d+)/(ln_1|ln_2)/gamma:0$", "transformer.h.{0}.{1}.weight", False),
    (r"transformer/h_\._(\d+)/(ln_1|ln_2)/beta:0$", "transformer.h.{0}.{1}.bias", False),
    (r"transformer/h_\._(\d+)/(attn|mlp)/(c_attn|c_proj|c_fc)/(weight|bias):0$",
     "transformer.h.{0}.{1}.{2}.{3}", False),
    (r"transformer/ln_f/gamma:0$", "transformer.ln_f.weight", False),
    (r"transformer/ln_f/beta:0$", "transformer.ln_f.bias", False),
    (r"multiple_choice_head/summary/kernel:0$", "multiple_choice_head.summary.weight", True),
    (r"multiple_choice_head/summary/bias:0$", "multiple_choice_head.summary.bias", False),
    (r"score/kernel:0$", "score.weight", True),
]


def read_hf_h5(path):
    """Reads transformers' TF `tf_model.h5` (Keras 2 h5 weights, names like h_._0/attn/c_attn/weight:0)."""
    import h5py

    state, unknown = {}, []

    def visit(name, obj):
        if not isinstance(obj, h5py.Dataset):
            return
        for pattern, template, transpose in _H5_PATTERNS:
            match = re.search(pattern, name)
            if match:
                key, value = template.format(*match.groups()), np.asarray(obj, np.float32)
                if key.endswith("bias") and value.ndim == 2:
                    value = value[0]  # TFConv1D biases are (1, nf)
                state[key] = value.T if transpose else value
                return
        unknown.append(name)

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    if unknown:
        raise CheckpointError(f"{path} has weights tfgpt2 does not know: {unknown[:10]}; is it a GPT-2 "
                              "tf_model.h5 written by transformers?")
    return state


# ------------------------------------------------------------------ loading
def hf_key(key):
    """A state-dict key as GPT2LMHeadModel names it (GPT2Model checkpoints have no `transformer.`)."""
    heads = ("transformer.", "multiple_choice_head.", "score.", "lm_head.")
    return key if key.startswith(heads) else "transformer." + key


def checkpoint_state(directory):
    """{hf_key: float32 array (PyTorch layout)} of a checkpoint directory, read per tensor when it is
    safetensors."""
    state = read_checkpoint(directory)
    names = {hf_key(k): k for k in state.keys()}
    return RenamedState(state, names)


def load_state_dict(model, state, source="checkpoint"):
    """Assigns a PyTorch-layout state dict; one error lists every missing/unexpected/mis-shaped key."""
    names = {hf_key(k): k for k in state.keys()}  # HF key -> the state's key; nothing read yet
    expected = model_weights(model)
    head_keys = set(model.head_weights())
    missing = [k for k in expected if k not in names and k not in head_keys]
    unexpected = [k for k in names if k not in expected and not _IGNORED.search(k) and not _OTHER_HEADS.match(k)]
    mismatched = []
    for key, (variable, transpose) in expected.items():
        if key in names:
            shape = shape_of(state, names[key])
            shape = tuple(reversed(shape)) if transpose else tuple(shape)
            if shape != tuple(variable.shape):
                mismatched.append(f"{key}: checkpoint {shape} vs model {tuple(variable.shape)}")
    if missing or unexpected or mismatched:
        parts = [f"{name} ({len(keys)}): {', '.join(keys[:12])}{' ...' if len(keys) > 12 else ''}"
                 for name, keys in (("missing", missing), ("unexpected", unexpected),
                                    ("mis-shaped", mismatched)) if keys]
        raise CheckpointError(f"{source} does not match {type(model).__name__}({_shape_summary(model.config)}): "
                              + "; ".join(parts) + ". Check that config.json belongs to these weights.")
    if "lm_head.weight" in names and not np.allclose(state[names["lm_head.weight"]],
                                                     state[names["transformer.wte.weight"]], atol=1e-6):
        raise CheckpointError(f"{source} has an lm_head.weight that differs from wte; tfgpt2 ties the LM head "
                              "to the input embedding (tie_word_embeddings=True) as GPT-2 does.")
    assigned = []
    for key, (variable, transpose) in expected.items():
        if key in names:
            value = _read_or_explain(source, lambda _, k=names[key]: state[k])  # one at a time (a lazy state)
            variable.assign((value.T if transpose else value).astype(variable.dtype))
            assigned.extend(getattr(variable, "variables", [variable]))  # HFKernel: its blocks
            del value
        else:
            log.warning("%s: %s not in %s; it keeps its random init (train it before use).",
                        type(model).__name__, key, source)
    return assigned


def _shape_summary(cfg):
    return f"vocab={cfg.vocab_size}, n_embd={cfg.n_embd}, n_layer={cfg.n_layer}, n_head={cfg.n_head}"


def from_pretrained(cls, name_or_path, config=None, **config_overrides):
    directory = name_or_path if os.path.isdir(name_or_path) else resolve(name_or_path)
    if config is None:
        config = GPT2Config.from_pretrained(directory)
    if config_overrides:
        config = GPT2Config.from_dict({**config.to_dict(), **config_overrides})
    with uninitialized_variables() as pending:  # the checkpoint's values are the only ones written
        model = cls(config)
    assigned = load_state_dict(model, read_checkpoint(directory), source=directory)
    pending.initialize(skip=assigned)  # what the checkpoint lacks (a new head), Keras' own state
    if os.path.isfile(os.path.join(directory, "generation_config.json")):
        model.generation_config = GenerationConfig.from_pretrained(directory)
    return model


# ------------------------------------------------------------------ saving
def state_dict(model):
    """The model's weights as transformers' PyTorch state dict (numpy)."""
    prefix = "" if type(model).__name__ == "TFGPT2Model" else "transformer."
    out = {}
    for key, (variable, transpose) in model_weights(model).items():
        value = np.asarray(variable.numpy(), np.float32)
        out[prefix + key[len("transformer."):] if key.startswith("transformer.") else key] = \
            np.ascontiguousarray(value.T if transpose else value)
    return out


def save_pretrained(model, directory):
    """config.json + model.safetensors, each written to a temp file and renamed into place; a quantized
    model's weights are written dequantized to float32 (transformers' GPT-2 has no int8 / int4 form)."""
    from safetensors.numpy import save_file

    if getattr(model, "quantization", None):
        log.warning("the model is quantized (%s): save_pretrained writes its weights dequantized to float32; "
                    "model.save('x.keras') keeps the quantized ones", model.quantization["mode"])

    os.makedirs(directory, exist_ok=True)
    values = model.config.to_dict()
    values["architectures"] = [_ARCHITECTURES.get(type(model).__name__, "GPT2LMHeadModel")]
    values.pop("extra", None)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        with open(os.path.join(tmp, "config.json"), "w", encoding="utf-8") as f:
            json.dump(values, f, indent=2, sort_keys=True)
        save_file(state_dict(model), os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        names = ["config.json", "model.safetensors"]
        if model.can_generate():
            generation = model.generation_config or GenerationConfig.from_model_config(model.config)
            generation.save_pretrained(tmp)
            names.append("generation_config.json")
        for name in names:
            os.replace(os.path.join(tmp, name), os.path.join(directory, name))
