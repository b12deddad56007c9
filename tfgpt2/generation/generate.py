"""generate(): transformers' `generate` for GPT-2 — prefill once, then a compiled decode loop.

Settings resolve as in transformers (generation_config.py). Eagerly, prompts are left-padded to a
multiple of `PROMPT_BUCKET` and the loop length to a multiple of `NEW_BUCKET`, so a new prompt length
inside a bucket reuses the trace, and the result is trimmed to the steps actually run. Inside the
caller's `tf.function` (e.g. `tf.function(model.generate, jit_compile=True)`) the loop is traced
into that graph and the result has `max_new_tokens` columns, finished rows padded (as transformers'
XLA generate). Plain greedy decoding picks each token through the int8-screened head (exact
argmax); everything else computes the fp32 logits (generation/heads.py).
"""

import numpy as np
import tensorflow as tf

from tfgpt2.errors import GPT2InputError
from tfgpt2.generation import heads
from tfgpt2.generation.decode_config import DecodeConfig, round_up
from tfgpt2.generation.decoder import decoder_of
from tfgpt2.generation.generation_config import GenerationConfig, resolve
from tfgpt2.main_layer import check_inputs
from tfgpt2.outputs import ModelOutput

PROMPT_BUCKET = 32


class GenerateOutput(ModelOutput):
    """`sequences` (B, T + n); with output_scores, `scores`: one (B, V) tensor per step, as transformers."""

    FIELDS = ("sequences", "scores")


def model_generation_config(model):
    """The model's defaults: `model.generation_config`, else the special tokens of its config."""
    value = getattr(model, "generation_config", None)
    return GenerationConfig.from_value(value) if value is not None else GenerationConfig.from_model_config(model.config)


def _seed(value):
    """An int seed from an int or transformers TF's `[a, b]` pair."""
    if value is None or isinstance(value, (int, np.integer)):
        return value
    return int(np.bitwise_xor.reduce(np.asarray(value, np.int64) * np.array([1, 0x9E3779B1])[:len(value)]))


DEFAULT_NEW_TOKENS = 20  # transformers: with no length set, 20 new tokens (within n_positions)


def decode_config(s, prompt_length, n_positions):
    """The DecodeConfig of resolved settings `s` for prompts of `prompt_length` tokens (transformers' rules)."""
    eos = s["eos_token_id"]
    eos = () if eos is None else tuple(int(e) for e in np.atleast_1d(eos))
    pad = s["pad_token_id"] if s["pad_token_id"] is not None else (eos[0] if eos else None)
    if s["max_new_tokens"] is not None:
        max_new = s["max_new_tokens"]
    elif s["max_length"] is not None:
        max_new = s["max_length"] - prompt_length
    else:
        max_new = min(DEFAULT_NEW_TOKENS, n_positions - prompt_length)
    if max_new < 1:
        raise GPT2InputError(f"the prompt has {prompt_length} tokens but max_length={s['max_length']}; set "
                             "max_new_tokens (or a larger max_length).")
    if s["min_new_tokens"] is not None:
        min_new = s["min_new_tokens"]
    else:
        min_new = max((s["min_length"] or 0) - prompt_length, 0)
    min_new = min_new if eos else 0  # transformers blocks eos only when there is one
    do_sample, beams, returns = bool(s["do_sample"]), int(s["num_beams"]), int(s["num_return_sequences"])
    if returns > 1 and beams == 1 and not do_sample:
        raise GPT2InputError("greedy search returns one sequence per prompt; num_return_sequences > 1 needs "
                             "do_sample=True or num_beams >= num_return_sequences.")
    bad = [list(np.atleast_1d(seq)) for seq in (s["bad_words_ids"] or ())]
    bad = [seq for seq in bad if not (len(seq) == 1 and int(seq[0]) in eos)]  # transformers keeps eos usable
    return DecodeConfig(
        max_new_tokens=int(max_new), min_new_tokens=int(min_new), do_sample=do_sample,
        temperature=float(s["temperature"]), top_k=int(s["top_k"] or 0), top_p=float(s["top_p"]),
        typical_p=float(s["typical_p"]), repetition_penalty=float(s["repetition_penalty"]),
        no_repeat_ngram_size=int(s["no_repeat_ngram_size"] or 0), bad_words_ids=bad, num_beams=beams,
        num_return_sequences=returns if beams > 1 else 1, length_penalty=float(s["length_penalty"]),
        early_stopping=s["early_stopping"], eos_token_id=eos, pad_token_id=pad, seed=_seed(s["seed"]),
        output_scores=bool(s["output_scores"] and beams == 1),
        return_dict_in_generate=bool(s["return_dict_in_generate"]))


def _default_mask(ids, config):
    """transformers: pads are masked when the pad id appears in the prompt and is not an eos id (B, T) int32;
    `ids` a tensor, eager or traced."""
    pad = config.pad_token_id
    if pad is None or pad in config.eos_token_id:
        return tf.ones_like(ids)
    return tf.cast(tf.not_equal(ids, pad), tf.int32)  # no pad in the prompt: all ones


def generate(model, input_ids=None, attention_mask=None, generation_config=None, streamer=None, jit_compile=True,
             inputs=None, **kwargs):
    """transformers' `generate` arguments (generation_config.DEFAULTS) for a decoder-only model.

    Returns prompt + new tokens (B * num_return_sequences, T + n); rows that stop early (an
    `eos_token_id`) continue with `pad_token_id`. `streamer`: an object with transformers'
    `put(ids)` / `end()` (it first receives the prompt) or a callable taking each step's (B,) ids.
    `jit_compile=False` runs eagerly. With `return_dict_in_generate`, a GenerateOutput.
    """
    cfg = model.config
    settings = resolve(kwargs, generation_config, model_generation_config(model))
    input_ids = inputs if input_ids is None else input_ids  # transformers' name of the first argument
    if input_ids is None:
        raise GPT2InputError("generate needs input_ids (batch, seq_len): the tokenized prompt.")
    if not tf.executing_eagerly():
        return _generate_in_graph(model, input_ids, attention_mask, settings, streamer)
    ids = np.asarray(check_inputs(cfg, input_ids, attention_mask)).astype(np.int32)
    config = decode_config(settings, ids.shape[1], cfg.n_positions)
    mask = _default_mask(tf.constant(ids), config).numpy() if attention_mask is None else \
        (np.asarray(attention_mask) > 0).astype(np.int32)
    if (np.diff(mask, axis=1) < 0).any():
        raise GPT2InputError("attention_mask has padding on the right; generation needs left padding "
                             "(tokenizer(..., padding=True, padding_side='left')).")
    config.validate(ids.shape[1], cfg.n_positions)
    if config.num_beams > 1 and streamer is not None:
        raise GPT2InputError("a streamer sees one token per step, which beam search does not have; use num_beams=1.")
    rows = settings["num_return_sequences"] if config.do_sample else 1
    ids, mask = np.repeat(ids, rows, 0), np.repeat(mask, rows, 0)
    config = config.replace(num_steps=min(config.num_steps, cfg.n_positions), head=_head(config, len(ids), model))
    prompt = min(round_up(ids.shape[1], PROMPT_BUCKET), cfg.n_positions)
    fill = config.pad if 0 <= config.pad < cfg.vocab_size else 0  # bucket padding is masked: any valid id
    padded = np.full((ids.shape[0], prompt), fill, np.int32)
    padded_mask = np.zeros_like(padded)
    padded[:, prompt - ids.shape[1]:], padded_mask[:, prompt - ids.shape[1]:] = ids, mask
    padded, padded_mask = np.repeat(padded, config.num_beams, 0), np.repeat(padded_mask, config.num_beams, 0)
    decoder, params = decoder_of(model), config.runtime_inputs()
    params["history_start"] = tf.constant(prompt - ids.shape[1])
    if streamer is None:
        tokens, lengths, scores = decoder.loop(config, jit_compile)(
            tf.constant(padded), tf.constant(padded_mask), params)
        n = int(tf.reduce_max(lengths))
        tokens, scores = tokens.numpy()[:, :n], scores.numpy()[:, :n] if config.output_scores else None
        if config.num_beams > 1:
            ids = np.repeat(ids, config.num_return_sequences, 0)
            tokens = np.where(np.arange(n)[None] < lengths.numpy()[:, None], tokens, config.pad)
    else:
        put = getattr(streamer, "put", streamer)
        if hasattr(streamer, "put"):
            put(ids)  # transformers' streamers receive the prompt first
        tokens, scores = decoder.python_loop(config, padded, padded_mask, params, put, jit_compile)
        if hasattr(streamer, "end"):
            streamer.end()
    sequences = tf.constant(np.concatenate([ids, tokens.astype(np.int32)], axis=1))
    if config.return_dict_in_generate:
        return GenerateOutput(sequences=sequences, scores=None if scores is None else
                              tuple(tf.constant(scores[:, i]) for i in range(scores.shape[1])))
    return sequences


def _head(config, batch, model):
    return "screened" if heads.screen_applies(config, batch, model.transformer) else "fp32"


def _generate_in_graph(model, input_ids, attention_mask, settings, streamer):
    """generate() traced into the caller's graph: static shapes, `max_new_tokens` output columns."""
    cfg = model.config
    if streamer is not None:
        raise GPT2InputError("a streamer needs eager generate(); call it outside tf.function.")
    ids = tf.cast(check_inputs(cfg, input_ids, attention_mask), tf.int32)
    batch, length = ids.shape
    if length is None:
        raise GPT2InputError("inside tf.function generate needs a static prompt length; pad prompts to a fixed "
                             "length (tokenizer(..., padding='max_length')).")
    config = decode_config(settings, length, cfg.n_positions)
    config.validate(length, cfg.n_positions)
    mask = _default_mask(ids, config) if attention_mask is None else \
        tf.cast(tf.cast(attention_mask, tf.float32) > 0, tf.int32)
    rows = settings["num_return_sequences"] if config.do_sample else 1
    ids, mask = tf.repeat(ids, rows * config.num_beams, 0), tf.repeat(mask, rows * config.num_beams, 0)
    config = config.replace(num_steps=config.max_new_tokens,
                            head=_head(config, batch, model) if batch is not None else "fp32")
    params = config.runtime_inputs()
    params["history_start"] = tf.constant(0)
    tokens, lengths, scores = decoder_of(model).run_loop(config, ids, mask, params)
    prompt = ids[::config.num_beams]
    if config.num_beams > 1:
        prompt = tf.repeat(prompt, config.num_return_sequences, 0)
        tokens = tf.where(tf.range(config.num_steps)[None] < lengths[:, None], tokens, config.pad)
    sequences = tf.concat([prompt, tokens], 1)
    if config.return_dict_in_generate:
        return GenerateOutput(sequences=sequences, scores=tuple(tf.unstack(scores, axis=1)) if config.output_scores
                              else None)
    return sequences
