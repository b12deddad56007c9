"""tfgpt2: GPT-2 for TensorFlow / Keras 3, from HF checkpoints to TF Serving and LiteRT."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from tfgpt2.cache import KVCache  # noqa: E402
from tfgpt2.config import GPT2Config  # noqa: E402
from tfgpt2.errors import (CheckpointError, CheckpointNotFoundError, GPT2ConfigError,  # noqa: E402
                           GPT2InputError)
from tfgpt2.modeling import (TFGPT2DoubleHeadsModel, TFGPT2ForSequenceClassification,  # noqa: E402
                             TFGPT2LMHeadModel, TFGPT2Model)

__version__ = "0.1.0"


def __getattr__(name):  # the tokenizer pulls in tiktoken; load it on first use
    if name == "GPT2Tokenizer":
        from tfgpt2.tokenizer import GPT2Tokenizer

        return GPT2Tokenizer
    raise AttributeError(f"module 'tfgpt2' has no attribute {name!r}")


__all__ = ["GPT2Config", "GPT2Tokenizer", "KVCache", "TFGPT2Model", "TFGPT2LMHeadModel",
           "TFGPT2DoubleHeadsModel", "TFGPT2ForSequenceClassification", "GPT2InputError",
           "GPT2ConfigError", "CheckpointError", "CheckpointNotFoundError"]
