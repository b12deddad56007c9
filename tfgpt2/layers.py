"""GPT-2 building blocks. Sub-layer names follow the checkpoint keys."""

import math

import keras
import numpy as np
import tensorflow as tf

from tfgpt2 import cache as kv_cache

# c_proj weight blocks: XLA CPU runs four independent (out/4, in) dots faster than one (docs/design.md)
PROJ_BLOCKS = 4


def activation(name):
    """HF `ACT2FN` for the activations GPT-2 configs use."""
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return lambda x: tf.nn.gelu(x, approximate=True)
    if name == "gelu":
        def exact_gelu(x):  # named: the ONNX export spells it with Erf (export/onnx_graph.py)
            return tf.nn.gelu(x, approximate=False)

        return exact_gelu
    return {"relu": tf.nn.relu, "silu": tf.nn.silu, "swish": tf.nn.silu, "tanh": tf.tanh}[name]


class Conv1D(keras.layers.Layer):
    """HF `Conv1D` (y = x @ W + b, W is (in, out) in checkpoints), stored for fast decoding.

    The weight is kept as PyTorch-`Linear`-layout `(out, in)` blocks, `blocks` of them
    (`kernel_0`, `kernel_1`, ...): q/k/v for `c_attn`, `inner_dim / n_embd` for `c_fc`, four for
    the `c_proj`s (one block if `units` doesn't divide). Decoding one token is a matrix-vector
    product per weight; XLA on CPU runs those faster on independent `(out, in)` blocks than on one
    `(in, out)` matrix, and a `c_proj` in four blocks skips XLA's slower dot+bias+residual fusion
    (docs/design.md). `hf_kernel` is the checkpoint-layout view used by weight loading and saving.
    """

    def __init__(self, units, config, scale=1.0, blocks=1, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.num_blocks = blocks if units % blocks == 0 else 1
        self.stddev = config.initializer_range * scale

    def build(self, input_shape):
        fan_in, blocks = int(input_shape[-1]), self.num_blocks
        # one initializer per block: an unseeded Keras initializer called twice returns the same values
        self.kernels = [self.add_weight(name=f"kernel_{j}", shape=(self.units // blocks, fan_in),
                                        initializer=keras.initializers.RandomNormal(stddev=self.stddev))
                        for j in range(blocks)]  # blocks x (out / blocks, in)
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        self.built = True

    @property
    def hf_kernel(self):
        return HFKernel(self)

    def blocks(self, x, merged=False):
        """The output split by weight block: list of (..., out / blocks) without the bias.

        `merged`: one product with the blocks concatenated, [(..., out)] (an export converter
        folds the concat into one constant; XLA would copy it every call).
        """
        rows = tf.reshape(x, (-1, x.shape[-1]))  # (B * T, in)
        lead = tf.shape(x)[:-1]
        kernels = [tf.concat(self.kernels, 0)] if merged and len(self.kernels) > 1 else self.kernels
        return [tf.reshape(tf.matmul(rows, tf.cast(k, x.dtype), transpose_b=True),  # (B * T, out / blocks)
                           tf.concat([lead, [k.shape[0]]], 0)) for k in kernels]  # (..., out / blocks)

    def call(self, x, split=False, merged=False):
        """(..., out), or with `split` the list of per-block outputs (q, k, v for `c_attn`).

        `merged`: one product over the concatenated blocks (the LiteRT export: one FULLY_CONNECTED).
        """
        parts = self.blocks(x, merged=merged and not split)
        if split:
            biases = tf.split(tf.cast(self.bias, parts[0].dtype), len(parts))
            return [p + b for p, b in zip(parts, biases)]
        y = parts[0] if len(parts) == 1 else tf.concat(parts, axis=-1)  # (..., out)
        return y + tf.cast(self.bias, y.dtype)


class HFKernel:
    """A `Conv1D` weight seen in checkpoint layout `(in, out)`: shape, numpy() and assign()."""

    def __init__(self, layer):
        self.layer = layer

    @property
    def shape(self):
        k = self.layer.kernels
        return (int(k[0].shape[1]), sum(int(b.shape[0]) for b in k))

    @property
    def dtype(self):
        return self.layer.kernels[0].dtype

    def numpy(self):
        return np.concatenate([b.numpy() for b in self.layer.kernels], axis=0).T  # (in, out)

    def assign(self, value):
        rows = np.split(np.asarray(value).T, len(self.layer.kernels), axis=0)  # blocks x (out / blocks, in)
        for block, part in zip(self.layer.kernels, rows):
            block.assign(np.ascontiguousarray(part))


class Attention(keras.layers.Layer):
    """Causal self-attention over the new tokens, or over a static KV cache."""

    def __init__(self, config, layer_idx, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.layer_idx = layer_idx
        proj_scale = 1.0 / math.sqrt(2 * config.n_layer)
        self.c_attn = Conv1D(3 * config.n_embd, config, blocks=3, name="c_attn")
        self.c_proj = Conv1D(config.n_embd, config, scale=proj_scale, blocks=PROJ_BLOCKS, name="c_proj")
        self.attn_dropout = keras.layers.Dropout(config.attn_pdrop)
        self.resid_dropout = keras.layers.Dropout(config.resid_pdrop)
        scale = 1.0
        if config.scale_attn_weights:
            scale /= math.sqrt(config.head_dim)
        if config.scale_attn_by_inverse_layer_idx:
            scale /= float(layer_idx + 1)
        self.scale = scale

    def build(self, input_shape):
        self.c_attn.build(input_shape)
        self.c_proj.build(input_shape)
        self.built = True

    def _heads(self, x, batch, length):
        cfg = self.config
        if x.shape[1] == 1:  # one token: a reshape says it without a TRANSPOSE op in exported graphs
            return tf.reshape(x, (batch, cfg.n_head, 1, cfg.head_dim))  # (B, nh, 1, hs)
        x = tf.reshape(x, (batch, length, cfg.n_head, cfg.head_dim))  # (B, T, nh, hs)
        return tf.transpose(x, (0, 2, 1, 3))  # (B, nh, T, hs)

    def _merge_heads(self, y, batch, length):
        if y.shape[2] == 1:
            return tf.reshape(y, (batch, 1, self.config.n_embd))  # (B, 1, C)
        return tf.reshape(tf.transpose(y, (0, 2, 1, 3)), (batch, length, self.config.n_embd))  # (B, T, C)

    def call(self, x, bias, layer_cache=None, index=None, training=False, attend=None, merged=False,
             head_mask=None):
        """x (B, T, C); bias (B, 1, T, S) additive; layer_cache (2, B, nh, S, hs) or None (S = T).

        `attend(q, k, v) -> (y (B, nh, T, hs), layer_cache, probs)` replaces the attention over the
        cache (the LiteRT decode graph attends over caller-owned tensors); q arrives scaled, float32.
        `merged`: c_proj as one product (see Conv1D.call). `head_mask` (1, nh, 1, 1) scales each head's
        attention probabilities (HF's head_mask; 0 silences a head). Returns (y (B, T, C), layer_cache, probs).
        """
        batch, length = tf.shape(x)[0], tf.shape(x)[1]
        q, k, v = self.c_attn(x, split=True)  # 3 x (B, T, C)
        q, k, v = (self._heads(t, batch, length) for t in (q, k, v))  # (B, nh, T, hs)
        # Scores in float32: exact under mixed precision and with reorder_and_upcast_attn.
        q32 = tf.cast(q, tf.float32) * self.scale  # (B, nh, T, hs)
        if attend is None:
            y, layer_cache, probs = self.attend_cache(q32, k, v, bias, layer_cache, index, training, head_mask)
        else:
            y, layer_cache, probs = attend(q32, k, v)
        y = self._merge_heads(y, batch, length)  # (B, T, C)
        y = self.resid_dropout(self.c_proj(y, merged=merged), training=training)  # (B, T, C)
        return y, layer_cache, probs

    def attend_cache(self, q32, k, v, bias, layer_cache, index, training, head_mask=None):
        """Softmax attention of q (B, nh, T, hs) over k, v, or over the cache after writing them."""
        if layer_cache is not None:
            layer_cache = kv_cache.write(layer_cache, k, v, index)  # (2, B, nh, S, hs)
            k, v = tf.unstack(layer_cache)  # (B, nh, S, hs); UNPACK in LiteRT, whose StridedSlice is slow
        scores = tf.matmul(q32, tf.cast(k, tf.float32), transpose_b=True)  # (B, nh, T, S)
        scores = scores + tf.cast(bias, tf.float32)  # (B, nh, T, S)
        probs = tf.nn.softmax(scores, axis=-1)  # (B, nh, T, S)
        probs = self.attn_dropout(probs, training=training)
        if head_mask is not None:
            probs = probs * tf.cast(head_mask, probs.dtype)  # (B, nh, T, S)
        y = tf.matmul(tf.cast(probs, v.dtype), v)  # (B, nh, T, hs)
        return y, layer_cache, probs


class MLP(keras.layers.Layer):
    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        fc_blocks = config.inner_dim // config.n_embd if config.inner_dim % config.n_embd == 0 else 1
        self.c_fc = Conv1D(config.inner_dim, config, blocks=fc_blocks, name="c_fc")
        self.c_proj = Conv1D(config.n_embd, config, scale=1.0 / math.sqrt(2 * config.n_layer), blocks=PROJ_BLOCKS,
                             name="c_proj")
        self.act = activation(config.activation_function)
        self.dropout = keras.layers.Dropout(config.resid_pdrop)
        self.inner_dim = config.inner_dim

    def build(self, input_shape):
        self.c_fc.build(input_shape)
        self.c_proj.build(tuple(input_shape[:-1]) + (self.inner_dim,))
        self.built = True

    def call(self, x, training=False, merged=False):
        h = self.act(self.c_fc(x))  # (B, T, 4C)
        return self.dropout(self.c_proj(h, merged=merged), training=training)  # (B, T, C)


class Block(keras.layers.Layer):
    """Pre-LN transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config, layer_idx, **kwargs):
        super().__init__(**kwargs)
        eps = config.layer_norm_epsilon
        self.ln_1 = keras.layers.LayerNormalization(epsilon=eps, name="ln_1")
        self.attn = Attention(config, layer_idx, name="attn")
        self.ln_2 = keras.layers.LayerNormalization(epsilon=eps, name="ln_2")
        self.mlp = MLP(config, name="mlp")

    def build(self, input_shape):
        for layer in (self.ln_1, self.attn, self.ln_2, self.mlp):
            layer.build(input_shape)
        self.built = True

    def call(self, x, bias, layer_cache=None, index=None, training=False, attend=None, merged=False,
             head_mask=None):
        """See Attention.call for `attend`, `merged` and `head_mask`; returns (x, layer_cache, probs)."""
        a, layer_cache, probs = self.attn(self.ln_1(x), bias, layer_cache=layer_cache, index=index,
                                          training=training, attend=attend, merged=merged, head_mask=head_mask)
        x = x + a  # (B, T, C)
        x = x + self.mlp(self.ln_2(x), training=training, merged=merged)  # (B, T, C)
        return x, layer_cache, probs
