"""The one per-row int8 quantizer: the greedy screen's int8 head, the int4 export's int8 table, the ONNX int8 recipe."""

import tensorflow as tf


def int8_rows(w):
    """Symmetric int8 with one scale per row of a (V, C) matrix, in-graph (two reads of w).

    Returns (q (V, C) int8, scale (V,) float32) with |w - scale * q| <= scale / 2 per element and
    |q| <= 127; an all-zero row gets scale 1.
    """
    w = tf.convert_to_tensor(w, tf.float32)
    vocab, width = w.shape
    lanes = 8 if width % 8 == 0 else 1
    # max |w| per row as max/min over (V, C/8, 8) then the 8 lanes: faster in XLA than max(abs(w))
    parts = tf.reshape(w, (vocab, width // lanes, lanes))
    amax = tf.reduce_max(tf.maximum(tf.reduce_max(parts, axis=1), -tf.reduce_min(parts, axis=1)), axis=1)  # (V,)
    scale = tf.where(amax > 0, amax / 127.0, 1.0)  # (V,)
    q = tf.cast(tf.round(w * (1.0 / scale)[:, None]), tf.int8)  # (V, C)
    return q, scale
