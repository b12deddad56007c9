"""GPT2Config: the fields and names of Hugging Face's GPT-2 `config.json`."""

import dataclasses
import difflib
import json
import os

from tfgpt2.errors import GPT2ConfigError

ACTIVATIONS = ("gelu_new", "gelu", "gelu_pytorch_tanh", "gelu_fast", "relu", "silu", "swish", "tanh")

# Generic `PretrainedConfig` keys that real GPT-2 config.json files carry.
# They are kept (round-tripped by to_dict) but do not change the model.
_GENERIC_KEYS = frozenset("""
architectures model_type transformers_version torch_dtype dtype n_ctx
task_specific_params tie_word_embeddings pad_token_id sep_token_id
decoder_start_token_id
torchscript use_bfloat16 tf_legacy_loss pruned_heads chunk_size_feed_forward
is_encoder_decoder is_decoder cross_attention_hidden_size tie_encoder_decoder
finetuning_task problem_type tokenizer_class prefix name_or_path _name_or_path
max_length min_length do_sample early_stopping num_beams num_beam_groups
diversity_penalty temperature top_k top_p typical_p repetition_penalty
length_penalty no_repeat_ngram_size encoder_no_repeat_ngram_size bad_words_ids
num_return_sequences output_scores return_dict_in_generate forced_bos_token_id
forced_eos_token_id remove_invalid_values exponential_decay_length_penalty
suppress_tokens begin_suppress_tokens gradient_checkpointing _attn_implementation
_attn_implementation_autoset attn_implementation id2label label2id
""".split())


@dataclasses.dataclass
class GPT2Config:
    """GPT-2 hyper-parameters with Hugging Face `config.json` field names.

    Example:
    >>> from tfgpt2 import GPT2Config
    >>> cfg = GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=1000)
    >>> cfg.head_dim
    16
    >>> GPT2Config.from_preset("gpt2-medium").n_layer
    24
    """

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int = None
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    summary_type: str = "cls_index"
    summary_use_proj: bool = True
    summary_activation: str = None
    summary_proj_to_labels: bool = True
    summary_first_dropout: float = 0.1
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    reorder_and_upcast_attn: bool = False
    add_cross_attention: bool = False
    bos_token_id: int = 50256
    eos_token_id: int = 50256
    pad_token_id: int = None
    num_labels: int = 2
    use_cache: bool = True  # model calls return past_key_values unless told otherwise (HF default)
    output_attentions: bool = False
    output_hidden_states: bool = False
    return_dict: bool = True
    extra: dict = dataclasses.field(default_factory=dict, compare=False)  # generic HF keys, kept as-is

    def __post_init__(self):
        labels = self.extra.get("id2label")
        if labels is not None and len(labels) != self.num_labels:  # stale label names
            self.extra.pop("id2label")
            self.extra.pop("label2id", None)
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self):
        def positive(name):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise GPT2ConfigError(f"GPT2Config.{name} must be a positive int, got {value!r}.")

        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "num_labels"):
            positive(name)
        if self.n_inner is not None:
            positive("n_inner")
        if self.n_embd % self.n_head:
            raise GPT2ConfigError(
                f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}; pick n_head "
                f"from the divisors of n_embd, e.g. {_divisors_near(self.n_embd, self.n_head)}.")
        if self.activation_function not in ACTIVATIONS:
            raise GPT2ConfigError(
                f"activation_function={self.activation_function!r} is not supported; use one of "
                f"{', '.join(ACTIVATIONS)}.")
        for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop", "summary_first_dropout"):
            value = getattr(self, name)
            if value is None or not 0.0 <= float(value) < 1.0:
                raise GPT2ConfigError(f"GPT2Config.{name} must be in [0, 1), got {value!r}.")
        if self.summary_type not in ("last", "first", "mean", "cls_index"):
            raise GPT2ConfigError(
                f"summary_type={self.summary_type!r} is not supported; use cls_index, last, first or mean.")
        if self.add_cross_attention:
            raise GPT2ConfigError(
                "add_cross_attention=True (GPT-2 as an encoder-decoder decoder) is not supported by "
                "tfgpt2; load a decoder-only GPT-2 checkpoint.")
        model_type = self.extra.get("model_type", "gpt2")
        if model_type != "gpt2":
            raise GPT2ConfigError(
                f"config.json has model_type={model_type!r}; tfgpt2 loads GPT-2 checkpoints "
                "(model_type 'gpt2') only.")

    # --------------------------------------------------------------- derived
    @property
    def head_dim(self):
        return self.n_embd // self.n_head

    @property
    def inner_dim(self):
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    @property
    def id2label(self):
        labels = self.extra.get("id2label") or {i: f"LABEL_{i}" for i in range(self.num_labels)}
        return {int(k): v for k, v in labels.items()}

    @id2label.setter
    def id2label(self, labels):
        labels = {int(k): v for k, v in labels.items()}
        object.__setattr__(self, "num_labels", len(labels))
        self.extra["id2label"], self.extra["label2id"] = labels, {v: k for k, v in labels.items()}

    @property
    def label2id(self):
        return {v: k for k, v in self.id2label.items()}

    @label2id.setter
    def label2id(self, labels):
        self.id2label = {int(v): k for k, v in labels.items()}

    def __setattr__(self, name, value):
        if name == "num_labels" and "extra" in self.__dict__ and self.num_labels != value:  # HF: labels renamed LABEL_i
            self.extra.pop("id2label", None)
            self.extra.pop("label2id", None)
        object.__setattr__(self, name, value)

    @property
    def hidden_size(self):  # HF attribute_map alias
        return self.n_embd

    @property
    def num_hidden_layers(self):
        return self.n_layer

    @property
    def num_attention_heads(self):
        return self.n_head

    # --------------------------------------------------------------- io
    @classmethod
    def field_names(cls):
        return [f.name for f in dataclasses.fields(cls) if f.name != "extra"]

    @classmethod
    def from_dict(cls, values):
        """Builds a config from a `config.json` dict; unknown keys raise with a suggestion."""
        values = dict(values)
        known = set(cls.field_names())
        extra = dict(values.pop("extra", {}) or {})
        kwargs = {}
        for key, value in values.items():
            if key in known:
                kwargs[key] = value
            elif key in _GENERIC_KEYS or key.startswith("_"):
                extra[key] = value
            else:
                close = difflib.get_close_matches(key, sorted(known | _GENERIC_KEYS), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise GPT2ConfigError(f"Unknown GPT2Config field {key!r}.{hint}")
        if "num_labels" not in values and extra.get("id2label"):
            kwargs["num_labels"] = len(extra["id2label"])
        if "n_ctx" in extra and "n_positions" not in values:
            kwargs["n_positions"] = extra["n_ctx"]
        return cls(**kwargs, extra=extra)

    def to_dict(self):
        out = dict(self.extra)
        out.update({name: getattr(self, name) for name in self.field_names()})
        out.setdefault("model_type", "gpt2")
        out.setdefault("architectures", ["GPT2LMHeadModel"])
        out["n_ctx"] = self.n_positions
        out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        out["label2id"] = self.label2id
        return out

    def to_json(self, path=None):
        """Returns the JSON text; with `path` also writes it there."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        return text

    @classmethod
    def from_json(cls, path):
        return cls.from_dict(read_json(path, GPT2ConfigError))

    @classmethod
    def from_pretrained(cls, name_or_dir):
        """Reads `config.json` from a local dir, a config file, a hub id, or a preset name."""
        if os.path.isfile(name_or_dir):
            return cls.from_json(name_or_dir)
        if os.path.isdir(name_or_dir):
            path = os.path.join(name_or_dir, "config.json")
            if not os.path.exists(path):
                from tfgpt2.errors import CheckpointNotFoundError
                raise CheckpointNotFoundError(
                    f"{name_or_dir} has no config.json; point at a directory written by "
                    "save_pretrained (transformers or tfgpt2).")
            return cls.from_json(path)
        from tfgpt2.hub import resolve

        return cls.from_json(os.path.join(resolve(name_or_dir, ["config.json"]), "config.json"))

    @classmethod
    def from_preset(cls, name, **overrides):
        """Shapes of the released checkpoints: gpt2, gpt2-medium, gpt2-large, gpt2-xl, distilgpt2."""
        if name not in PRESETS:
            raise GPT2ConfigError(f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
        return cls(**{**PRESETS[name], **overrides})


PRESETS = {
    "gpt2": dict(n_embd=768, n_layer=12, n_head=12),
    "gpt2-medium": dict(n_embd=1024, n_layer=24, n_head=16),
    "gpt2-large": dict(n_embd=1280, n_layer=36, n_head=20),
    "gpt2-xl": dict(n_embd=1600, n_layer=48, n_head=25),
    "distilgpt2": dict(n_embd=768, n_layer=6, n_head=12),
}


def read_json(path, error):
    """The JSON value in `path`; `error` (an exception class) names the file when it isn't JSON."""
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise error(f"{path} is not valid JSON ({e}); re-save it.") from e


def _divisors_near(n, target):
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return sorted(divisors, key=lambda d: abs(d - target))[:3]
