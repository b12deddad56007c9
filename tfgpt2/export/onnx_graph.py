"""The ONNX graph as a `tf.function` over tfgpt2's own layers, with weights as inputs.

Inputs (HF / ORT GenAI "decoder" names): `input_ids`, `attention_mask` (B, P + T), `position_ids`
(B, T), int64, and per layer `past_key_values.{i}.key` / `.value` (B, n_head, P, head_dim) float32,
P = 0 for the prompt pass. Outputs: `logits` (B, T, V) — or `last_hidden_state` (B, T, C) for the
base-model graph — and `present.{i}.key` / `.value` (B, n_head, P + T, head_dim): the past with the
new entries appended, what the caller feeds back as the next past.

The weights enter as extra inputs read through `keras.StatelessScope`, so the converter sees a graph
without constants (tf2onnx freezes, folds and copies every constant several times: ~10x the weights
in memory); onnx_export.py turns those inputs into initializers afterwards, tensor by tensor.
"""

import math

import keras
import tensorflow as tf

from tfgpt2 import cache as kv_cache

PAST, PRESENT = "past_key_values.{i}.{kv}", "present.{i}.{kv}"


def weight_name(variable):
    """An ONNX initializer name for a Keras variable: its path with dots, e.g. transformer.h.0.ln_1.gamma."""
    return variable.path.replace("/", ".")


def layer_norm(layer, x):
    """A Keras LayerNormalization spelled the way ORT's LayerNormFusion matches it (ReduceMean, Sub, Pow,
    ReduceMean, Add, Sqrt, Div, Mul, Add): ORT runs one LayerNormalization kernel instead of nine ops."""
    d = x - tf.reduce_mean(x, axis=-1, keepdims=True)  # (B, T, C)
    variance = tf.reduce_mean(tf.pow(d, 2.0), axis=-1, keepdims=True)  # (B, T, 1)
    return d / tf.sqrt(variance + layer.epsilon) * layer.gamma + layer.beta  # (B, T, C)


def linear(conv, x):
    """HF Conv1D as one MatMul over its concatenated (out, in) blocks: x (B, T, in) -> (B, T, out)."""
    kernel = tf.concat(conv.kernels, 0) if len(conv.kernels) > 1 else conv.kernels[0]  # (out, in)
    return tf.matmul(x, kernel, transpose_b=True) + conv.bias  # (B, T, out)


def attention(block, x, bias, past_k, past_v, heads_shape, merged_shape):
    """One block over the past: x (B, T, C), past (B, nh, P, hs) -> x, present k, v (B, nh, P + T, hs).

    `heads_shape` (B, T, nh, hs) and `merged_shape` (B, T, C) are computed once for every layer: per
    layer they would be Shape/Slice/Concat nodes ORT runs at each call.
    """
    attn, mlp = block.attn, block.mlp
    qkv = linear(attn.c_attn, layer_norm(block.ln_1, x))  # (B, T, 3C)
    q, k, v = (tf.transpose(tf.reshape(t, heads_shape), (0, 2, 1, 3))  # (B, nh, T, hs)
               for t in tf.split(qkv, 3, axis=-1))
    k, v = tf.concat([past_k, k], axis=2), tf.concat([past_v, v], axis=2)  # (B, nh, P + T, hs)
    scores = tf.matmul(q * attn.scale, k, transpose_b=True) + bias  # (B, nh, T, P + T)
    y = tf.matmul(tf.nn.softmax(scores, axis=-1), v)  # (B, nh, T, hs)
    x = x + linear(attn.c_proj, tf.reshape(tf.transpose(y, (0, 2, 1, 3)), merged_shape))  # (B, T, C)
    hidden = activation(block.mlp.act, linear(mlp.c_fc, layer_norm(block.ln_2, x)))  # (B, T, 4C)
    return x + linear(mlp.c_proj, hidden), k, v  # (B, T, C)


def activation(act, x):
    """The MLP's activation; exact GELU through Erf (TF's own lowers to Erfc, which tf2onnx can't convert)."""
    if act.__name__ == "exact_gelu":
        return 0.5 * x * (1.0 + tf.math.erf(x * math.sqrt(0.5)))
    return act(x)


def graph_function(model, base=False):
    """(tf.function, input signature, variables): the function's trailing inputs are the variables' values."""
    cfg, main = model.config, model.transformer
    L, H, D = cfg.n_layer, cfg.n_head, cfg.head_dim
    variables = list({id(v): v for v in main.weights}.values())

    def forward(input_ids, attention_mask, position_ids, *rest):
        past, values = rest[:2 * L], rest[2 * L:]
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            ids = tf.cast(input_ids, tf.int32)  # (B, T)
            mask = tf.cast(attention_mask, tf.int32)  # (B, P + T)
            x = main.embed(ids, tf.cast(position_ids, tf.int32))  # (B, T, C)
            batch, length = tf.shape(ids)[0], tf.shape(ids)[1]
            bias = kv_cache.attention_bias(mask, tf.shape(mask)[1] - length, length)  # (B, 1, T, P + T)
            heads_shape, merged_shape = tf.stack([batch, length, H, D]), tf.stack([batch, length, H * D])
            out = {}
            for i, block in enumerate(main.h):
                x, k, v = attention(block, x, bias, past[2 * i], past[2 * i + 1], heads_shape, merged_shape)
                out[PRESENT.format(i=i, kv="key")], out[PRESENT.format(i=i, kv="value")] = k, v
            x = layer_norm(main.ln_f, x)  # (B, T, C)
            if base:
                out["last_hidden_state"] = x
            else:
                out["logits"] = main.lm_logits(x)  # (B, T, V)
            return out

    signature = [tf.TensorSpec([None, None], tf.int64, n) for n in ("input_ids", "attention_mask", "position_ids")]
    signature += [tf.TensorSpec([None, H, None, D], tf.float32, PAST.format(i=i, kv=kv))
                  for i in range(L) for kv in ("key", "value")]
    signature += [tf.TensorSpec(v.shape, v.dtype, f"weight_{j}") for j, v in enumerate(variables)]
    return tf.function(forward, input_signature=signature, autograph=False), signature, variables
