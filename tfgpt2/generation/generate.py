"""generate(): prefill once, then a compiled decode step in an XLA `tf.while_loop`.

Prompts are left-padded to a multiple of `PROMPT_BUCKET` and the loop length to a multiple of
`NEW_BUCKET`, so a new prompt length inside a bucket reuses the trace. The KV cache holds exactly
`prompt bucket + new-token bucket` slots, so attention reads only as much cache as the request can
use. Plain greedy decoding picks each token through the int8-screened head (exact argmax);
everything else computes the fp32 logits (generation/heads.py).
"""

import numpy as np
import tensorflow as tf

from tfgpt2.errors import GPT2InputError
from tfgpt2.generation import heads
from tfgpt2.generation.config import GenerationConfig, round_up
from tfgpt2.generation.decoder import decoder_of
from tfgpt2.main_layer import check_inputs
from tfgpt2.outputs import ModelOutput

PROMPT_BUCKET = 32


class GenerateOutput(ModelOutput):
    FIELDS = ("sequences", "scores")


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
    config = GenerationConfig(
        max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, do_sample=bool(do_sample),
        temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
        num_beams=num_beams, length_penalty=float(length_penalty), early_stopping=early_stopping,
        eos_token_id=eos_token_id, pad_token_id=pad_token_id, seed=seed,
        output_scores=bool(output_scores and num_beams == 1), return_dict_in_generate=return_dict_in_generate)
    config.validate(ids.shape[1], cfg.n_positions)
    if num_beams > 1 and streamer is not None:
        raise GPT2InputError("a streamer sees one token per step, which beam search does not have; use num_beams=1.")
    config = config.replace(num_steps=min(config.num_steps, cfg.n_positions),
                            head="screened" if heads.screen_applies(config, ids.shape[0], model.transformer)
                            else "fp32")
    prompt = min(round_up(ids.shape[1], PROMPT_BUCKET), cfg.n_positions)
    padded = np.full((ids.shape[0], prompt), config.pad, np.int32)
    padded_mask = np.zeros_like(padded)
    padded[:, prompt - ids.shape[1]:], padded_mask[:, prompt - ids.shape[1]:] = ids, mask
    if num_beams > 1:
        padded, padded_mask = np.repeat(padded, num_beams, 0), np.repeat(padded_mask, num_beams, 0)
    decoder, params = decoder_of(model), config.runtime_inputs()
    if streamer is None:
        tokens, lengths, scores = decoder.loop(config, jit_compile)(
            tf.constant(padded), tf.constant(padded_mask), params)
        n = int(tf.reduce_max(lengths))
        tokens, scores = tokens.numpy()[:, :n], scores.numpy()[:, :n] if config.output_scores else None
        if num_beams > 1:
            tokens = np.where(np.arange(n)[None] < lengths.numpy()[:, None], tokens, config.pad)
    else:
        tokens, scores = decoder.python_loop(config, padded, padded_mask, params, streamer, jit_compile)
    sequences = tf.constant(np.concatenate([ids, tokens.astype(np.int32)], axis=1))
    if return_dict_in_generate:
        return GenerateOutput(sequences=sequences, scores=tf.constant(scores) if config.output_scores else None)
    return sequences
