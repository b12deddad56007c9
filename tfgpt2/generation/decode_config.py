"""DecodeConfig: how to decode, with HF `generate` argument names; frozen, and the trace key.

Equal configs share one compiled decode loop. Fields marked `runtime` below are excluded from
equality and hashing: the loop receives them as tensors (`runtime_inputs`), so changing them never
retraces. Every other field, and the graph choices derived from the values (`use_top_k`,
`use_top_p`, `use_penalty`), selects the graph.

`generate()` resolves the user's arguments and `GenerationConfig` (generation_config.py) into one.

Example:
>>> from tfgpt2.generation.decode_config import DecodeConfig
>>> a = DecodeConfig(max_new_tokens=10, temperature=0.7, do_sample=True)
>>> b = DecodeConfig(max_new_tokens=20, temperature=1.3, do_sample=True)
>>> a == b, a.num_steps, hash(a) == hash(b)
(True, 32, True)
>>> DecodeConfig(do_sample=True, top_k=40) == a  # top-k filtering is another graph
False
"""

import dataclasses

import numpy as np
import tensorflow as tf

from tfgpt2.errors import GPT2InputError

NEW_BUCKET = 32  # loop lengths are multiples of this, so nearby max_new_tokens share a trace
HEADS = ("auto", "fp32", "screened")


def runtime(default):
    return dataclasses.field(default=default, compare=False)


def round_up(n, size):
    return -(-n // size) * size


@dataclasses.dataclass(frozen=True)
class DecodeConfig:
    max_new_tokens: int = runtime(20)
    min_new_tokens: int = runtime(0)
    do_sample: bool = False
    temperature: float = runtime(1.0)
    top_k: int = runtime(0)
    top_p: float = runtime(1.0)
    typical_p: float = runtime(1.0)
    repetition_penalty: float = runtime(1.0)
    no_repeat_ngram_size: int = 0
    bad_words_ids: tuple = ()  # token sequences never generated (HF NoBadWordsLogitsProcessor)
    num_beams: int = 1
    num_return_sequences: int = 1  # beams returned per row
    length_penalty: float = 1.0
    early_stopping: object = False  # True, False or "never", as in HF
    eos_token_id: tuple = runtime(())  # ids that end a row; () = none
    pad_token_id: int = runtime(None)  # after a row ended; default: the first eos id, else 0
    seed: int = runtime(None)  # sampling seed; None draws one
    output_scores: bool = False
    return_dict_in_generate: bool = runtime(False)
    num_steps: int = None  # loop length (trace key); default max_new_tokens rounded up to NEW_BUCKET
    head: str = "auto"  # LM head strategy: "fp32" logits, "screened" int8-screened greedy / top-k (heads.py)
    dynamic: bool = False  # one graph for every setting (exported signatures): temperature 0 = greedy
    use_top_k: bool = dataclasses.field(init=False)
    use_top_p: bool = dataclasses.field(init=False)
    use_penalty: bool = dataclasses.field(init=False)
    use_typical: bool = dataclasses.field(init=False)

    def __post_init__(self):
        eos = self.eos_token_id
        eos = () if eos is None else tuple(int(e) for e in np.atleast_1d(eos))
        setattr_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 - frozen
        setattr_("eos_token_id", eos)
        if self.num_steps is None and isinstance(self.max_new_tokens, (int, np.integer)):
            setattr_("num_steps", round_up(max(int(self.max_new_tokens), 1), NEW_BUCKET))
        if self.dynamic:
            setattr_("do_sample", True)
        sampling = self.do_sample
        setattr_("use_top_k", bool(self.dynamic or (sampling and self.top_k > 0)))
        setattr_("use_top_p", bool(self.dynamic or (sampling and self.top_p < 1.0)))
        setattr_("use_penalty", bool(self.dynamic or self.repetition_penalty != 1.0))
        setattr_("use_typical", bool(sampling and not self.dynamic and self.typical_p < 1.0))
        setattr_("bad_words_ids", tuple(tuple(int(t) for t in seq) for seq in self.bad_words_ids or ()))
        if self.head not in HEADS:
            raise GPT2InputError(f"head={self.head!r}: use one of {', '.join(HEADS)}.")

    @property
    def pad(self):
        """The id written after a row ends."""
        if self.pad_token_id is not None:
            return int(self.pad_token_id)
        return self.eos_token_id[0] if self.eos_token_id else 0

    @property
    def uses_history(self):
        """Whether a processor reads the token history (n-gram and bad-word bans)."""
        return self.no_repeat_ngram_size > 0 or bool(self.bad_words_ids)

    @property
    def plain_greedy(self):
        """Greedy argmax of raw logits: what the int8-screened head can decide."""
        return not (self.num_beams > 1 or self.do_sample or self.use_penalty or self.output_scores
                    or self.uses_history)

    @property
    def plain_top_k(self):
        """Top-k sampling (temperature, top-p after it) of raw logits: what the screened sampling head decides."""
        return (self.do_sample and self.use_top_k and not (self.dynamic or self.num_beams > 1 or self.use_penalty
                or self.use_typical or self.output_scores or self.uses_history))

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def validate(self, prompt_length, n_positions):
        """One clear error per bad value, before any graph runs."""
        def bad(msg):
            raise GPT2InputError(msg)

        n, m = self.max_new_tokens, self.min_new_tokens
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            bad(f"max_new_tokens must be an int >= 1, got {n!r}.")
        if not isinstance(m, (int, np.integer)) or not 0 <= m <= n:
            bad(f"min_new_tokens={m!r} must be an int in [0, max_new_tokens={n}].")
        if prompt_length + n > n_positions:
            bad(f"prompt of {prompt_length} tokens + max_new_tokens={n} exceeds n_positions={n_positions}; "
                f"shorten the prompt or lower max_new_tokens to {max(n_positions - prompt_length, 0)}.")
        if not 0.0 < self.top_p <= 1.0:
            bad(f"top_p must be in (0, 1], got {self.top_p}.")
        if not 0.0 < self.typical_p <= 1.0:
            bad(f"typical_p must be in (0, 1], got {self.typical_p}.")
        if not isinstance(self.no_repeat_ngram_size, (int, np.integer)) or self.no_repeat_ngram_size < 0:
            bad(f"no_repeat_ngram_size must be an int >= 0, got {self.no_repeat_ngram_size!r}.")
        if any(not seq for seq in self.bad_words_ids):
            bad("bad_words_ids holds an empty sequence; pass lists of token ids, e.g. [[257], [1049, 262]].")
        if self.do_sample and not self.temperature > 0.0:
            bad(f"temperature must be > 0 when do_sample=True, got {self.temperature}; use do_sample=False "
                "for greedy.")
        if not isinstance(self.top_k, (int, np.integer)) or self.top_k < 0:
            bad(f"top_k must be an int >= 0 (0 disables it), got {self.top_k!r}.")
        if not self.repetition_penalty > 0.0:
            bad(f"repetition_penalty must be > 0, got {self.repetition_penalty}.")
        if not isinstance(self.num_beams, (int, np.integer)) or self.num_beams < 1:
            bad(f"num_beams must be an int >= 1, got {self.num_beams!r}.")
        if self.num_beams > 1 and self.do_sample:
            bad("beam sampling is not supported: use num_beams > 1 with do_sample=False, or num_beams=1.")
        if self.num_return_sequences > self.num_beams:
            bad(f"num_return_sequences={self.num_return_sequences} must be <= num_beams={self.num_beams}.")

    def runtime_inputs(self):
        """The runtime fields as the tensors a compiled loop takes."""
        seed = self.seed if self.seed is not None else np.random.randint(2 ** 31)
        return dict(max_new_tokens=tf.constant(int(self.max_new_tokens)),
                    min_new_tokens=tf.constant(int(self.min_new_tokens)),
                    eos_token_id=tf.constant(list(self.eos_token_id) or [-1], tf.int32),
                    pad_token_id=tf.constant(self.pad), temperature=tf.constant(float(self.temperature)),
                    top_k=tf.constant(int(self.top_k)), top_p=tf.constant(float(self.top_p)),
                    typical_p=tf.constant(float(self.typical_p)),
                    repetition_penalty=tf.constant(float(self.repetition_penalty)),
                    seed=tf.constant(int(seed), tf.int64))
