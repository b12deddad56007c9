"""tfgpt2: GPT-2 for TensorFlow / Keras 3, from HF checkpoints to TF Serving and LiteRT.

Names are imported on first use, so `from tfgpt2 import GPT2Tokenizer` does not load TensorFlow.
"""

import importlib
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"

_EXPORTS = {
    "GPT2Config": "tfgpt2.config",
    "GPT2Tokenizer": "tfgpt2.tokenizer",
    "KVCache": "tfgpt2.cache",
    "GenerationConfig": "tfgpt2.generation",
    "TFGPT2Model": "tfgpt2.modeling",
    "TFGPT2LMHeadModel": "tfgpt2.modeling",
    "TFGPT2DoubleHeadsModel": "tfgpt2.modeling",
    "TFGPT2ForSequenceClassification": "tfgpt2.modeling",
    "GPT2InputError": "tfgpt2.errors",
    "GPT2ConfigError": "tfgpt2.errors",
    "CheckpointError": "tfgpt2.errors",
    "CheckpointNotFoundError": "tfgpt2.errors",
    "ExportError": "tfgpt2.errors",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tfgpt2' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
