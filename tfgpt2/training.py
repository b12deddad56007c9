"""Training helpers: a tf.data LM pipeline over text, built-in text, and perplexity."""

import math
import os

import numpy as np
import tensorflow as tf

from tfgpt2.errors import GPT2InputError


def read_texts(paths):
    """Texts from files and directories (*.txt, *.md, *.py, *.rst recursively)."""
    texts = []
    for path in [paths] if isinstance(paths, str) else paths:
        if os.path.isdir(path):
            for root, _, files in sorted(os.walk(path)):
                texts.extend(_read(os.path.join(root, f)) for f in sorted(files)
                             if f.endswith((".txt", ".md", ".py", ".rst")))
        elif os.path.isfile(path):
            texts.append(_read(path))
        else:
            raise FileNotFoundError(f"{path} does not exist; pass text files or directories of them.")
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise GPT2InputError(f"no text found in {paths}; pass .txt/.md/.py/.rst files or directories.")
    return texts


def _read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def builtin_texts():
    """Text every Python has: the pydoc topic help pages (documentation of the language itself)."""
    from pydoc_data import topics

    return [topics.topics[k] for k in sorted(topics.topics)]


def pack_ids(texts, tokenizer, seq_len, eos=True):
    """Encodes texts, joins them with <|endoftext|> and cuts (N, seq_len) int32 blocks."""
    ids = []
    for row in tokenizer.encode_batch(list(texts)):
        ids.extend(row + ([tokenizer.eos_token_id] if eos else []))
    n = len(ids) // seq_len
    if n == 0:
        raise GPT2InputError(f"the text gives {len(ids)} tokens, fewer than one block of seq_len={seq_len}; "
                             "pass more text or a smaller seq_len.")
    return np.asarray(ids[: n * seq_len], np.int32).reshape(n, seq_len)


def lm_dataset(blocks, batch_size, shuffle=True, seed=0, vocab_size=None, drop_remainder=True):
    """tf.data of {"input_ids": (B, T)} batches for `model.fit` (labels derived inside the model)."""
    blocks = np.asarray(blocks, np.int32)
    if vocab_size is not None and blocks.size and blocks.max() >= vocab_size:
        raise GPT2InputError(f"token id {blocks.max()} >= model vocab_size {vocab_size}: the tokenizer "
                             "does not match the model.")
    ds = tf.data.Dataset.from_tensor_slices({"input_ids": blocks})
    if shuffle:
        ds = ds.shuffle(len(blocks), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def text_dataset(texts, tokenizer, seq_len, batch_size, **kwargs):
    """Texts -> packed LM batches; see `pack_ids` and `lm_dataset`."""
    return lm_dataset(pack_ids(texts, tokenizer, seq_len), batch_size, **kwargs)


def perplexity(model, blocks, batch_size=8):
    """exp(mean next-token NLL) over every token of `blocks` (N, T)."""
    blocks = np.asarray(blocks, np.int32)
    total, count = 0.0, 0
    for start in range(0, len(blocks), batch_size):
        batch = blocks[start:start + batch_size]
        loss = float(model(batch, labels=batch).loss)
        n = batch.shape[0] * (batch.shape[1] - 1)
        total, count = total + loss * n, count + n
    return math.exp(total / count)
