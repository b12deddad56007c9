"""History-based bans: HF's NoRepeatNGram and NoBadWords logits processors, as graph ops.

`history` (B, L) holds what transformers calls `input_ids` at this step in columns
`[start, cur)`: the caller's (left-padded) prompt, then the tokens generated so far. Columns before
`start` are generate()'s own bucket padding, which transformers never sees.
"""

import tensorflow as tf

from tfgpt2.cache import MASKED


def _scatter_bans(tokens, hit, vocab):
    """(B, V) bool: True at tokens[b, j] wherever hit[b, j]. tokens/hit (B, W)."""
    batch, width = tf.shape(tokens)[0], tf.shape(tokens)[1]
    rows = tf.tile(tf.range(batch)[:, None], [1, width])  # (B, W)
    cols = tf.where(hit, tokens, vocab)  # misses go to a spare column
    idx = tf.reshape(tf.stack([rows, cols], -1), [-1, 2])
    ones = tf.reshape(tf.cast(hit, tf.int32), [-1])
    banned = tf.tensor_scatter_nd_max(tf.zeros([batch, vocab + 1], tf.int32), idx, ones)
    return banned[:, :vocab] > 0


def no_repeat_ngram(history, start, cur, size, vocab):
    """Tokens that would complete an n-gram (n = size) already in the history. (B, V) bool."""
    length = history.shape[1]
    if length < size:
        return tf.zeros([tf.shape(history)[0], vocab], tf.bool)
    width = length - size + 1
    windows = tf.stack([history[:, o:o + width] for o in range(size)], -1)  # (B, W, n)
    prefix_at = tf.maximum(cur - size + 1 + tf.range(size - 1), 0)  # the last n-1 tokens
    prefix = tf.gather(history, prefix_at, axis=1)  # (B, n-1)
    match = tf.reduce_all(tf.equal(windows[:, :, :-1], prefix[:, None, :]), -1)  # (B, W)
    starts = tf.range(width)
    valid = tf.logical_and(starts >= start, starts <= cur - size)  # complete windows inside the history
    return _scatter_bans(windows[:, :, -1], tf.logical_and(match, valid[None]), vocab)


def bad_words(history, start, cur, sequences, vocab):
    """Last tokens of the bad sequences whose prefix ends the history. (B, V) bool. sequences: static."""
    batch = tf.shape(history)[0]
    banned = tf.zeros([batch, vocab], tf.bool)
    singles = [seq[0] for seq in sequences if len(seq) == 1]
    if singles:
        banned = tf.logical_or(banned, tf.reduce_any(tf.one_hot(singles, vocab, dtype=tf.int8) > 0, 0)[None])
    for seq in (s for s in sequences if len(s) > 1):
        prefix = tf.constant(seq[:-1], tf.int32)
        at = tf.maximum(cur - len(prefix) + tf.range(len(prefix)), 0)
        hit = tf.reduce_all(tf.equal(tf.gather(history, at, axis=1), prefix[None]), -1)  # (B,)
        hit = tf.logical_and(hit, cur - start >= len(prefix))  # transformers skips prefixes longer than input_ids
        last = tf.one_hot(seq[-1], vocab, dtype=tf.int8)[None] > 0  # (1, V)
        banned = tf.logical_or(banned, tf.logical_and(hit[:, None], last))
    return banned


def apply(logits, history, cur, params, config):
    """logits (B, V) with the n-gram and bad-word bans of `config` masked."""
    vocab = logits.shape[-1] if logits.shape[-1] is not None else tf.shape(logits)[-1]
    start = params["history_start"]
    if config.no_repeat_ngram_size > 0:
        logits = tf.where(no_repeat_ngram(history, start, cur, config.no_repeat_ngram_size, vocab), MASKED, logits)
    if config.bad_words_ids:
        logits = tf.where(bad_words(history, start, cur, config.bad_words_ids, vocab), MASKED, logits)
    return logits
