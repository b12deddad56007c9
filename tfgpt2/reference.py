"""A small GPT-2 trained offline on Python's own documentation: the reference for quantization.

Random weights say nothing about quantization error (their logits are nearly flat), so fidelity
numbers (top-1 agreement, perplexity) come from this model. It is trained once with `fit` and
cached as an HF-format directory; `tfgpt2 demo` trains the same recipe.
"""

import hashlib
import json
import os

import numpy as np

RECIPE = {"n_embd": 128, "n_layer": 2, "n_head": 4, "seq_len": 64, "steps": 240, "batch_size": 8,
          "lr": 3e-3, "seed": 0}


def split_blocks(seq_len, tokenizer=None):
    """(train, held_out) (N, seq_len) id blocks of Python's pydoc topics; 1 block in 20 held out."""
    from tfgpt2 import GPT2Tokenizer, training

    blocks = training.pack_ids(training.builtin_texts(), tokenizer or GPT2Tokenizer(), seq_len=seq_len)
    cut = max(len(blocks) // 20, 4)
    return blocks[cut:], blocks[:cut]


def train(recipe=None, log_every=None):
    """A freshly trained model: (model, held_out blocks, history dict)."""
    import keras

    from tfgpt2 import GPT2Config, TFGPT2LMHeadModel, training

    r = {**RECIPE, **(recipe or {})}
    keras.utils.set_random_seed(r["seed"])
    train_blocks, held_out = split_blocks(r["seq_len"])
    cfg = GPT2Config(n_embd=r["n_embd"], n_layer=r["n_layer"], n_head=r["n_head"], n_positions=r["seq_len"] * 2,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = TFGPT2LMHeadModel(cfg)
    model.compile(optimizer=keras.optimizers.AdamW(r["lr"], weight_decay=0.01))
    ds = training.lm_dataset(train_blocks, batch_size=r["batch_size"], seed=r["seed"]).repeat()
    history = model.fit(ds, steps_per_epoch=r["steps"], epochs=1, verbose=0, shuffle=False)
    return model, held_out, history.history


def load(cache_dir=None, recipe=None):
    """The cached reference model (trained on first use): (model, held_out blocks)."""
    from tfgpt2 import TFGPT2LMHeadModel

    r = {**RECIPE, **(recipe or {})}
    key = hashlib.sha256(json.dumps(r, sort_keys=True).encode()).hexdigest()[:12]
    path = os.path.join(cache_dir or os.path.expanduser("~/.cache/tfgpt2"), f"reference-{key}")
    if os.path.exists(os.path.join(path, "config.json")):
        return TFGPT2LMHeadModel.from_pretrained(path), split_blocks(r["seq_len"])[1]
    model, held_out, _ = train(r)
    tmp = path + ".partial"
    model.save_pretrained(tmp)
    os.replace(tmp, path) if not os.path.exists(path) else None
    return model, held_out


def calibration_blocks(held_out_or_train, n=16):
    """The first `n` blocks, as int32 — calibration data for int8-full."""
    return np.asarray(held_out_or_train[:n], np.int32)
