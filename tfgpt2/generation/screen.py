"""The int8 screen: greedy next token from the tied LM head, reading an int8 copy of wte.

Decode reads every weight once per token and the LM head is the largest one (V x C fp32: 154 MB
of the 498 MB per token at 124M). Greedy decoding needs only the argmax of the logits, so:

1. approximate every logit from an int8 copy of wte with one scale per row (a quarter of the
   bytes; XLA fuses the int8 -> fp32 convert into each vector-matrix product and splits that
   loop over both cores);
2. bound each approximation's error: |h . (w - s q)| <= ||h||_1 s / 2 (rounding to the nearest
   int8 step), plus a float rounding term for both dot products;
3. compute the fp32 logits of the `CANDIDATES` rows with the highest upper bounds and take their
   argmax when the smallest of those bounds (>= every other row's) stays below it; otherwise
   (the bound too loose) compute all fp32 logits, as without the screen.

Either way the token is the argmax of the fp32 logits: a row outside the candidates can't reach
the winner, so the screen never changes a token (tests compare with the full argmax and with
transformers' greedy generate). The int8 copy is rebuilt from the current wte at the start of
every generate call, so training or loading weights never leaves it stale.

Example:
>>> import numpy as np, tensorflow as tf
>>> from tfgpt2.generation import screen as int8_screen
>>> wte = tf.constant(np.random.default_rng(0).normal(0, 0.02, (1000, 64)), tf.float32)
>>> h = tf.constant(np.random.default_rng(1).normal(0, 1, (2, 64)), tf.float32)
>>> screen = int8_screen.build_screen(wte)
>>> tokens, proven = int8_screen.greedy_tokens(h, wte, screen, tf.zeros([1000], tf.bool))
>>> bool(np.all(tokens.numpy() == np.argmax(h.numpy() @ wte.numpy().T, -1)))
True
"""

from typing import NamedTuple

import tensorflow as tf

from tfgpt2 import quantization
from tfgpt2.cache import MASKED

CANDIDATES = 64  # rows whose fp32 logits are computed exactly each greedy step (capped at vocab / 4)
SAMPLE_CANDIDATES = 256  # the same for top-k sampling (top_k up to this; capped at vocab / 4)
_UNIT = 2.0 ** -24  # fp32 unit roundoff


class Int8Screen(NamedTuple):
    rows: tf.Tensor  # (V, C) int8: round(w / scale), so |w - scale * q| <= scale / 2 per element
    scale: tf.Tensor  # (V,) fp32: max |w| / 127 per row


def _dot_rounding(n):
    """gamma_n: relative error bound of an n-term fp32 dot product, in any summation order."""
    return n * _UNIT / (1.0 - n * _UNIT)


def build_screen(wte):
    """Int8 rows with one scale each from the (V, C) fp32 embedding matrix, in-graph."""
    return Int8Screen(*quantization.int8_rows(wte))


def candidates(vocab_size):
    return max(2, min(CANDIDATES, vocab_size // 4))


def greedy_tokens(hidden, wte, screen, blocked):
    """(tokens, proven): argmax_v hidden . wte[v] over rows not `blocked`, and whether the screen decided.

    hidden (B, C) fp32, blocked (V,) bool -> tokens (B,) int32; when not `proven` the tokens come
    from the full fp32 logits.
    """
    tokens, proven = screened_argmax(hidden, wte, screen, blocked)
    return tf.cond(proven, lambda: tokens, lambda: full_argmax(hidden, wte, blocked)), proven


def screened_argmax(hidden, wte, screen, blocked):
    """(tokens (B,), proven): tokens are the fp32 argmax when `proven` (a bool scalar).

    Error of the approximate logit a_v = s_v (h . q_v) against the real h . w_v, per row:
    |h . (w_v - s_v q_v)| <= ||h||_1 s_v / 2, plus the rounding of both fp32 dot products,
    each <= gamma_C ||h||_1 max|w_v| <= gamma_C ||h||_1 127 s_v (|s_v q_v| <= 127 s_v too).
    """
    top_upper, ids, exact, margin = _candidates(hidden, wte, screen, blocked, candidates(int(wte.shape[0])))
    best = tf.reduce_max(exact, axis=-1)  # (B,)
    # ties go to the lowest id, as argmax over the full row does
    tokens = tf.reduce_min(tf.where(exact == best[:, None], ids, int(wte.shape[0])), axis=-1)  # (B,)
    return tokens, tf.reduce_all(tf.reduce_min(top_upper, axis=-1) < best - margin)


def screened_top_logits(hidden, wte, screen, blocked, top_k):
    """(logits (B, V), proven): when `proven`, the fp32 logits of every row that can be among the `top_k`
    largest (top_k: () or (B,)), MASKED elsewhere: what top-k sampling keeps, from SAMPLE_CANDIDATES rows.

    Proven when each row's k-th largest exact logit is above every other row's upper bound, so the
    top-k filter of these logits keeps the tokens, and the values, that it keeps of the full row."""
    vocab = int(wte.shape[0])
    width = max(2, min(SAMPLE_CANDIDATES, vocab // 4))
    top_upper, ids, exact, margin = _candidates(hidden, wte, screen, blocked, width)
    k = tf.broadcast_to(tf.reshape(top_k, [-1]), [tf.shape(exact)[0]])  # (B,)
    ranked = tf.math.top_k(exact, width).values  # (B, width)
    kth = tf.gather(ranked, tf.clip_by_value(k, 1, width)[:, None] - 1, batch_dims=1)[:, 0]  # (B,)
    proven = tf.reduce_all(tf.logical_and(k <= width, tf.reduce_min(top_upper, axis=-1) < kth - margin))
    rows = tf.broadcast_to(tf.range(tf.shape(ids)[0])[:, None], tf.shape(ids))  # (B, width)
    logits = tf.tensor_scatter_nd_update(tf.fill([tf.shape(ids)[0], vocab], MASKED),
                                         tf.stack([rows, ids], -1), exact)  # (B, V)
    return logits, proven


def _candidates(hidden, wte, screen, blocked, width):
    """(upper bounds (B, width) of the `width` rows with the highest ones, their ids, their exact fp32
    logits (blocked: MASKED), the rounding margin (B,) of those): see screened_argmax for the bound."""
    hidden = tf.cast(hidden, tf.float32)
    rounding = _dot_rounding(int(wte.shape[1]) + 1) * 127.0
    h_l1 = tf.reduce_sum(tf.abs(hidden), axis=-1, keepdims=True) * (1.0 + _dot_rounding(int(wte.shape[1])))  # (B, 1)
    approx = _int8_products(hidden, screen.rows) * screen.scale  # (B, V)
    # 0.5: the int8 step (q is w / s rounded in fp32: off by <= 0.5 + 127 * 3 ulp); 2 x rounding: a_v's
    # own rounding plus room for the fp32 ops of this bound
    upper = approx + h_l1 * (screen.scale * (0.5 + 2.0 * rounding))  # (B, V)
    upper = tf.where(blocked[None], MASKED, upper)
    # every other row's upper bound is <= the smallest selected one. (Slicing top_k's outputs
    # instead makes XLA sort the whole row, many times slower than its TopK.)
    top_upper, ids = tf.math.top_k(upper, width)  # (B, width)
    exact = tf.einsum("bc,bkc->bk", hidden, tf.gather(wte, ids))  # (B, width)
    exact = tf.where(tf.gather(blocked, ids), MASKED, exact)
    margin = 2.0 * rounding * h_l1[:, 0] * tf.reduce_max(screen.scale)  # (B,) rounding of `exact`
    return top_upper, ids, exact, margin


def _int8_products(hidden, int8_rows):
    """hidden (B, C) . int8_rows (V, C) -> (B, V) fp32, one vector-matrix product per row: XLA fuses
    the int8 -> fp32 convert only into those (a (B, C) x (C, V) product converts all of wte first).
    A batch size known only at run time (a serving signature) loops over the rows."""

    if hidden.shape[0] is not None:  # the "+ 0" of int8_product keeps the convert in the decode loop
        return tf.concat([quantization.int8_product(hidden[b:b + 1], int8_rows) for b in range(hidden.shape[0])], 0)
    return tf.map_fn(lambda row: quantization.int8_product(row[None], int8_rows)[0], hidden,
                     fn_output_signature=tf.TensorSpec([int8_rows.shape[0]], tf.float32))


def full_logits(hidden, wte, blocked):
    """All fp32 logits, MASKED where `blocked`. hidden (B, C), blocked (V,) -> (B, V)."""
    logits = tf.matmul(tf.cast(hidden, tf.float32), wte, transpose_b=True)  # (B, V)
    return tf.where(blocked[None], MASKED, logits)


def full_argmax(hidden, wte, blocked):
    """The same choice from all fp32 logits. hidden (B, C), blocked (V,) -> (B,) int32."""
    return tf.argmax(full_logits(hidden, wte, blocked), axis=-1, output_type=tf.int32)
