"""Decoder: prefill, one decode step, and the loops that drive it (XLA `tf.while_loop` or Python).

Both loops run the same step: `pick` (the head chooses the tokens, finished rows get the pad id,
stop tokens finish rows, the repetition-penalty set grows), then `step` (one token through the
transformer into the static cache). The XLA loop writes the tokens into a (B, num_steps) tensor;
the Python loop hands each step's tokens to a streamer.
"""

import numpy as np
import tensorflow as tf
from keras import ops

from tfgpt2 import cache as kv_cache
from tfgpt2.cache import KVCache
from tfgpt2.generation import beam, heads, sampling


class Decoder:
    """Prefill / step over a model's transformer, with compiled loops cached per DecodeConfig.

    Exported graphs choose how the weights are read: `table` (an object with `lookup(ids)` and
    `logits(hidden)`, e.g. export/bound.InputTable) replaces the wte embedding and the tied head, and
    `merged_projections` and `shared_blocks` (see TFGPT2MainLayer.call) are passed to every transformer call.
    """

    def __init__(self, model, table=None, merged_projections=False, shared_blocks=False):
        self.transformer = model.transformer
        self.cfg = model.config
        self.lm_logits = table.logits if table is not None else self.transformer.lm_logits
        self.lookup = table.lookup if table is not None else None  # None: the wte embedding
        self.merged_projections = merged_projections
        self.shared_blocks = shared_blocks
        self.traces = 0  # how many times a generation graph was traced (tests read it)
        self._loops = {}
        self._steps = {}

    def prefill(self, ids, mask, cache, head=None):
        """(carried, cache): fp32 logits (B, V) of the last position, or what `head` projects."""
        return self._forward(ids, mask, cache, head)

    def step(self, tokens, cache, head=None):
        """One new token per row (B,) through the transformer into the cache."""
        ids = tf.minimum(tokens, self.cfg.vocab_size - 1)[:, None]  # (B, 1); a finished row's pad may be any id
        return self._forward(ids, tf.ones_like(ids), cache, head)

    def _forward(self, ids, mask, cache, head):
        """Positions count the real tokens before each one (HF generate's rule), so left padding is inert."""
        positions = kv_cache.new_positions(cache.mask, mask)  # (B, T)
        hidden, cache, _, _ = self.transformer(ids, attention_mask=mask, past_key_values=cache, position_ids=positions,
                                               lookup=self.lookup, merged_projections=self.merged_projections,
                                               grow_cache=False, shared_blocks=self.shared_blocks)
        return (self.lm_logits(hidden[:, -1]) if head is None else head.project(hidden)), cache

    def pick(self, head, context, carried, seen, history, done, misses, i, params):
        """The tokens of step `i`: (tokens (B,), processed logits or None, seen, done, misses).

        history: (B, P + num_steps) prompt then tokens so far, or None (see heads.py)."""
        tokens, processed, misses = head.choose(carried, context, misses, i, seen, history, params)
        tokens = tf.where(done, params["pad_token_id"], tokens)  # (B,)
        done = tf.logical_or(done, is_stop(tokens, params["eos_token_id"]))
        if head.config.use_penalty:
            seen = sampling.mark_seen(seen, tokens, self.cfg.vocab_size)
        return tokens, processed, seen, done, misses

    def empty_cache(self, batch, capacity):
        # slots may exceed n_positions: positions come from the mask, not the slot index
        return KVCache.empty(self.cfg, batch, capacity, self.transformer.compute_dtype, check=False)

    def initial_seen(self, ids, mask, config):
        return prompt_seen(ids, mask, self.cfg.vocab_size) if config.use_penalty else tf.zeros([], tf.bool)

    # ------------------------------------------------------------ the XLA loop
    def loop(self, config, jit_compile=True):
        """The compiled `run_loop` for `config` (its trace key)."""
        if (config, jit_compile) not in self._loops:
            self._loops[config, jit_compile] = tf.function(
                lambda ids, mask, params: self.run_loop(config, ids, mask, params), jit_compile=jit_compile,
                reduce_retracing=False)
        return self._loops[config, jit_compile]

    def run_loop(self, config, ids, mask, params):
        """Prefill + decode loop as one graph: (tokens (B, num_steps), lengths (B,), scores)."""
        self.traces += 1
        batch = tf.shape(ids)[0]
        prompt = ids.shape[1] if ids.shape[1] is not None else tf.shape(ids)[1]
        num_steps = config.num_steps
        cache = self.empty_cache(batch, prompt + num_steps)
        head = heads.for_config(self.transformer, config)
        context = head.begin(params)
        carried, cache = self.prefill(ids, mask, cache, head)
        seen = self.initial_seen(ids, mask, config)
        if config.num_beams > 1:
            tokens, lengths = beam.beam_search(self, carried, cache, seen, params, config, ids)
            return tokens, lengths, tf.zeros([0])
        tokens = tf.zeros([batch, num_steps], tf.int32) + tf.reshape(params["pad_token_id"], [-1, 1])  # (B, N)
        scores = tf.zeros([batch, num_steps if config.output_scores else 0, self.cfg.vocab_size])

        def body(i, carried, cache, seen, tokens, done, scores, misses):
            history = tf.concat([ids, tokens], 1) if config.uses_history else None  # (B, P + N)
            nxt, processed, seen, done, misses = self.pick(head, context, carried, seen, history, done, misses, i,
                                                           params)
            done = tf.logical_or(done, i + 1 >= max_new)  # a row's own max_new_tokens (exported signatures)
            tokens = ops.slice_update(tokens, (0, i), nxt[:, None])  # (B, N): column i
            if config.output_scores:
                scores = ops.slice_update(scores, (0, i, 0), processed[:, None])  # (B, N, V)
            carried, cache = self.step(nxt, cache, head)
            return i + 1, carried, cache, seen, tokens, done, scores, misses

        def cond(i, carried, cache, seen, tokens, done, scores, misses):
            return tf.logical_and(i < tf.reduce_max(max_new), tf.logical_not(tf.reduce_all(done)))

        max_new = tf.reshape(params["max_new_tokens"], [-1])  # (1,) or one per row (B,)
        done = tf.zeros([batch], tf.bool)
        n, _, _, _, tokens, _, scores, _ = tf.while_loop(
            cond, body, (tf.constant(0), carried, cache, seen, tokens, done, scores, tf.constant(0)),
            maximum_iterations=num_steps)
        return tokens, tf.broadcast_to(tf.minimum(n, max_new), [batch]), scores

    # ------------------------------------------------------------ the Python loop
    def python_loop(self, config, ids, mask, params, streamer, jit_compile=True):
        """The same step driven from Python: `streamer(tokens)` sees every step's (B,) ids."""
        begin, prefill, pick, step = self._python_steps(config, jit_compile)
        context = begin(params)
        cache = self.empty_cache(ids.shape[0], ids.shape[1] + config.num_steps)
        carried, cache = prefill(tf.constant(ids), tf.constant(mask), cache)
        seen = self.initial_seen(ids, mask, config)
        done, misses = tf.zeros([ids.shape[0]], tf.bool), tf.constant(0)
        tokens, scores = [], []
        history = np.concatenate([ids, np.full((ids.shape[0], config.num_steps), config.pad, np.int32)], 1)
        for i in range(config.max_new_tokens):
            nxt, processed, seen, done, misses = pick(context, carried, seen, tf.constant(history) if
                                                      config.uses_history else None, done, misses, tf.constant(i),
                                                      params)
            tokens.append(nxt.numpy())
            history[:, ids.shape[1] + i] = tokens[-1]
            if config.output_scores:
                scores.append(processed.numpy())
            if streamer is not None:
                streamer(tokens[-1])
            if bool(tf.reduce_all(done)) or i + 1 == config.max_new_tokens:
                break
            carried, cache = step(nxt, cache)
        vocab = self.cfg.vocab_size
        scores = np.stack(scores, 1) if scores else np.zeros((ids.shape[0], 0, vocab), np.float32)
        return np.stack(tokens, 1), scores

    def _python_steps(self, config, jit_compile):
        """(begin, prefill, pick, step) for the Python loop: XLA functions, or eager ones."""
        if (config, jit_compile) not in self._steps:
            head = heads.for_config(self.transformer, config)
            fns = (head.begin, lambda ids, mask, cache: self.prefill(ids, mask, cache, head),
                   lambda *args: self.pick(head, *args), lambda tokens, cache: self.step(tokens, cache, head))
            self._steps[config, jit_compile] = tuple(tf.function(f, jit_compile=True) for f in fns) \
                if jit_compile else fns
        return self._steps[config, jit_compile]


def prompt_seen(ids, mask, vocab_size):
    """(B, V) bool: tokens present among the real (mask 1) prompt tokens."""
    hot = tf.one_hot(ids, vocab_size, dtype=tf.int8) * tf.cast(mask, tf.int8)[:, :, None]
    return tf.reduce_any(tf.cast(hot, tf.bool), axis=1)


def is_stop(tokens, eos):
    """(B,) bool: tokens (B,) among the stop ids, eos (E,) for every row or (B, 1) one per row."""
    return tf.reduce_any(tf.equal(tokens[:, None], eos if eos.shape.rank == 2 else eos[None]), axis=-1)


def decoder_of(model):
    """The model's Decoder (created on first use; it caches the compiled loops)."""
    if getattr(model, "_tfgpt2_decoder", None) is None:
        model._tfgpt2_decoder = Decoder(model)
    return model._tfgpt2_decoder
