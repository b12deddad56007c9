"""GPT-2 building blocks. Sub-layer names follow the checkpoint keys."""

import math

import keras
import tensorflow as tf

from tfgpt2 import cache as kv_cache


def activation(name):
    """HF `ACT2FN` for the activations GPT-2 configs use."""
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return lambda x: tf.nn.gelu(x, approximate=True)
    if name == "gelu":
        return lambda x: tf.nn.gelu(x, approximate=False)
    return {"relu": tf.nn.relu, "silu": tf.nn.silu, "swish": tf.nn.silu, "tanh": tf.tanh}[name]


def dense(units, config, name, scale=1.0):
    """HF `Conv1D`: kernel (in, out), like a Keras Dense kernel."""
    init = keras.initializers.RandomNormal(stddev=config.initializer_range * scale)
    return keras.layers.Dense(units, kernel_initializer=init, name=name)


class Attention(keras.layers.Layer):
    """Causal self-attention over the new tokens, or over a static KV cache."""

    def __init__(self, config, layer_idx, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.layer_idx = layer_idx
        proj_scale = 1.0 / math.sqrt(2 * config.n_layer)
        self.c_attn = dense(3 * config.n_embd, config, "c_attn")
        self.c_proj = dense(config.n_embd, config, "c_proj", scale=proj_scale)
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
        x = tf.reshape(x, (batch, length, cfg.n_head, cfg.head_dim))  # (B, T, nh, hs)
        return tf.transpose(x, (0, 2, 1, 3))  # (B, nh, T, hs)

    def call(self, x, bias, layer_cache=None, index=None, training=False):
        """x (B, T, C); bias (B, 1, T, S) additive; layer_cache (2, B, nh, S, hs) or None (S = T)."""
        batch, length = tf.shape(x)[0], tf.shape(x)[1]
        q, k, v = tf.split(self.c_attn(x), 3, axis=-1)  # 3 x (B, T, C)
        q, k, v = (self._heads(t, batch, length) for t in (q, k, v))  # (B, nh, T, hs)
        if layer_cache is not None:
            layer_cache = kv_cache.write(layer_cache, k, v, index)  # (2, B, nh, S, hs)
            k, v = layer_cache[0], layer_cache[1]  # (B, nh, S, hs)
        # Scores in float32: exact under mixed precision and with reorder_and_upcast_attn.
        q32 = tf.cast(q, tf.float32) * self.scale
        scores = tf.matmul(q32, tf.cast(k, tf.float32), transpose_b=True)  # (B, nh, T, S)
        scores = scores + tf.cast(bias, tf.float32)  # (B, nh, T, S)
        probs = tf.nn.softmax(scores, axis=-1)  # (B, nh, T, S)
        probs = self.attn_dropout(probs, training=training)
        y = tf.matmul(tf.cast(probs, v.dtype), v)  # (B, nh, T, hs)
        y = tf.reshape(tf.transpose(y, (0, 2, 1, 3)), (batch, length, self.config.n_embd))  # (B, T, C)
        y = self.resid_dropout(self.c_proj(y), training=training)  # (B, T, C)
        return y, layer_cache, probs


class MLP(keras.layers.Layer):
    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.c_fc = dense(config.inner_dim, config, "c_fc")
        self.c_proj = dense(config.n_embd, config, "c_proj", scale=1.0 / math.sqrt(2 * config.n_layer))
        self.act = activation(config.activation_function)
        self.dropout = keras.layers.Dropout(config.resid_pdrop)
        self.inner_dim = config.inner_dim

    def build(self, input_shape):
        self.c_fc.build(input_shape)
        self.c_proj.build(tuple(input_shape[:-1]) + (self.inner_dim,))
        self.built = True

    def call(self, x, training=False):
        h = self.act(self.c_fc(x))  # (B, T, 4C)
        return self.dropout(self.c_proj(h), training=training)  # (B, T, C)


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

    def call(self, x, bias, layer_cache=None, index=None, training=False):
        a, layer_cache, probs = self.attn(
            self.ln_1(x), bias, layer_cache=layer_cache, index=index, training=training)
        x = x + a  # (B, T, C)
        x = x + self.mlp(self.ln_2(x), training=training)  # (B, T, C)
        return x, layer_cache, probs
