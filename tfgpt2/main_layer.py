"""TFGPT2MainLayer: embeddings, blocks and final norm, shared by every model class."""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfgpt2 import cache as kv_cache
from tfgpt2.cache import KVCache
from tfgpt2.errors import GPT2InputError
from tfgpt2.layers import Block


class TFGPT2MainLayer(keras.layers.Layer):
    """The GPT-2 transformer (HF `transformer.*` weights).

    Returns `(last_hidden_state, cache, hidden_states, attentions)`; the model
    classes in `modeling.py` wrap it into HF output objects.
    """

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        # one initializer each: an unseeded Keras initializer reused gives wpe = wte[:n_positions]
        init = lambda: keras.initializers.RandomNormal(stddev=config.initializer_range)  # noqa: E731
        self.wte = keras.layers.Embedding(config.vocab_size, config.n_embd, embeddings_initializer=init(), name="wte")
        self.wpe = keras.layers.Embedding(config.n_positions, config.n_embd, embeddings_initializer=init(), name="wpe")
        self.drop = keras.layers.Dropout(config.embd_pdrop)
        self.h = [Block(config, i, name=f"h.{i}") for i in range(config.n_layer)]
        self.ln_f = keras.layers.LayerNormalization(epsilon=config.layer_norm_epsilon, name="ln_f")

    def build(self, input_shape=None):
        hidden = (None, None, self.config.n_embd)
        self.wte.build((None, None))
        self.wpe.build((None, None))
        for block in self.h:
            block.build(hidden)
        self.ln_f.build(hidden)
        self.built = True

    def embed(self, input_ids, position_ids, token_type_ids=None, lookup=None):
        """Token + position embeddings (B, T, C); `lookup(ids)` replaces the wte lookup (int4 export)."""
        lookup = lookup or self.wte
        x = lookup(input_ids) + self.wpe(position_ids)  # (B, T, C)
        if token_type_ids is not None:
            x = x + lookup(token_type_ids)  # HF reuses wte for token types
        return x

    def lm_logits(self, hidden):
        """Tied LM head: hidden (..., C) @ wte^T (C, V) -> float32 (..., V)."""
        wte = tf.cast(self.wte.embeddings, hidden.dtype)
        return tf.cast(tf.matmul(hidden, wte, transpose_b=True), tf.float32)  # (..., V)

    def call(self, input_ids, attention_mask=None, position_ids=None, token_type_ids=None,
             past_key_values=None, use_cache=False, output_hidden_states=False,
             output_attentions=False, training=False, lookup=None, merged_projections=False):
        """`lookup` and `merged_projections` shape exported graphs (see embed and Conv1D.call)."""
        input_ids = tf.cast(input_ids, tf.int32)
        batch, length = tf.shape(input_ids)[0], tf.shape(input_ids)[1]
        past = past_key_values
        if use_cache and past is None:
            past = KVCache.empty(self.config, batch, self.config.n_positions, self.compute_dtype)
        if attention_mask is None:
            new_mask = tf.ones_like(input_ids)  # (B, T)
        else:
            new_mask = tf.cast(tf.cast(attention_mask, tf.float32) > 0, tf.int32)[:, -length:]  # (B, T)
        if past is None:
            index, key_mask = 0, new_mask
            default_positions = tf.maximum(tf.cumsum(new_mask, axis=1) - 1, 0)  # (B, T)
        else:
            index = tf.cast(past.index, tf.int32)
            key_mask = ops.slice_update(past.mask, (0, index), new_mask)  # (B, S)
            default_positions = kv_cache.new_positions(past.mask, new_mask)  # (B, T)
        if position_ids is None:
            position_ids = default_positions
        bias = kv_cache.attention_bias(key_mask, index, length)  # (B, 1, T, S)

        x = self.drop(self.embed(input_ids, position_ids, token_type_ids, lookup), training=training)
        hidden_states, attentions, new_layers = [], [], []
        for i, block in enumerate(self.h):
            if output_hidden_states:
                hidden_states.append(x)
            layer_cache = None if past is None else past.layers[i]
            x, layer_cache, probs = block(x, bias, layer_cache=layer_cache, index=index, training=training,
                                          merged=merged_projections)
            new_layers.append(layer_cache)
            if output_attentions:
                attentions.append(probs)
        x = self.ln_f(x)  # (B, T, C)
        if output_hidden_states:
            hidden_states.append(x)
        new_cache = None
        if past is not None:
            new_cache = KVCache(tuple(new_layers), key_mask, index + length)
        return (x, new_cache, tuple(hidden_states) if output_hidden_states else None,
                tuple(attentions) if output_attentions else None)


# ---------------------------------------------------------------- input checks
def as_array(rows):
    """Nested Python lists of ids -> numpy, with a clear error for ragged rows."""
    try:
        return np.asarray(rows)
    except ValueError as e:
        raise GPT2InputError(f"input_ids rows have different lengths ({e}); pad them "
                             "(tokenizer(..., padding=True)) and pass attention_mask.") from e


def _concrete(x):
    """The numpy value of an eager tensor/array, or None inside a graph."""
    if x is None or isinstance(x, keras.KerasTensor):
        return None
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (list, tuple)):
        return as_array(x)
    if tf.is_tensor(x) and tf.executing_eagerly() and hasattr(x, "numpy"):
        return x.numpy()
    return None


def check_inputs(config, input_ids, attention_mask=None, past_key_values=None, rank=2, name="input_ids"):
    """Validates ids and mask before any graph runs; returns `input_ids` as int32 tensor."""
    if input_ids is None:
        raise GPT2InputError(f"{name} is required: pass token ids of shape (batch, seq_len).")
    ids = _concrete(input_ids)
    dtype = tf.as_dtype(ids.dtype) if ids is not None else getattr(input_ids, "dtype", None)
    dtype = tf.as_dtype(dtype) if dtype is not None else None
    if ids is not None and ids.dtype == object:
        raise GPT2InputError(f"{name} holds Python objects (strings?); encode text with GPT2Tokenizer first.")
    if dtype is not None and not dtype.is_integer:
        raise GPT2InputError(f"{name} must hold integer token ids, got dtype {dtype.name}; "
                             "cast with tf.cast(ids, tf.int32) or encode text with GPT2Tokenizer.")
    shape = tuple(ids.shape) if ids is not None else tuple(input_ids.shape)
    if len(shape) != rank:
        want = "(batch, seq_len)" if rank == 2 else "(batch, num_choices, seq_len)"
        raise GPT2InputError(f"{name} must have shape {want}, got {shape}; add the batch axis with ids[None].")
    if any(d == 0 for d in shape):
        raise GPT2InputError(f"{name} is empty (shape {shape}); pass at least one token per row.")
    length = shape[-1]
    past_len = 0
    if past_key_values is not None:
        if not isinstance(past_key_values, KVCache):
            raise GPT2InputError("past_key_values must be the KVCache returned by a previous call "
                                 "(out.past_key_values) or KVCache.empty(config, batch, capacity).")
        index = _concrete(past_key_values.index)
        past_len = int(index) if index is not None else 0
        capacity = past_key_values.mask.shape[1]
        if index is not None and capacity is not None and past_len + (length or 0) > capacity:
            raise GPT2InputError(f"the KV cache holds {capacity} slots, {past_len} used: no room for "
                                 f"{length} more tokens; allocate a larger KVCache.empty(..., capacity=).")
    if length is not None and past_len + length > config.n_positions:
        raise GPT2InputError(f"sequence of {past_len + length} tokens is longer than n_positions="
                             f"{config.n_positions}; truncate the input (tokenizer truncation=True).")
    if ids is not None:
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= config.vocab_size:
            bad = low if low < 0 else high
            raise GPT2InputError(f"{name} contains id {bad} outside [0, {config.vocab_size}); use the "
                                 "tokenizer that matches this model's vocab_size.")
    if attention_mask is not None:
        mshape = tuple(_concrete(attention_mask).shape) if _concrete(attention_mask) is not None \
            else tuple(attention_mask.shape)
        ok = len(mshape) == rank and all(a == b or None in (a, b) for a, b in zip(mshape[:-1], shape[:-1]))
        ok = ok and (None in (length, mshape[-1]) or mshape[-1] in (length, past_len + length))
        if not ok:
            raise GPT2InputError(f"attention_mask has shape {mshape} but {name} has shape {shape}; it must "
                                 f"be {shape} or cover past + new tokens ({past_len + (length or 0)}).")
    return input_ids if tf.is_tensor(input_ids) else tf.convert_to_tensor(ids if ids is not None else input_ids)
