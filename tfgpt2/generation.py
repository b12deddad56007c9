"""generate(): prefill once, then a compiled decode step in an XLA `tf.while_loop`.

Prompts are left-padded to a multiple of `PROMPT_BUCKET` and the loop length to a
multiple of `NEW_BUCKET`, so a new prompt length inside a bucket reuses the trace.
The KV cache holds exactly `prompt bucket + new-token bucket` slots, so attention
reads only as much cache as the request can use. Plain greedy decoding picks each token
through `greedy_head` (an int8 screen of the LM head, exact argmax); everything else
computes the fp32 logits.
"""

import numpy as np
import tensorflow as tf
from keras import ops

from tfgpt2 import beam, greedy_head, sampling
from tfgpt2.cache import KVCache
from tfgpt2.errors import GPT2InputError
from tfgpt2.main_layer import check_inputs
from tfgpt2.modeling import lm_logits
from tfgpt2.outputs import ModelOutput

PROMPT_BUCKET = 32
NEW_BUCKET = 32
SCREEN_MIN_TOKENS = 8  # fewer new tokens: greedy reads the fp32 head (see Decoder.screen)
SCREEN_MAX_BATCH = 4  # the screen reads its int8 head once per row: 1.2x at batch 2, 1.01x at 8 (124M)
SCREEN_MAX_MISSES = 4  # steps the screen couldn't decide before a call reads only the fp32 head


class GenerateOutput(ModelOutput):
    FIELDS = ("sequences", "scores")


def _round_up(n, size):
    return -(-n // size) * size


class Decoder:
    """Prefill / step functions over a model's transformer, with compiled loops cached per shape."""

    def __init__(self, model):
        self.model = model
        self.cfg = model.config
        self.traces = 0  # how many times a generation graph was traced (tests read it)
        self._loops = {}
        self._steps = {}

    def _head(self, hidden, screened):
        last = hidden[:, -1]  # (B, C)
        return last if screened else lm_logits(self.model, last)  # (B, C) for greedy_head, else (B, V)

    def prefill(self, ids, mask, cache, screened=False):
        hidden, cache, _, _ = self.model.transformer(ids, attention_mask=mask, past_key_values=cache)
        return self._head(hidden, screened), cache

    def step(self, tokens, cache, screened=False):
        ids = tokens[:, None]  # (B, 1)
        hidden, cache, _, _ = self.model.transformer(ids, attention_mask=tf.ones_like(ids), past_key_values=cache)
        return self._head(hidden, screened), cache

    def screen(self, use):
        """greedy_head's int8 copy of wte when `use` (bool tensor), else a zero stand-in never read."""
        wte = self.model.transformer.wte.embeddings
        return greedy_head.Int8Screen(*tf.cond(
            use, lambda: tuple(greedy_head.build_screen(wte)),
            lambda: (tf.zeros(wte.shape, tf.int8), tf.ones(wte.shape[:1]))))

    def greedy(self, hidden, screen, use, misses, i, min_new, eos):
        """(tokens (B,), misses) from last hidden states (B, C): through the screen when `use`.

        `misses` counts the steps the screen couldn't decide (it then read the fp32 head too);
        after SCREEN_MAX_MISSES of them the call stops screening, so weights whose logits the
        int8 bound can't separate cost at most that many wasted screens.
        """
        wte = self.model.transformer.wte.embeddings
        blocked = sampling.eos_blocked(self.cfg.vocab_size, i, min_new, eos)  # (V,)

        def screened():
            tokens, proven = greedy_head.greedy_tokens(hidden, wte, screen, blocked)
            return tokens, misses + tf.cast(tf.logical_not(proven), tf.int32)

        return tf.cond(tf.logical_and(use, misses < SCREEN_MAX_MISSES), screened,
                       lambda: (greedy_head.full_argmax(hidden, wte, blocked), misses))

    def empty_cache(self, batch, capacity):
        # slots may exceed n_positions: positions come from the mask, not the slot index
        return KVCache.empty(self.cfg, batch, capacity, self.model.transformer.compute_dtype, check=False)

    # ------------------------------------------------------------ the XLA loop
    def loop(self, key, jit_compile):
        if (key, jit_compile) not in self._loops:
            self._loops[key, jit_compile] = tf.function(
                lambda *args: self.run_loop(key, *args), jit_compile=jit_compile, reduce_retracing=False)
        return self._loops[key, jit_compile]

    def run_loop(self, key, ids, mask, max_new, min_new, eos, pad, params):
        """Prefill + decode loop as one graph; `key` holds the static choices (flags, steps, beams)."""
        self.traces += 1
        flags, num_steps, num_beams, length_penalty, early_stopping = key
        flags = dict(flags)
        batch = tf.shape(ids)[0]
        prompt = ids.shape[1] if ids.shape[1] is not None else tf.shape(ids)[1]
        cache = self.empty_cache(batch, prompt + num_steps)
        screened = flags.get("screen", False)  # exported signatures choose at run time: no screen
        if screened:  # short requests skip it: building it costs what ~7 screened steps save at 124M
            use = max_new >= SCREEN_MIN_TOKENS
            screen = self.screen(use)
        logits, cache = self.prefill(ids, mask, cache, screened)  # logits: (B, C) hidden if screened
        seen = prompt_seen(ids, mask, self.cfg.vocab_size) if flags["use_penalty"] else tf.zeros([], tf.bool)
        if num_beams > 1:
            tokens, lengths = beam.beam_search(
                self, logits, cache, seen, eos, max_new, min_new, params["repetition_penalty"], num_beams,
                num_steps, length_penalty, early_stopping, flags["use_penalty"])
            return tokens, lengths, tf.zeros([0])
        tokens = tf.fill([batch, num_steps], pad)
        scores = tf.zeros([batch, num_steps if flags["scores"] else 0, self.cfg.vocab_size])

        def body(i, logits, cache, seen, tokens, done, scores, misses):
            if screened:
                (nxt, misses), processed = self.greedy(logits, screen, use, misses, i, min_new, eos), None
            else:
                nxt, processed = choose(logits, seen, i, min_new, eos, params, flags)
            nxt = tf.where(done, pad, nxt)  # (B,)
            tokens = ops.slice_update(tokens, (0, i), nxt[:, None])  # (B, N): column i
            if flags["scores"]:
                scores = ops.slice_update(scores, (0, i, 0), processed[:, None])  # (B, N, V)
            done = tf.logical_or(done, is_stop(nxt, eos))
            if flags["use_penalty"]:
                seen = sampling.mark_seen(seen, nxt, self.cfg.vocab_size)
            logits, cache = self.step(nxt, cache, screened)
            return i + 1, logits, cache, seen, tokens, done, scores, misses

        def cond(i, logits, cache, seen, tokens, done, scores, misses):
            return tf.logical_and(i < max_new, tf.logical_not(tf.reduce_all(done)))

        done = tf.zeros([batch], tf.bool)
        n, _, _, _, tokens, _, scores, _ = tf.while_loop(
            cond, body, (tf.constant(0), logits, cache, seen, tokens, done, scores, tf.constant(0)),
            maximum_iterations=num_steps)
        return tokens, tf.fill([batch], n), scores

    def compiled_step(self, jit_compile, screened):
        """(prefill, step, screen, greedy) for the Python loop: XLA functions, or eager ones."""
        key = (jit_compile, screened)
        if key not in self._steps:
            fns = (lambda ids, mask, cache: self.prefill(ids, mask, cache, screened),
                   lambda tokens, cache: self.step(tokens, cache, screened), self.screen, self.greedy)
            self._steps[key] = tuple(tf.function(f, jit_compile=True) for f in fns) if jit_compile else fns
        return self._steps[key]


def prompt_seen(ids, mask, vocab_size):
    """(B, V) bool: tokens present among the real (mask 1) prompt tokens."""
    hot = tf.one_hot(ids, vocab_size, dtype=tf.int8) * tf.cast(mask, tf.int8)[:, :, None]
    return tf.reduce_any(tf.cast(hot, tf.bool), axis=1)


def is_stop(tokens, eos):
    return tf.reduce_any(tf.equal(tokens[:, None], eos[None]), axis=-1)


def choose(logits, seen, i, min_new, eos, params, flags):
    """min_new_tokens masking, then the samplers."""
    return sampling.select(sampling.block_eos_before(logits, i, min_new, eos), seen, i, params, flags)


def _decoder(model):
    if getattr(model, "_tfgpt2_decoder", None) is None:
        model._tfgpt2_decoder = Decoder(model)
    return model._tfgpt2_decoder


def _validate(cfg, ids, max_new_tokens, min_new_tokens, do_sample, temperature, top_k, top_p,
              repetition_penalty, num_beams, streamer):
    def bad(msg):
        raise GPT2InputError(msg)

    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
        bad(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}.")
    if not 0 <= min_new_tokens <= max_new_tokens:
        bad(f"min_new_tokens={min_new_tokens} must be in [0, max_new_tokens={max_new_tokens}].")
    if ids.shape[1] + max_new_tokens > cfg.n_positions:
        bad(f"prompt of {ids.shape[1]} tokens + max_new_tokens={max_new_tokens} exceeds n_positions="
            f"{cfg.n_positions}; shorten the prompt or lower max_new_tokens to "
            f"{max(cfg.n_positions - ids.shape[1], 0)}.")
    if not 0.0 < top_p <= 1.0:
        bad(f"top_p must be in (0, 1], got {top_p}.")
    if do_sample and not temperature > 0.0:
        bad(f"temperature must be > 0 when do_sample=True, got {temperature}; use do_sample=False for greedy.")
    if not isinstance(top_k, (int, np.integer)) or top_k < 0:
        bad(f"top_k must be an int >= 0 (0 disables it), got {top_k!r}.")
    if not repetition_penalty > 0.0:
        bad(f"repetition_penalty must be > 0, got {repetition_penalty}.")
    if not isinstance(num_beams, (int, np.integer)) or num_beams < 1:
        bad(f"num_beams must be an int >= 1, got {num_beams!r}.")
    if num_beams > 1 and do_sample:
        bad("beam sampling is not supported: use num_beams > 1 with do_sample=False, or num_beams=1.")
    if num_beams > 1 and streamer is not None:
        bad("a streamer sees one token per step, which beam search does not have; use num_beams=1.")


def generate(model, input_ids, attention_mask=None, max_new_tokens=20, min_new_tokens=0, do_sample=False,
             temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0, num_beams=1, length_penalty=1.0,
             early_stopping=False, eos_token_id=None, pad_token_id=None, seed=None, streamer=None,
             output_scores=False, return_dict_in_generate=False, jit_compile=True):
    """Generates up to `max_new_tokens` after each (left-padded) prompt; returns (B, T + n) ids.

    Greedy by default; `do_sample` with temperature/top_k/top_p (seeded, stateless RNG);
    `num_beams > 1` for beam search; `eos_token_id` (int or list) stops rows one by one,
    later positions get `pad_token_id` (default: the first eos id). `streamer(ids)` is called
    with each step's (B,) new ids on the Python loop. `jit_compile=False` runs eagerly.
    """
    cfg = model.config
    ids = np.asarray(check_inputs(cfg, input_ids, attention_mask)).astype(np.int32)
    mask = np.ones_like(ids) if attention_mask is None else (np.asarray(attention_mask) > 0).astype(np.int32)
    if (np.diff(mask, axis=1) < 0).any():
        raise GPT2InputError("attention_mask has padding on the right; generation needs left padding "
                             "(tokenizer(..., padding=True, padding_side='left')).")
    _validate(cfg, ids, max_new_tokens, min_new_tokens, do_sample, temperature, top_k, top_p,
              repetition_penalty, num_beams, streamer)
    eos = [] if eos_token_id is None else list(np.atleast_1d(eos_token_id).astype(int))
    pad = int(pad_token_id if pad_token_id is not None else (eos[0] if eos else 0))
    prompt = min(_round_up(ids.shape[1], PROMPT_BUCKET), cfg.n_positions)
    steps = min(_round_up(max_new_tokens, NEW_BUCKET), cfg.n_positions)
    padded = np.full((ids.shape[0], prompt), pad, np.int32)
    padded_mask = np.zeros_like(padded)
    padded[:, prompt - ids.shape[1]:], padded_mask[:, prompt - ids.shape[1]:] = ids, mask
    flags = dict(do_sample=bool(do_sample), use_top_k=bool(do_sample and top_k > 0),
                 use_top_p=bool(do_sample and top_p < 1.0), use_penalty=repetition_penalty != 1.0,
                 scores=bool(output_scores and num_beams == 1))
    flags["screen"] = bool(num_beams == 1 and not (flags["do_sample"] or flags["use_penalty"] or flags["scores"])
                           and cfg.vocab_size >= 8 and ids.shape[0] <= SCREEN_MAX_BATCH
                           and model.transformer.compute_dtype == "float32")
    params = dict(temperature=tf.constant(float(temperature)), top_k=tf.constant(int(top_k)),
                  top_p=tf.constant(float(top_p)), repetition_penalty=tf.constant(float(repetition_penalty)),
                  seed=tf.constant(int(seed if seed is not None else np.random.randint(2 ** 31)), tf.int64))
    eos_t = tf.constant(eos if eos else [-1], tf.int32)
    if num_beams > 1:
        padded, padded_mask = np.repeat(padded, num_beams, 0), np.repeat(padded_mask, num_beams, 0)
    decoder = _decoder(model)
    if streamer is None:
        key = (tuple(sorted(flags.items())), steps, int(num_beams), float(length_penalty), early_stopping)
        tokens, lengths, scores = decoder.loop(key, jit_compile)(
            tf.constant(padded), tf.constant(padded_mask), tf.constant(max_new_tokens),
            tf.constant(min_new_tokens), eos_t, tf.constant(pad), params)
        n = int(tf.reduce_max(lengths))
        tokens, scores = tokens.numpy()[:, :n], scores.numpy()[:, :n] if flags["scores"] else None
        if num_beams > 1:
            tokens = np.where(np.arange(n)[None] < lengths.numpy()[:, None], tokens, pad)
    else:
        tokens, scores = _python_loop(decoder, padded, padded_mask, max_new_tokens, min_new_tokens, eos_t,
                                      pad, params, flags, steps, streamer, jit_compile)
    sequences = tf.constant(np.concatenate([ids, tokens.astype(np.int32)], axis=1))
    if return_dict_in_generate:
        return GenerateOutput(sequences=sequences, scores=tf.constant(scores) if flags["scores"] else None)
    return sequences


def _python_loop(decoder, ids, mask, max_new, min_new, eos, pad, params, flags, steps, streamer, jit_compile):
    """The same decode step driven from Python: a streamer sees every token as it is made."""
    prefill, step, build_screen, greedy = decoder.compiled_step(jit_compile, flags["screen"])
    use = tf.constant(max_new >= SCREEN_MIN_TOKENS)
    screen = build_screen(use) if flags["screen"] else None
    misses = tf.constant(0)
    cache = decoder.empty_cache(ids.shape[0], ids.shape[1] + steps)
    logits, cache = prefill(tf.constant(ids), tf.constant(mask), cache)  # (B, C) hidden if screened
    vocab = decoder.cfg.vocab_size
    seen = prompt_seen(ids, mask, vocab) if flags["use_penalty"] else None
    done = np.zeros(ids.shape[0], bool)
    tokens, scores = [], []
    for i in range(max_new):
        if flags["screen"]:
            nxt, misses = greedy(logits, screen, use, misses, tf.constant(i), tf.constant(min_new), eos)
            processed = None
        else:
            nxt, processed = choose(logits, seen, tf.constant(i), tf.constant(min_new), eos, params, flags)
        nxt = np.where(done, pad, nxt.numpy()).astype(np.int32)
        tokens.append(nxt)
        if flags["scores"]:
            scores.append(processed.numpy())
        if streamer is not None:
            streamer(nxt)
        done |= np.isin(nxt, eos.numpy())
        if done.all() or i + 1 == max_new:
            break
        if flags["use_penalty"]:
            seen = sampling.mark_seen(seen, tf.constant(nxt), vocab)
        logits, cache = step(tf.constant(nxt), cache)
    scores = np.stack(scores, 1) if scores else np.zeros((ids.shape[0], 0, vocab), np.float32)
    return np.stack(tokens, 1), scores
