"""GenerationConfig: transformers' generation settings object and `generation_config.json`.

Every field defaults to None ("not set"). `generate()` reads a value from, in order: its own
keyword arguments, the `generation_config=` it was given, `model.generation_config` (the
checkpoint's `generation_config.json`, else the special tokens of `config.json`), and
transformers' global defaults (`DEFAULTS`) — the priority transformers uses.

Example:
>>> from tfgpt2.generation import GenerationConfig
>>> cfg = GenerationConfig(max_new_tokens=8, do_sample=True, top_k=0)
>>> cfg.max_new_tokens, cfg.top_p
(8, None)
>>> GenerationConfig(max_new_token=8)
Traceback (most recent call last):
...
tfgpt2.errors.GPT2InputError: unknown generation setting max_new_token (did you mean max_new_tokens?); ...
"""

import difflib
import json
import os

from tfgpt2.config import read_json
from tfgpt2.errors import GPT2InputError

# transformers' global defaults for what tfgpt2 implements; no length set = 20 new tokens (generate.py)
DEFAULTS = dict(
    max_length=None, max_new_tokens=None, min_length=None, min_new_tokens=None, do_sample=False, temperature=1.0,
    top_k=50, top_p=1.0, typical_p=1.0, repetition_penalty=1.0, no_repeat_ngram_size=0, bad_words_ids=None,
    num_beams=1, length_penalty=1.0, early_stopping=False, num_return_sequences=1, eos_token_id=None,
    pad_token_id=None, bos_token_id=None, output_scores=False, return_dict_in_generate=False, use_cache=True,
    seed=None)

# transformers settings tfgpt2 does not implement: accepted at these (off) values, refused otherwise
UNSUPPORTED_OFF = dict(
    num_beam_groups=1, diversity_penalty=0.0, penalty_alpha=None, min_p=None, epsilon_cutoff=0.0, eta_cutoff=0.0,
    encoder_repetition_penalty=1.0, encoder_no_repeat_ngram_size=0, forced_bos_token_id=None,
    forced_eos_token_id=None, suppress_tokens=None, begin_suppress_tokens=None, sequence_bias=None,
    exponential_decay_length_penalty=None, constraints=None, force_words_ids=None, guidance_scale=None,
    renormalize_logits=False, remove_invalid_values=False, watermarking_config=None, top_h=None,
    output_attentions=False, output_hidden_states=False, output_logits=None, stop_strings=None,
    assistant_model=None, prompt_lookup_num_tokens=None, max_time=None, low_memory=None, token_healing=False,
    dola_layers=None, cache_implementation=None, compile_config=None, disable_compile=False,
    decoder_start_token_id=None, is_assistant=False)

# bookkeeping keys of generation_config.json files
_IGNORED = {"transformers_version", "_from_model_config", "_commit_hash", "_original_object_hash",
            "cache_config", "return_legacy_cache", "num_assistant_tokens", "num_assistant_tokens_schedule",
            "assistant_confidence_threshold", "assistant_lookbehind", "target_lookbehind", "prefill_chunk_size",
            "assistant_early_exit", "cache_implementation", "output_logits", "trust_remote_code"}


def check_names(values, where="generation setting"):
    """Raises one line for a name generate() doesn't know or a setting it doesn't implement."""
    for name, value in values.items():
        if name in DEFAULTS or name in _IGNORED or name.startswith("_"):
            continue
        if name in UNSUPPORTED_OFF:
            if value is not None and value != UNSUPPORTED_OFF[name]:
                raise GPT2InputError(f"{name}={value!r} is not supported by tfgpt2's generate(); it supports "
                                     f"{', '.join(sorted(DEFAULTS))}.")
            continue
        close = difflib.get_close_matches(name, list(DEFAULTS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise GPT2InputError(f"unknown {where} {name}{hint}; supported: {', '.join(sorted(DEFAULTS))}.")


class GenerationConfig:
    """Mutable settings with transformers' names; unset fields are None."""

    def __init__(self, **kwargs):
        check_names(kwargs)
        for name in DEFAULTS:
            setattr(self, name, None)
        self.extra = {}
        self.update(**kwargs)

    def update(self, **kwargs):
        check_names(kwargs)
        for name, value in kwargs.items():
            if name in DEFAULTS:
                setattr(self, name, value)
            else:
                self.extra[name] = value
        return self

    def to_dict(self):
        """The set fields (and unknown-but-harmless keys), as generation_config.json holds them."""
        return {**self.extra, **{k: getattr(self, k) for k in DEFAULTS if getattr(self, k) is not None}}

    def __repr__(self):
        return f"GenerationConfig({', '.join(f'{k}={v!r}' for k, v in self.to_dict().items())})"

    def __eq__(self, other):
        return isinstance(other, GenerationConfig) and self.to_dict() == other.to_dict()

    @classmethod
    def from_value(cls, value):
        """A GenerationConfig from ours, transformers' (anything with `to_dict`), a dict, or a path to a
        generation_config.json file or the checkpoint directory holding one."""
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, (str, os.PathLike)):
            return cls.from_pretrained(value)
        if hasattr(value, "to_dict"):
            value = value.to_dict()
        if not isinstance(value, dict):
            raise GPT2InputError(f"generation_config must be a GenerationConfig, a dict or a path, got "
                                 f"{type(value).__name__}.")
        return cls(**{k: v for k, v in value.items() if v is not None})

    @classmethod
    def from_pretrained(cls, path, config_file_name="generation_config.json"):
        file = os.path.join(path, config_file_name) if os.path.isdir(path) else path
        if not os.path.isfile(file):
            raise GPT2InputError(f"{file} does not exist; pass a generation_config.json or the directory holding one.")
        return cls.from_value(read_json(file, GPT2InputError))

    @classmethod
    def from_model_config(cls, config):
        """The special tokens of a GPT2Config (and any generation keys its config.json carried)."""
        values = {k: v for k, v in config.extra.items() if k in DEFAULTS and v is not None}
        values.update({k: getattr(config, k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")
                       if getattr(config, k) is not None})
        return cls(**values)

    def save_pretrained(self, directory):
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, "generation_config.json")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)
        os.replace(path + ".tmp", path)


def resolve(kwargs, generation_config, model_generation_config):
    """The effective settings: kwargs > generation_config= > the model's > transformers' defaults."""
    check_names(kwargs, "generate() argument")
    merged = dict(DEFAULTS)
    for layer in (model_generation_config, GenerationConfig.from_value(generation_config)):
        if layer is not None:
            merged.update({k: v for k, v in layer.to_dict().items() if k in DEFAULTS})
    merged.update({k: v for k, v in kwargs.items() if k in DEFAULTS and v is not None})
    return merged
