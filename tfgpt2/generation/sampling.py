"""Logit processors and token selection, the same code in the XLA loop and the Python loop."""

import tensorflow as tf

from tfgpt2.cache import MASKED


def column(setting):
    """A setting as a column that broadcasts over (B, V): () -> (1, 1), one per row (B,) -> (B, 1)."""
    return tf.reshape(setting, [-1, 1])


def repetition_penalty(logits, seen, penalty):
    """HF rule: a seen token's logit is divided by `penalty` if > 0, else multiplied. seen (B, V) bool;
    penalty () or one per row (B,)."""
    penalty = column(penalty)
    penalised = tf.where(logits > 0, logits / penalty, logits * penalty)
    return tf.where(seen, penalised, logits)


TOP_K_SORTED = 256  # top_k up to this filters from a TopK of that width, not a sort of the whole vocabulary


def top_k_top_p(logits, top_k, top_p, use_top_k, use_top_p):
    """Masks logits outside the top-k and outside the smallest set with probability >= top_p.

    With top-k on, both filters only ever keep tokens among the k largest logits, so for
    k <= TOP_K_SORTED (a run-time choice) they read those from a TopK; else from the sorted row.
    top_k and top_p: () or one per row (B,).
    """
    vocab = logits.shape[-1]
    k = tf.clip_by_value(top_k, 1, vocab) if use_top_k else tf.constant(vocab)

    def kept(width):
        ranked = tf.math.top_k(logits, width).values if width < vocab else tf.sort(logits, -1, "DESCENDING")
        return _filter(logits, ranked, k, top_p, use_top_k, use_top_p)

    if not use_top_k or vocab <= TOP_K_SORTED:
        return kept(vocab)
    return tf.cond(tf.reduce_all(k <= TOP_K_SORTED), lambda: kept(TOP_K_SORTED), lambda: kept(vocab))


def _filter(logits, ranked, k, top_p, use_top_k, use_top_p):
    """top_k_top_p from `ranked` (B, W): each row's W largest logits in descending order, W >= k."""
    width = ranked.shape[-1]
    if use_top_k:
        k = column(k)  # (1, 1) or (B, 1)
        kth = tf.gather(ranked, tf.broadcast_to(k - 1, [tf.shape(ranked)[0], 1]), batch_dims=1)  # (B, 1)
        logits = tf.where(logits < kth, MASKED, logits)
        ranked = tf.where(tf.range(width)[None] < k, ranked, MASKED)
    if use_top_p:
        top_p = column(top_p)
        probs = tf.nn.softmax(ranked, axis=-1)  # (B, W): the tokens past W have probability 0 after top-k
        before = tf.cumsum(probs, axis=-1, exclusive=True)  # mass ahead of each token
        keep = tf.logical_or(before < top_p, tf.range(width)[None] == 0)  # keep >= 1 token
        keep = tf.logical_or(keep, top_p >= 1.0)  # 1.0 = off, whatever the float cumsum says
        threshold = tf.reduce_min(tf.where(keep, ranked, -MASKED), axis=-1, keepdims=True)  # (B, 1)
        logits = tf.where(logits < threshold, MASKED, logits)
    return logits


def typical(logits, mass):
    """HF TypicalLogitsWarper: keep the tokens whose surprisal is closest to the entropy, up to `mass`."""
    log_p = tf.nn.log_softmax(logits, axis=-1)  # (B, V)
    entropy = -tf.reduce_sum(log_p * tf.exp(log_p), -1, keepdims=True)  # (B, 1)
    shifted = tf.abs(-log_p - entropy)  # (B, V)
    order = tf.argsort(shifted, axis=-1, stable=True)  # ascending
    sorted_shifted = tf.gather(shifted, order, batch_dims=1)
    cumulative = tf.cumsum(tf.nn.softmax(tf.gather(logits, order, batch_dims=1), -1), -1)
    last = tf.minimum(tf.reduce_sum(tf.cast(cumulative < mass, tf.int32), 1), tf.shape(logits)[-1] - 1)  # (B,)
    cutoff = tf.gather(sorted_shifted, last[:, None], batch_dims=1)  # (B, 1)
    return tf.where(shifted > cutoff, MASKED, logits)  # the most typical token always stays


def _mix(x):
    """murmur3's 32-bit finaliser: a bijective avalanche over uint32."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16)) * tf.constant(0x85EBCA6B, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 13)) * tf.constant(0xC2B2AE35, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))


def uniform(shape, seed, step, rows=None, columns=None):
    """Counter-based uniforms in (0, 1) of `shape` (B, V) from integer hashing of (seed, step, element).

    TF's stateless Philox gives other numbers under XLA when the key is a traced tensor, so
    the sampler hashes with plain uint32 ops, which are bit-identical in eager, graph and XLA.
    seed: () or one per row (B,); element (b, v) counts rows[b] * V + v, rows = 0..B-1 by default;
    `columns` (B, W): only those elements of each row, the values the full (B, V) draw has there.
    """
    seed = tf.cast(tf.bitwise.bitwise_and(tf.cast(seed, tf.int64), 0xFFFFFFFF), tf.uint32)
    key = _mix(tf.bitwise.bitwise_xor(_mix(seed + tf.constant(0x9E3779B9, tf.uint32)),
                                      tf.cast(step, tf.uint32) * tf.constant(0x632BE5AB, tf.uint32)))
    key = tf.reshape(key, [-1, 1])  # (1, 1) or (B, 1)
    rows = tf.range(shape[0]) if rows is None else rows
    columns = tf.range(shape[1])[None] if columns is None else columns
    counter = tf.cast(rows[:, None] * shape[1] + columns, tf.uint32)  # (B, V) or (B, W)
    bits = _mix(tf.bitwise.bitwise_xor(counter * tf.constant(0x27D4EB2F, tf.uint32), key))
    bits = _mix(bits + key)
    return (tf.cast(tf.bitwise.right_shift(bits, 8), tf.float32) + 0.5) * (1.0 / (1 << 24))


def sample(logits, seed, step, rows=None):
    """Gumbel-max draw keyed by (seed, step): the same token in eager, graph and XLA (see uniform)."""
    u = uniform(tf.shape(logits), seed, step, rows)
    gumbel = -tf.math.log(-tf.math.log(u))
    return tf.argmax(logits + gumbel, axis=-1, output_type=tf.int32)  # (B,)


def sample_top_k(logits, params, step, use_top_p):
    """The token `sample(top_k_top_p(logits / temperature))` draws, computed over the TOP_K_SORTED largest
    logits only (top_k <= TOP_K_SORTED in every row): the same top-k / top-p rule on the ranked values and
    the same noise at the kept ids, so the same token, without filtering and drawing noise over V."""
    vocab = logits.shape[-1]
    ranked, ids = tf.math.top_k(logits / column(params["temperature"]), TOP_K_SORTED)  # (B, W) descending
    kept = _filter(ranked, ranked, tf.clip_by_value(params["top_k"], 1, vocab), params["top_p"], True, use_top_p)
    u = uniform(tf.shape(logits), params["seed"], step, columns=ids)  # (B, W): the full draw's values at ids
    scored = kept - tf.math.log(-tf.math.log(u))  # (B, W)
    best = tf.reduce_max(scored, axis=-1, keepdims=True)
    return tf.reduce_min(tf.where(scored == best, ids, vocab), axis=-1)  # (B,) ties: the lowest id, as argmax


def select(logits, seen, step, params, config):
    """Next token ids (B,) and the processed logits from last-position logits (B, V).

    params: the runtime tensors (temperature, top_k, top_p, repetition_penalty, seed);
    config: the DecodeConfig whose static choices pick the processors. With `config.dynamic`
    every choice is made from the tensors instead (one graph for all settings).
    """
    logits = tf.cast(logits, tf.float32)
    if config.use_penalty:
        logits = repetition_penalty(logits, seen, params["repetition_penalty"])
    if config.dynamic:  # temperature 0 = greedy
        greedy = tf.argmax(logits, axis=-1, output_type=tf.int32)
        warped = logits / column(tf.maximum(params["temperature"], 1e-6))
        k = tf.where(params["top_k"] > 0, params["top_k"], tf.shape(logits)[-1])
        filtering = tf.reduce_any(tf.logical_or(params["top_k"] > 0, params["top_p"] < 1.0))
        unfiltered = warped
        warped = tf.cond(filtering, lambda: top_k_top_p(unfiltered, k, params["top_p"], True, True),
                         lambda: unfiltered)
        sampled = sample(warped, params["seed"], step, params.get("noise_rows"))
        return tf.where(params["temperature"] > 0, sampled, greedy), warped
    if not config.do_sample:
        return tf.argmax(logits, axis=-1, output_type=tf.int32), logits
    if config.use_top_k and not (config.use_typical or config.output_scores) and logits.shape[-1] > TOP_K_SORTED:
        return tf.cond(tf.reduce_all(params["top_k"] <= TOP_K_SORTED),
                       lambda: sample_top_k(logits, params, step, config.use_top_p),
                       lambda: select_dense(logits, params, step, config)[0]), None
    return select_dense(logits, params, step, config)


def select_dense(logits, params, step, config):
    """select's sampling over the whole (B, V) row: (tokens (B,), processed logits)."""
    logits = logits / params["temperature"]
    if config.use_top_k or config.use_top_p:
        logits = top_k_top_p(logits, params["top_k"], params["top_p"], config.use_top_k, config.use_top_p)
    if config.use_typical:
        logits = typical(logits, params["typical_p"])
    return sample(logits, params["seed"], step), logits


def eos_blocked(vocab, step, min_new, eos):
    """(V,) bool: the eos ids while fewer than `min_new` tokens were made (HF MinNewTokens). eos (E,).
    None when `min_new` is the Python int 0 (exported signatures: nothing is ever blocked)."""
    if isinstance(min_new, int) and min_new == 0:
        return None
    is_eos = tf.reduce_any(tf.equal(tf.range(vocab)[:, None], eos[None]), axis=1)  # (V,)
    return tf.logical_and(step < min_new, is_eos)


def block_eos_before(logits, step, min_new, eos):
    """eos logits are masked while fewer than `min_new` tokens were made."""
    blocked = eos_blocked(tf.shape(logits)[-1], step, min_new, eos)
    return logits if blocked is None else tf.where(blocked[None], MASKED, logits)


def mark_seen(seen, tokens, vocab_size):
    """seen (B, V) |= one_hot(tokens (B,))."""
    return tf.logical_or(seen, tf.cast(tf.one_hot(tokens, vocab_size, dtype=tf.int8), tf.bool))
