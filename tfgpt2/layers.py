"""GPT-2 building blocks. Sub-layer names follow the checkpoint keys."""

import math

import keras
import numpy as np
import tensorflow as tf
from keras import dtype_policies

from tfgpt2 import cache as kv_cache
from tfgpt2 import quantization
from tfgpt2.errors import GPT2InputError

# c_proj weight blocks: XLA CPU runs four independent (out/4, in) dots faster than one (docs/design.md)
PROJ_BLOCKS = 4
QUANTIZATION_MODES = ("int8", "int4")  # what model.quantize() supports
ROW_PRODUCTS = 4  # up to this many rows, a quantized weight is read by one vector-matrix product per row


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
        self.num_splits = self.num_blocks  # the parts call(split=True) returns (q, k, v), whatever the storage
        self.stddev = config.initializer_range * scale

    # (out / n, in) tensors an export graph reads instead of the weight blocks: one per block, or one for
    # a merged product; graph inputs that export/bound.py turns into the file's weights after conversion
    export_kernels = None

    def build(self, input_shape):
        fan_in, blocks = int(input_shape[-1]), self.num_blocks
        # one initializer per block: an unseeded Keras initializer called twice returns the same values
        self.kernels = [self.add_weight(name=f"kernel_{j}", shape=(self.units // blocks, fan_in),
                                        initializer=keras.initializers.RandomNormal(stddev=self.stddev))
                        for j in range(blocks)]  # blocks x (out / blocks, in)
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        self.built = True

    # ------------------------------------------------------------ Keras quantization
    def quantize(self, mode=None, type_check=True, config=None):
        """Keras' `Layer.quantize`: the weight blocks as int8 (one scale per output) or int4 (one scale
        per output and group of `quantization.INT4_GROUP` inputs); the bias stays float. int8 keeps the
        weight as one (out, in) block: XLA's fused int8 products run faster on fewer, larger blocks, while
        int4 products of merged blocks are several times slower (docs/design.md)."""
        if mode not in QUANTIZATION_MODES:
            raise GPT2InputError(f"Conv1D quantizes to {' or '.join(QUANTIZATION_MODES)}, not {mode!r}.")
        self._check_quantize_args(mode, self.compute_dtype)
        values = [k.numpy() for k in self.kernels]  # blocks x (out / blocks, in) float
        self._tracker.unlock()
        for k in self.kernels:
            self._untrack_variable(k)
        self.kernels = []
        if mode == "int8" and len(values) > 1:
            values, self.num_blocks = [np.concatenate(values, 0)], 1
        self.quantized_build(values[0].shape, mode)
        for j, value in enumerate(values):
            if mode == "int8":
                q, scale = (t.numpy() for t in quantization.int8_rows(value))
            else:
                q, scale = quantization.int4_rows(value)
            self.kernels[j].assign(q)
            self.kernel_scales[j].assign(scale)
        self._tracker.lock()
        self.dtype_policy = dtype_policies.get(f"{mode}_from_{self.dtype_policy.name}")

    def quantized_build(self, block_shape, mode, config=None):
        """The quantized variables of every block: kernel_j (int8 (out, in) or int4 words (ceil(out / 8),
        in) int32) and kernel_j_scale ((out,) or (out, in / group))."""
        out, fan_in = block_shape
        if mode == "int8":
            shape, dtype, scale_shape = (out, fan_in), "int8", (out,)
        else:
            groups = fan_in // quantization.int4_group(fan_in)
            shape, dtype, scale_shape = (-(-out // 8), fan_in), "int32", (out, groups)
        self.kernels = [self.add_weight(name=f"kernel_{j}", shape=shape, dtype=dtype, initializer="zeros",
                                        trainable=False) for j in range(self.num_blocks)]
        self.kernel_scales = [self.add_weight(name=f"kernel_{j}_scale", shape=scale_shape, initializer="ones",
                                              trainable=False) for j in range(self.num_blocks)]
        self._is_quantized = True

    def quantized_call(self, *args, **kwargs):
        return self.call(*args, **kwargs)  # call() reads the quantized blocks itself

    def float_kernels(self):
        """The weight blocks as float (out / blocks, in) tensors (dequantized when quantized)."""
        mode = self.quantization_mode
        if mode is None:
            return list(self.kernels)
        if mode == "int8":
            return [tf.cast(k, tf.float32) * s[:, None] for k, s in zip(self.kernels, self.kernel_scales)]
        return [quantization.dequantize_int4(k, s) for k, s in zip(self.kernels, self.kernel_scales)]

    def _product(self, rows, j, dtype):
        """rows (N, in) @ block j^T -> (N, out / blocks). Quantized blocks are converted inside the
        product: one vector-matrix product per row when N <= ROW_PRODUCTS (XLA fuses the convert only
        into those), with quantization.loop_zero keeping the convert inside a decode loop."""
        kernel, mode = self.kernels[j], self.quantization_mode
        if mode is None:
            return tf.matmul(rows, tf.cast(kernel, dtype), transpose_b=True)
        scale = self.kernel_scales[j]

        def product(x):
            if mode == "int8":
                return quantization.int8_product(x, kernel) * tf.cast(scale, x.dtype)
            weight = quantization.dequantize_int4(kernel, scale, quantization.loop_zero(x, kernel.dtype))
            return tf.matmul(x, tf.cast(weight, x.dtype), transpose_b=True)

        return row_products(rows, product)

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
        if self.export_kernels is not None:  # an export graph's weight inputs (export/bound.py)
            if len(self.export_kernels) != (1 if merged else len(self.kernels)):
                raise ValueError(f"{self.name}: {len(self.export_kernels)} export kernels for a "
                                 f"{'merged' if merged else 'per-block'} product")
            parts = [tf.matmul(rows, k, transpose_b=True) for k in self.export_kernels]  # (B * T, out / n)
        elif merged and len(self.kernels) > 1:
            kernel = tf.concat(self.float_kernels(), 0)  # (out, in)
            parts = [tf.matmul(rows, tf.cast(kernel, x.dtype), transpose_b=True)]  # (B * T, out)
        else:
            rows = rows if self.quantization_mode is None else materialized(rows)
            parts = [self._product(rows, j, x.dtype) for j in range(len(self.kernels))]  # (B * T, out / blocks)
        return [tf.reshape(p, tf.concat([lead, [p.shape[-1]]], 0)) for p in parts]  # (..., out / blocks)

    def call(self, x, split=False, merged=False):
        """(..., out), or with `split` the list of per-block outputs (q, k, v for `c_attn`).

        `merged`: one product over the concatenated blocks (the LiteRT export: one FULLY_CONNECTED).
        """
        parts = self.blocks(x, merged=merged and not split)
        if split and len(parts) != self.num_splits:
            parts = tf.split(tf.concat(parts, -1), self.num_splits, -1)
        if split:
            biases = tf.split(tf.cast(self.bias, parts[0].dtype), len(parts))
            return [p + b for p, b in zip(parts, biases)]
        y = parts[0] if len(parts) == 1 else tf.concat(parts, axis=-1)  # (..., out)
        return y + tf.cast(self.bias, y.dtype)


def materialized(x):
    """x, through a tf.cond XLA can't fold. XLA fuses the elementwise ops that make a quantized
    product's input (layer norm, GELU) into that product, which then recomputes them for every
    weight row: a conditional's output is a buffer, computed once."""
    return tf.cond(tf.math.is_nan(x[0, 0]), lambda: tf.zeros_like(x), lambda: x)


def row_products(rows, product):
    """product(rows (N, in)) -> (N, out), as one product per row when N <= ROW_PRODUCTS is static."""
    n = rows.shape[0]
    if n is not None and 1 < n <= ROW_PRODUCTS:
        return tf.concat([product(rows[i:i + 1]) for i in range(n)], 0)
    return product(rows)


def int8_embedding_logits(hidden, embedding):
    """hidden (..., C) @ the int8 table of a quantized Keras Embedding (Keras: w = q / scale) -> (..., V) float32."""
    q, inverse = embedding._embeddings, 1.0 / embedding.embeddings_scale  # (V, C) int8, (V,)
    rows = materialized(tf.reshape(tf.cast(hidden, tf.float32), (-1, hidden.shape[-1])))  # (N, C)

    logits = row_products(rows, lambda x: quantization.int8_product(x, q) * inverse)  # (N, V)
    return tf.reshape(logits, tf.concat([tf.shape(hidden)[:-1], [q.shape[0]]], 0))  # (..., V)


class HFKernel:
    """A `Conv1D` weight seen in checkpoint layout `(in, out)`: shape, numpy() and assign()."""

    def __init__(self, layer):
        self.layer = layer

    @property
    def shape(self):
        k = self.layer.float_kernels()
        return (int(k[0].shape[1]), sum(int(b.shape[0]) for b in k))

    @property
    def dtype(self):
        return self.layer.bias.dtype

    @property
    def variables(self):
        """The Keras variables behind this view (the weight blocks)."""
        return list(self.layer.kernels)

    def numpy(self):
        """The float (in, out) weight; a quantized layer's dequantized."""
        return np.concatenate([np.asarray(b) for b in self.layer.float_kernels()], axis=0).T  # (in, out)

    def assign(self, value):
        if self.layer.quantization_mode is not None:
            raise GPT2InputError(f"{self.layer.name} is quantized ({self.layer.quantization_mode}); load float "
                                 "weights before model.quantize().")
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
