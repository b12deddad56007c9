"""The project's weight quantizers: per-row int8 (`int8_rows`) and group-wise int4 (`int4_rows`).

`int8_rows` serves the greedy screen's int8 head, the int4 export's int8 table, the ONNX int8 recipe
and `model.quantize("int8")`; `int4_rows` serves `model.quantize("int4")`. int4 values are packed
eight to an int32 word along the rows (word r holds rows r, R + r, ..., 7R + r of the matrix,
R = ceil(rows / 8)), so unpacking is eight shifts of the same words and one concatenation: XLA CPU
fuses that and the int4 -> float convert into a vector-matrix product (docs/design.md).
"""

import numpy as np
import tensorflow as tf

INT4_GROUP = 32  # int4 weights: one scale per 32 consecutive inputs of a row (llama.cpp's Q4_0 block)


def int8_rows(w, levels=127):
    """Symmetric int8 with one scale per row of a (V, C) matrix, in-graph (two reads of w).

    Returns (q (V, C) int8, scale (V,) float32) with |w - scale * q| <= scale / 2 per element and
    |q| <= levels; an all-zero row gets scale 1. `levels=63` is ONNX Runtime's `reduce_range`: 7-bit
    weights, which its u8 x s8 kernels on AVX2 CPUs without VNNI multiply without saturating.
    """
    w = tf.convert_to_tensor(w, tf.float32)
    vocab, width = w.shape
    lanes = 8 if width % 8 == 0 else 1
    # max |w| per row as max/min over (V, C/8, 8) then the 8 lanes: faster in XLA than max(abs(w))
    parts = tf.reshape(w, (vocab, width // lanes, lanes))
    amax = tf.reduce_max(tf.maximum(tf.reduce_max(parts, axis=1), -tf.reduce_min(parts, axis=1)), axis=1)  # (V,)
    scale = tf.where(amax > 0, amax / float(levels), 1.0)  # (V,)
    q = tf.cast(tf.round(w * (1.0 / scale)[:, None]), tf.int8)  # (V, C)
    return q, scale


def loop_zero(x, dtype):
    """An integer 0 read from x (is_nan(x[0, 0])) that XLA can't prove is 0. Added to a quantized weight
    before its convert, it keeps XLA from hoisting the loop-invariant convert out of a decode loop, which
    would read a 4x (int8) or 8x (int4) larger float copy every step; a NaN input is garbage anyway."""
    return tf.cast(tf.math.is_nan(x[0, 0]), dtype)


def int8_product(x, q):
    """x (N, C) float32 @ q^T for int8 rows q (V, C) -> (N, V), the convert inside the product (loop_zero)."""
    return tf.matmul(x, tf.cast(q + loop_zero(x, q.dtype), x.dtype), transpose_b=True)


def int4_group(width):
    """The int4 group size for rows of `width` inputs: INT4_GROUP if it divides them, else the whole row."""
    return INT4_GROUP if width % INT4_GROUP == 0 else width


def int4_rows(w):
    """Symmetric int4 of a (O, I) float matrix, one scale per group of `int4_group(I)` inputs (numpy).

    Returns (words (ceil(O / 8), I) int32, scale (O, I / group) float32); w ~ q * scale with q in
    [-7, 7], |w - q * scale| <= scale / 2. Padding rows (O not a multiple of 8) are zero.
    """
    w = np.asarray(w, np.float32)
    rows, width = w.shape
    group = int4_group(width)
    parts = w.reshape(rows, width // group, group)
    amax = np.abs(parts).max(axis=-1)  # (O, I / group)
    scale = np.where(amax > 0, amax / 7.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(parts / scale[..., None]), -7, 7).astype(np.int64).reshape(rows, width)
    stride = -(-rows // 8)
    q = np.concatenate([q, np.zeros((8 * stride - rows, width), np.int64)]).reshape(8, stride, width)
    words = np.zeros((stride, width), np.int64)
    for k in range(8):
        words |= (q[k] & 0xF) << (4 * k)
    return words.astype(np.uint32).view(np.int32), scale


def unpack_int4(words, rows, zero=None):
    """(R, I) int32 words -> (rows, I) int32 values in [-8, 7], in-graph (the inverse of int4_rows' packing).

    `zero` (an int32 scalar, 0 at run time) is added to the words: see loop_zero.
    """
    if zero is not None:
        words = words + zero
    parts = [tf.bitwise.right_shift(tf.bitwise.left_shift(words, 28 - 4 * k), 28) for k in range(8)]
    q = tf.concat(parts, 0)  # (8R, I)
    return q if q.shape[0] == rows else q[:rows]


def dequantize_int4(words, scale, zero=None):
    """(O, I) float32 weights from int4_rows' (words, scale), in-graph."""
    rows, groups = scale.shape
    width = words.shape[1]
    q = tf.cast(unpack_int4(words, rows, zero), tf.float32)  # (O, I)
    return tf.reshape(tf.reshape(q, (rows, groups, width // groups)) * scale[:, :, None], (rows, width))
