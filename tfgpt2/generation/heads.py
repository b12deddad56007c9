"""The LM head strategies of a decode loop, behind one interface.

A head turns the transformer's last hidden states into the next tokens:
- `begin(params)`: per-call constants (built once, before the loop) -> context;
- `project(hidden (B, T, C))`: what the loop carries from one step to the next;
- `choose(carried, context, misses, i, seen, history, params) -> (tokens (B,), processed logits or None, misses)`;
  `history` (B, L) is the token history for the n-gram / bad-word bans (None when no ban is on).

`Fp32Head` computes the fp32 logits and hands them to the samplers (every decoding mode).
`ScreenedGreedyHead` decides plain greedy steps through an int8 copy of the tied embedding
(generation/screen.py): the token is the fp32 argmax either way, reading a quarter of the bytes.
`ScreenedTopKHead` does the same for top-k sampling: the samplers get the fp32 logits of every row
that can be among the top k (MASKED elsewhere), so they keep what they keep of the full row.
"""

import tensorflow as tf

from tfgpt2.generation import bans, sampling, screen

SCREEN_MIN_TOKENS = 8  # fewer new tokens: building the int8 copy costs more than the screen saves
SCREEN_MAX_BATCH = 4  # the screen reads its int8 head once per row; at larger batches that stops paying
SCREEN_MAX_MISSES = 4  # steps the screen couldn't decide before a call reads only the fp32 head


class Fp32Head:
    """Logits of the tied head; the token from the samplers."""

    def __init__(self, transformer, config):
        self.transformer, self.config = transformer, config

    def begin(self, params):
        return ()

    def project(self, hidden):
        return self.transformer.lm_logits(hidden[:, -1])  # (B, V)

    def choose(self, logits, context, misses, i, seen, history, params):
        logits = sampling.block_eos_before(logits, i, params["min_new_tokens"], params["eos_token_id"])
        if self.config.uses_history:
            logits = bans.apply(logits, history, history.shape[1] - self.config.num_steps + i, params, self.config)
        tokens, processed = sampling.select(logits, seen, i, params, self.config)
        return tokens, processed, misses


class ScreenedGreedyHead:
    """Plain greedy through the int8 screen; carries the last hidden state (B, C), not logits."""

    def __init__(self, transformer, config):
        self.transformer, self.config = transformer, config
        self.wte = transformer.wte.embeddings
        self.vocab_size = int(self.wte.shape[0])

    def begin(self, params):
        """(int8 copy of wte, use): the copy is rebuilt every call, so it is never stale; a zero
        stand-in, never read, when the call is too short to pay for it (a runtime choice: no retrace)."""
        use = tf.reduce_max(params["max_new_tokens"]) >= SCREEN_MIN_TOKENS
        wte = self.wte
        built = tf.cond(use, lambda: tuple(screen.build_screen(wte)),
                        lambda: (tf.zeros(wte.shape, tf.int8), tf.ones(wte.shape[:1])))
        return screen.Int8Screen(*built), use

    def project(self, hidden):
        return hidden[:, -1]  # (B, C)

    def choose(self, hidden, context, misses, i, seen, history, params):
        """`misses` counts the steps the screen couldn't decide (it then read the fp32 head too);
        after SCREEN_MAX_MISSES of them the call stops screening, so weights whose logits the int8
        bound can't separate cost at most that many wasted screens."""
        int8, use = context
        blocked = self.blocked(i, params)

        def screened():
            tokens, proven = screen.greedy_tokens(hidden, self.wte, int8, blocked)
            return tokens, misses + tf.cast(tf.logical_not(proven), tf.int32)

        tokens, misses = tf.cond(tf.logical_and(use, misses < SCREEN_MAX_MISSES), screened,
                                 lambda: (screen.full_argmax(hidden, self.wte, blocked), misses))
        return tokens, None, misses

    def blocked(self, i, params):
        """(V,) bool: the eos ids while fewer than min_new_tokens were made."""
        blocked = sampling.eos_blocked(self.vocab_size, i, params["min_new_tokens"], params["eos_token_id"])
        return tf.zeros([self.vocab_size], tf.bool) if blocked is None else blocked


class ScreenedTopKHead(ScreenedGreedyHead):
    """Plain top-k sampling through the int8 screen (screen.screened_top_logits), else the fp32 logits."""

    def choose(self, hidden, context, misses, i, seen, history, params):
        int8, use = context
        blocked = self.blocked(i, params)
        full = lambda: screen.full_logits(hidden, self.wte, blocked)  # noqa: E731

        def screened():
            logits, proven = screen.screened_top_logits(hidden, self.wte, int8, blocked, params["top_k"])
            return tf.cond(proven, lambda: logits, full), misses + tf.cast(tf.logical_not(proven), tf.int32)

        logits, misses = tf.cond(tf.logical_and(use, misses < SCREEN_MAX_MISSES), screened,
                                 lambda: (full(), misses))
        tokens, processed = sampling.select(logits, seen, i, params, self.config)
        return tokens, processed, misses


def for_config(transformer, config):
    if config.head != "screened":
        return Fp32Head(transformer, config)
    return (ScreenedTopKHead if config.do_sample else ScreenedGreedyHead)(transformer, config)


def screen_applies(config, batch_size, transformer):
    """Whether generate() should decode `config` with a screened head (plain greedy or plain top-k)."""
    return ((config.plain_greedy or config.plain_top_k) and batch_size <= SCREEN_MAX_BATCH
            and transformer.config.vocab_size >= 8 and transformer.compute_dtype == "float32"
            and transformer.wte.quantization_mode is None)
