"""TFGPT2MainLayer: embeddings, blocks and final norm, shared by every model class."""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfgpt2 import cache as kv_cache
from tfgpt2.cache import KVCache
from tfgpt2.errors import GPT2InputError
from tfgpt2.layers import Block, int8_embedding_logits
from tfgpt2.shared_block import SharedBlock


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
        self._shared_block = SharedBlock(self.h)

    def build(self, input_shape=None):
        hidden = (None, None, self.config.n_embd)
        self.wte.build((None, None))
        self.wpe.build((None, None))
        for block in self.h:
            block.build(hidden)
        self.ln_f.build(hidden)
        self.built = True

    def set_token_embeddings(self, table):
        """Replaces the wte table (V, C) — a new vocabulary size included; the tied head follows."""
        if self.wte.quantization_mode is not None:
            raise GPT2InputError("the token embedding is quantized; change it before model.quantize().")
        table = np.asarray(table)
        if table.ndim != 2 or table.shape[1] != self.config.n_embd:
            raise GPT2InputError(f"input embeddings must have shape (vocab, {self.config.n_embd}), got {table.shape}.")
        old = self.wte.embeddings
        self.wte._tracker.unlock()  # Keras locks a built layer's state; this swap is deliberate
        self.wte._untrack_variable(old)
        new = self.wte.add_weight(shape=table.shape, initializer="zeros", dtype=old.dtype, name="embeddings")
        new.assign(table.astype(old.dtype))
        self.wte._embeddings = new
        self.wte._tracker.lock()
        self.wte.input_dim = int(table.shape[0])
        self.config.vocab_size = int(table.shape[0])

    def embed(self, input_ids, position_ids, token_type_ids=None, lookup=None, inputs_embeds=None):
        """Token + position (+ token type) embeddings (B, T, C).

        `inputs_embeds` replaces the token lookup; `lookup(ids)` replaces the wte lookup (int4 export).
        """
        lookup = lookup or self.wte
        tokens = lookup(input_ids) if inputs_embeds is None else tf.cast(inputs_embeds, self.compute_dtype)
        x = tokens + self.wpe(position_ids)  # (B, T, C)
        if token_type_ids is not None:
            x = x + lookup(token_type_ids)  # HF reuses wte for token types
        return x

    def lm_logits(self, hidden):
        """Tied LM head: hidden (..., C) @ wte^T (C, V) -> float32 (..., V)."""
        if self.wte.quantization_mode is not None:
            return int8_embedding_logits(hidden, self.wte)
        wte = tf.cast(self.wte.embeddings, hidden.dtype)
        return tf.cast(tf.matmul(hidden, wte, transpose_b=True), tf.float32)  # (..., V)

    def call(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None,
             position_ids=None, head_mask=None, inputs_embeds=None, use_cache=False, output_attentions=False,
             output_hidden_states=False, training=False, lookup=None, merged_projections=False, grow_cache=True,
             shared_blocks=False):
        """HF semantics: positions default to `past_len + arange(T)`; `attention_mask` covers the new
        tokens or past + new; no mask attends to every token; a cache without room grows (as HF's do).
        `lookup` and `merged_projections` shape exported graphs (see embed and Conv1D.call);
        `grow_cache=False` keeps the cache's shape (decode loops allocate all the room they use);
        `shared_blocks` runs the blocks as calls of one traced function (SharedBlock; graphs with many
        forward passes, the SavedModel) where the config allows it.
        """
        if inputs_embeds is not None:
            batch, length = tf.shape(inputs_embeds)[0], tf.shape(inputs_embeds)[1]
        else:
            input_ids = tf.cast(input_ids, tf.int32)
            batch, length = tf.shape(input_ids)[0], tf.shape(input_ids)[1]
        past = past_key_values
        if past is not None and not isinstance(past, KVCache):
            past = KVCache.from_legacy(past)
        if use_cache and past is None:
            past = KVCache.empty(self.config, batch, length, self.compute_dtype, check=False)
        if past is not None and grow_cache:
            needed = past.index + length
            past = past.grow(int(needed) if tf.executing_eagerly() else needed)
        index = 0 if past is None else tf.cast(past.index, tf.int32)
        key_mask = _key_mask(past, attention_mask, batch, length, index)  # (B, S)
        if position_ids is None:
            position_ids = tf.tile(index + tf.range(length)[None], [batch, 1])  # (B, T)
        bias = kv_cache.attention_bias(key_mask, index, length)  # (B, 1, T, S)
        head_mask = self._head_masks(head_mask)

        x = self.drop(self.embed(input_ids, position_ids, token_type_ids, lookup, inputs_embeds), training=training)
        hidden_states, attentions, new_layers = [], [], []
        if shared_blocks and SharedBlock.applies(self.config) and not tf.executing_eagerly():
            run = self._shared_block
        else:
            run = lambda i, *args, **kwargs: self.h[i](*args, **kwargs)  # noqa: E731
        for i in range(len(self.h)):
            if output_hidden_states:
                hidden_states.append(x)
            layer_cache = None if past is None else past.layers[i]
            x, layer_cache, probs = run(i, x, bias, layer_cache=layer_cache, index=index, training=training,
                                        merged=merged_projections, head_mask=head_mask[i])
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

    def _head_masks(self, head_mask):
        """HF's head_mask, (n_head,) for every layer or (n_layer, n_head) -> per layer (1, nh, 1, 1) or None."""
        cfg = self.config
        if head_mask is None:
            return [None] * cfg.n_layer
        mask = tf.cast(head_mask, tf.float32)
        if mask.shape.rank == 1:
            mask = tf.tile(mask[None], [cfg.n_layer, 1])
        if mask.shape.rank != 2 or mask.shape[0] != cfg.n_layer or mask.shape[1] != cfg.n_head:
            raise GPT2InputError(f"head_mask must have shape ({cfg.n_head},) or ({cfg.n_layer}, {cfg.n_head}), "
                                 f"got {tuple(head_mask.shape)}.")
        return [mask[i][None, :, None, None] for i in range(cfg.n_layer)]


def _key_mask(past, attention_mask, batch, length, index):
    """(B, S) int32: 1 where a key slot may be attended (causality is added by attention_bias)."""
    if attention_mask is None:  # HF: no mask attends to every (cached) token
        return tf.ones((batch, length), tf.int32) if past is None else tf.ones_like(past.mask)
    mask = tf.cast(tf.cast(attention_mask, tf.float32) > 0, tf.int32)  # (B, T) new tokens, or (B, P + T)
    if past is None:
        return mask
    new_only = lambda: ops.slice_update(past.mask, (0, index), mask[:, -length:])  # noqa: E731
    full = lambda: ops.slice_update(tf.zeros_like(past.mask), (0, 0), mask)  # noqa: E731
    static_length = tf.get_static_value(length)
    if mask.shape[1] is not None and static_length is not None:
        return new_only() if mask.shape[1] == static_length else full()
    return tf.cond(tf.shape(mask)[1] == length, new_only, full)


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


def _legacy_past_length(past, config):
    """The past length of HF's per-layer tuple cache, or None if `past` is not one."""
    if not isinstance(past, (tuple, list)) or len(past) != config.n_layer:
        return None
    first = past[0]
    if isinstance(first, (tuple, list)) and len(first) == 2:
        first, rank = first[0], 4
    else:
        rank = 5
    shape = getattr(first, "shape", None)
    if shape is None or len(shape) != rank or shape[-1] != config.head_dim or shape[-3] != config.n_head:
        return None
    return int(shape[-2]) if shape[-2] is not None else 0


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
        if isinstance(past_key_values, KVCache):
            index = _concrete(past_key_values.index)
            past_len = int(index) if index is not None else None  # None: only known when the graph runs
        else:
            past_len = _legacy_past_length(past_key_values, config)
        if past_len is None and not isinstance(past_key_values, KVCache):
            raise GPT2InputError("past_key_values must be the cache a previous call returned (out.past_key_values), "
                                 f"KVCache.empty(config, batch, capacity), or HF's per-layer tuple ({config.n_layer}).")
    if length is not None and past_len is not None and past_len + length > config.n_positions:
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
        ok = ok and (None in (length, mshape[-1], past_len) or mshape[-1] in (length, past_len + length))
        if not ok:
            raise GPT2InputError(f"attention_mask has shape {mshape} but {name} has shape {shape}; it must "
                                 f"be {shape} or cover past + new tokens ({(past_len or 0) + (length or 0)}).")
    return input_ids if tf.is_tensor(input_ids) else tf.convert_to_tensor(ids if ids is not None else input_ids)
