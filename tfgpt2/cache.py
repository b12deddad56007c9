"""The static KV cache: allocated once, written in place, read through a mask.

`KVCache` is the one `past_key_values` format of tfgpt2. It is a NamedTuple of
tensors, so it passes through `tf.function`, `tf.while_loop`, XLA and
SavedModel signatures unchanged:

- `layers`: one tensor per block, `(2, B, n_head, capacity, head_dim)`; `[0]`
  holds keys and `[1]` values. New entries are written at slot `index` with a
  dynamic update-slice (`keras.ops.slice_update`), never concatenated.
- `mask`: `(B, capacity)` int32, 1 where a slot holds a real (non-pad) token.
- `index`: `()` int32, the next slot to write; the same for every row, because
  batches are left-padded.

Positions of new tokens come from the mask (number of real tokens before
them), so a left-padded row gives the same result as its prompt alone.

Example:
>>> import tensorflow as tf
>>> from tfgpt2 import GPT2Config, KVCache
>>> cfg = GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=100)
>>> cache = KVCache.empty(cfg, batch_size=1, capacity=16)
>>> cache.layers[0].shape.as_list(), int(cache.index)
([2, 1, 4, 16, 8], 0)
"""

from typing import NamedTuple

import tensorflow as tf
from keras import ops


class KVCache(NamedTuple):
    layers: tuple  # n_layer x (2, B, nh, S, hs)
    mask: tf.Tensor  # (B, S) int32
    index: tf.Tensor  # () int32

    @classmethod
    def empty(cls, config, batch_size, capacity, dtype="float32", check=True):
        """An empty cache with room for `capacity` tokens per row."""
        if check and capacity > config.n_positions:
            raise ValueError(
                f"cache capacity {capacity} exceeds n_positions={config.n_positions}; "
                f"GPT-2 has no position embedding past {config.n_positions} tokens.")
        shape = (2, batch_size, config.n_head, capacity, config.head_dim)
        layers = tuple(tf.zeros(shape, dtype) for _ in range(config.n_layer))
        return cls(layers, tf.zeros((batch_size, capacity), tf.int32), tf.constant(0, tf.int32))

    @property
    def capacity(self):
        return self.mask.shape[1] if self.mask.shape[1] is not None else tf.shape(self.mask)[1]

    @property
    def batch_size(self):
        return self.mask.shape[0] if self.mask.shape[0] is not None else tf.shape(self.mask)[0]

    def seq_length(self):
        """Number of slots written so far (HF `get_seq_length`)."""
        return self.index

    @classmethod
    def from_legacy(cls, past):
        """A cache from HF's tuple formats: per layer one `(2, B, nh, P, hs)` tensor (transformers'
        TF GPT-2) or a `(key, value)` pair of `(B, nh, P, hs)` (PyTorch's legacy cache)."""
        layers = []
        for layer in past:
            if isinstance(layer, (tuple, list)):
                layer = tf.stack([tf.convert_to_tensor(t) for t in layer])  # (2, B, nh, P, hs)
            layers.append(tf.convert_to_tensor(layer))
        if not layers or layers[0].shape.rank != 5 or layers[0].shape[0] != 2:
            raise ValueError("past_key_values must be a KVCache or, per layer, a (2, batch, n_head, past_len, "
                             "head_dim) tensor or a (key, value) pair.")
        batch, length = tf.shape(layers[0])[1], tf.shape(layers[0])[3]
        return cls(tuple(layers), tf.ones((batch, length), tf.int32), tf.cast(length, tf.int32))

    def grow(self, capacity):
        """The same cache with at least `capacity` slots (new slots empty): calls outgrowing a cache.

        `capacity` may be a tensor (inside tf.function); the capacity axis is then dynamic."""
        if isinstance(capacity, int):
            extra = capacity - int(self.mask.shape[1])
            if extra <= 0:
                return self
        else:
            extra = tf.maximum(capacity - tf.shape(self.mask)[1], 0)
        layers = tuple(tf.pad(kv, [[0, 0], [0, 0], [0, 0], [0, extra], [0, 0]]) for kv in self.layers)
        return KVCache(layers, tf.pad(self.mask, [[0, 0], [0, extra]]), self.index)

    def to_legacy(self):
        """HF's tuple format: per layer `(key, value)`, each `(B, nh, index, hs)`."""
        return tuple((kv[0, :, :, : self.index], kv[1, :, :, : self.index]) for kv in self.layers)


def write(layer_cache, key, value, index):
    """Writes new keys/values `(B, nh, T, hs)` at slot `index`; returns the cache."""
    update = tf.stack([key, value])  # (2, B, nh, T, hs)
    update = tf.cast(update, layer_cache.dtype)
    return ops.slice_update(layer_cache, (0, 0, 0, index, 0), update)


def new_positions(past_mask, new_mask):
    """Position ids of new tokens: real tokens before them (pads get 0). (B, T) int32."""
    past_count = tf.reduce_sum(past_mask, axis=1, keepdims=True)  # (B, 1)
    positions = past_count + tf.cumsum(new_mask, axis=1) - 1  # (B, T)
    return tf.maximum(positions, 0)


MASKED = -1e9  # finite: LiteRT's softmax gives NaN on rows of float32.min


def attention_bias(key_mask, index, num_queries):
    """Additive float32 bias `(B, 1, T, S)`: 0 where query t may attend to slot s, else -1e9.

    Query t sits in slot `index + t`; it sees slots s <= index + t whose key_mask is 1. Built
    once per call, so each layer only adds it (no per-layer bool ops to split LiteRT's
    XNNPACK partitions); -1e9 survives a bfloat16 autocast.
    """
    num_slots = tf.shape(key_mask)[1]
    query_slot = index + tf.range(num_queries)[:, None]  # (T, 1)
    causal = tf.range(num_slots)[None, :] <= query_slot  # (T, S)
    allowed = tf.logical_and(causal[None], tf.cast(key_mask, tf.bool)[:, None, :])  # (B, T, S)
    return tf.where(allowed, 0.0, MASKED)[:, None]  # (B, 1, T, S)
