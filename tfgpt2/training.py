"""Training helpers: the training recipe, a tf.data LM pipeline over text, built-in text, perplexity.

`TrainingRecipe` is the one recipe behind `tfgpt2 demo`, `tfgpt2 train` and the trained reference
model the quantization tests measure (tools/reference_model.py): the same split, model shape
rules, optimizer and data order.
"""

import dataclasses
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


@dataclasses.dataclass(frozen=True)
class TrainingRecipe:
    """How a model is trained from text: shape of a new model, schedule, optimizer, held-out share."""

    n_embd: int = 128
    n_layer: int = 2
    n_head: int = 4
    seq_len: int = 64
    steps: int = 240
    epochs: int = 1
    batch_size: int = 8
    lr: float = 3e-3
    weight_decay: float = 0.01
    eval_fraction: float = 0.05
    seed: int = 0

    def split(self, texts, tokenizer):
        """(train, held_out) (N, seq_len) blocks: the first `eval_fraction` of the blocks are held out."""
        blocks = pack_ids(texts, tokenizer, seq_len=self.seq_len)
        cut = max(1, int(len(blocks) * self.eval_fraction))
        return blocks[cut:], blocks[:cut]

    def new_model(self, vocab_size):
        """A freshly initialised (seeded) LM, no dropout, room for twice the training length."""
        import keras

        from tfgpt2.config import GPT2Config
        from tfgpt2.modeling import TFGPT2LMHeadModel

        keras.utils.set_random_seed(self.seed)
        return TFGPT2LMHeadModel(GPT2Config(
            n_embd=self.n_embd, n_layer=self.n_layer, n_head=self.n_head, vocab_size=vocab_size,
            n_positions=max(2 * self.seq_len, 128), resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))

    def fit(self, model, train, callbacks=(), verbose=1):
        """Keras `fit` over `train` blocks: AdamW, `steps` split into `epochs`; returns the History."""
        import keras

        keras.utils.set_random_seed(self.seed)
        model.compile(optimizer=keras.optimizers.AdamW(self.lr, weight_decay=self.weight_decay))
        ds = lm_dataset(train, batch_size=self.batch_size, seed=self.seed, vocab_size=model.config.vocab_size)
        return model.fit(ds.repeat(), steps_per_epoch=self.steps // self.epochs, epochs=self.epochs,
                         callbacks=list(callbacks), verbose=verbose, shuffle=False)
