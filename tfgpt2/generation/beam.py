"""Beam search in one XLA-compiled `tf.while_loop`, with transformers' (v5) vectorised semantics.

Per step: top `K2 = max(2, 1 + n_eos) * K` continuations of K*V; the best K that did not
stop continue; stopped ones among the top K enter the finished set with score
`logprob / generated_len ** length_penalty`; HF's early-stop heuristic ends the loop.
"""

import tensorflow as tf
from keras import ops

from tfgpt2.cache import MASKED as NEG
from tfgpt2.generation import bans, sampling


def _gather(x, idx):
    """x (B, M, ...) gathered at idx (B, K) along axis 1."""
    return tf.gather(x, idx, axis=1, batch_dims=1)


def beam_search(decoder, logits, cache, seen, params, config, prompt):
    """logits (B*K, V) after prefill of K copies of each prompt (B*K, P); returns the best
    `R = config.num_return_sequences` beams of each row, best first: tokens (B*R, N), lengths (B*R,).

    params: the loop's runtime tensors; config: its DecodeConfig (num_beams, num_steps,
    length_penalty, early_stopping, use_penalty, the bans).
    """
    eos, max_new, min_new = params["eos_token_id"], params["max_new_tokens"], params["min_new_tokens"]
    penalty, num_steps, length_penalty = params["repetition_penalty"], config.num_steps, config.length_penalty
    k, early_stopping, use_penalty = config.num_beams, config.early_stopping, config.use_penalty
    bk, vocab = logits.shape  # static: the loop keeps these shapes
    b = bk // k
    k2 = max(2, 1 + int(eos.shape[0])) * k
    top_mask = tf.concat([tf.ones([k], tf.bool), tf.zeros([k2 - k], tf.bool)], 0)  # (K2,)
    state = dict(
        running=tf.zeros([b, k, num_steps], tf.int32), running_scores=tf.concat(
            [tf.zeros([b, 1]), tf.fill([b, k - 1], NEG)], 1),
        finished=tf.zeros([b, k, num_steps], tf.int32), finished_scores=tf.fill([b, k], NEG),
        is_finished=tf.zeros([b, k], tf.bool), finished_len=tf.zeros([b, k], tf.int32),
        unsatisfied=tf.ones([b, 1], tf.bool), go=tf.constant(True))

    def body(i, logits, cache, seen, s):
        log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)  # (B*K, V)
        if use_penalty:
            log_probs = sampling.repetition_penalty(log_probs, seen, penalty)
        log_probs = sampling.block_eos_before(log_probs, i, min_new, eos)
        if config.uses_history:
            history = tf.concat([prompt, tf.reshape(s["running"], [bk, num_steps])], 1)  # (B*K, P + N)
            log_probs = bans.apply(log_probs, history, prompt.shape[1] + i, params, config)
        acc = tf.reshape(log_probs, [b, k, vocab]) + s["running_scores"][:, :, None]
        topk_lp, topk_idx = tf.math.top_k(tf.reshape(acc, [b, k * vocab]), k=k2)  # (B, K2)
        src, tok = topk_idx // vocab, topk_idx % vocab  # (B, K2)
        topk_seq = _gather(s["running"], src)  # (B, K2, N)
        topk_seq = ops.slice_update(topk_seq, (0, 0, i), tok[:, :, None])  # write column i
        hits = tf.logical_or(tf.reduce_any(tf.equal(tok[:, :, None], eos), -1), i + 1 >= max_new)  # (B, K2)
        # running beams for the next step
        run_lp = topk_lp + tf.cast(hits, tf.float32) * NEG
        _, nxt = tf.math.top_k(run_lp, k=k)  # (B, K)
        running, running_scores = _gather(topk_seq, nxt), _gather(run_lp, nxt)
        # finished beams
        just = tf.logical_and(hits, top_mask[None])
        norm = topk_lp / tf.pow(tf.cast(i + 1, tf.float32), length_penalty)
        full = tf.logical_and(tf.reduce_all(s["is_finished"], -1, keepdims=True), early_stopping is True)
        norm += tf.cast(full, tf.float32) * NEG + tf.cast(~s["unsatisfied"], tf.float32) * NEG
        norm += tf.cast(~just, tf.float32) * NEG
        merged_scores = tf.concat([s["finished_scores"], norm], 1)
        _, best = tf.math.top_k(merged_scores, k=k)
        pick = lambda a, c: _gather(tf.concat([a, c], 1), best)  # noqa: E731
        finished = pick(s["finished"], topk_seq)
        finished_len = pick(s["finished_len"], tf.fill(tf.shape(tok), i + 1))
        is_finished = pick(s["is_finished"], just)
        finished_scores = _gather(merged_scores, best)
        # reorder cache / seen rows to the surviving beams, then step the model
        origin = tf.reshape(_gather(src, nxt) + tf.range(b)[:, None] * k, [-1])  # (B*K,)
        cache = cache._replace(layers=tuple(tf.gather(x, origin, axis=1) for x in cache.layers),
                               mask=tf.gather(cache.mask, origin))
        next_tok = tf.reshape(_gather(tok, nxt), [-1])  # (B*K,)
        seen = sampling.mark_seen(tf.gather(seen, origin), next_tok, vocab) if use_penalty else seen
        logits, cache = decoder.step(next_tok, cache)
        # HF's early-stop heuristic
        hyp_len = tf.cast(max_new if (early_stopping == "never" and length_penalty > 0) else i + 1, tf.float32)
        best_running = running_scores[:, :1] / tf.pow(hyp_len, length_penalty)
        worst = tf.where(is_finished, tf.reduce_min(finished_scores, 1, keepdims=True), NEG)
        unsatisfied = tf.logical_and(s["unsatisfied"], tf.reduce_any(best_running > worst, -1, keepdims=True))
        go = tf.reduce_any(unsatisfied) & ~(tf.reduce_all(is_finished) & (early_stopping is True)) \
            & ~tf.reduce_all(hits)
        return i + 1, logits, cache, seen, dict(
            running=running, running_scores=running_scores, finished=finished, finished_scores=finished_scores,
            is_finished=is_finished, finished_len=finished_len, unsatisfied=unsatisfied, go=go)

    _, _, _, _, s = tf.while_loop(
        lambda i, logits, cache, seen, s: tf.logical_and(i < max_new, s["go"]),
        body, (tf.constant(0), logits, cache, seen, state), maximum_iterations=num_steps)
    r = config.num_return_sequences
    return tf.reshape(s["finished"][:, :r], [b * r, num_steps]), tf.reshape(s["finished_len"][:, :r], [-1])
