"""TFGPT2PreTrainedModel: what every model class shares — HF call forms, HF methods, weight I/O."""

import re
import threading

import keras
import numpy as np
import tensorflow as tf
from keras.src.losses import loss as keras_loss

from tfgpt2.cache import KVCache
from tfgpt2.config import GPT2Config
from tfgpt2.errors import GPT2InputError
from tfgpt2.main_layer import TFGPT2MainLayer, as_array, check_inputs

# transformers' TF GPT-2 argument order (a list/tuple first argument is read in this order)
BASE_ARGS = ("input_ids", "past_key_values", "attention_mask", "token_type_ids", "position_ids", "head_mask",
             "inputs_embeds", "use_cache", "output_attentions", "output_hidden_states", "return_dict")
DUMMY_IDS = [[7, 6, 0, 0, 1], [1, 2, 3, 0, 0], [0, 0, 0, 4, 5]]  # transformers' DUMMY_INPUTS


def _selected(layer, filters):
    """Keras' quantize filters: None, a regex on the layer name, a list of them, or a callable."""
    if filters is None:
        return True
    if isinstance(filters, str):
        return re.search(filters, layer.name) is not None
    if isinstance(filters, (list, tuple)):
        return any(re.search(f, layer.name) for f in filters)
    if callable(filters):
        return bool(filters(layer))
    raise GPT2InputError(f"filters must be a regex, a list of regexes or a callable, got {type(filters).__name__}.")


def _is_value(x):
    """A list holding one of these is HF's positional input list, not nested token ids."""
    return x is None or tf.is_tensor(x) or isinstance(x, (np.ndarray, keras.KerasTensor, KVCache))


# the loss compute_loss last built, per thread: MirroredStrategy traces each replica's step in its own thread
_STEP = threading.local()


def _reducible(logs):
    """A step's logs as Keras can average them over workers: across a MultiWorkerMirroredStrategy
    cluster it reduces every value along axis 0, which a scalar doesn't have, so scalars go as (1,)."""
    strategy = tf.distribute.get_strategy()
    if not getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)():
        return logs
    return {k: tf.reshape(v, [1]) if tf.is_tensor(v) and v.shape.rank == 0 else v for k, v in logs.items()}


class TFGPT2PreTrainedModel(keras.Model):
    """Shared machinery: config, HF input forms and methods, HF weight I/O, the internal loss.

    Example:
    >>> import numpy as np
    >>> from tfgpt2 import GPT2Config, TFGPT2LMHeadModel
    >>> model = TFGPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=100))
    >>> ids = np.array([[1, 2, 3]])
    >>> out = model({"input_ids": ids, "attention_mask": np.ones_like(ids)})  # a dict of inputs
    >>> logits, past = model([ids, None, np.ones_like(ids)], return_dict=False)  # HF's order; a tuple
    >>> model.resize_token_embeddings(104).input_dim, model.config.vocab_size
    (104, 104)
    """

    call_args = BASE_ARGS + ("labels",)  # per class: the HF positional order of `call`

    def __init__(self, config=None, **kwargs):
        if config is None:
            config = GPT2Config()
        elif isinstance(config, dict):
            config = GPT2Config.from_dict(config)
        super().__init__(**kwargs)
        self.config = config
        self.generation_config = None  # read by generate(); from_pretrained sets it from the checkpoint
        self.transformer = TFGPT2MainLayer(config, name="transformer")
        self.transformer.build()
        self.built = True  # every weight exists now: HF weights can be assigned before any call

    # ------------------------------------------------------------ HF call forms
    def __call__(self, *args, **kwargs):
        inputs = self.named_inputs(args, kwargs)
        return super().__call__(inputs.pop("input_ids"), **inputs)

    def named_inputs(self, args, kwargs):
        """HF's input forms -> one dict of named arguments: a dict first argument, a list/tuple in
        `call_args` order, positional or keyword arguments; `past` is the old name of past_key_values."""
        names = self.call_args + ("training",)
        args, kwargs = list(args), dict(kwargs)
        first = args.pop(0) if args else kwargs.pop("input_ids", None)
        if isinstance(first, dict):
            given = dict(first)
        elif isinstance(first, (list, tuple)) and first and any(_is_value(v) for v in first):
            if len(first) > len(names):
                raise GPT2InputError(f"{type(self).__name__} takes at most {len(names)} inputs in a list, got "
                                     f"{len(first)}; the order is {', '.join(names)}.")
            given = dict(zip(names, first))
        else:
            given = {"input_ids": first}
        if len(args) > len(names) - 1:
            raise GPT2InputError(f"too many positional arguments; {type(self).__name__} takes {', '.join(names)}.")
        for name, value in zip(names[1:], args):
            kwargs[name] = value
        for source in (given, kwargs):
            if "past" in source:
                source["past_key_values"] = source.pop("past")
        for name, value in kwargs.items():
            if value is not None or name not in given:
                given[name] = value
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise GPT2InputError(f"{type(self).__name__} got unknown argument(s) {', '.join(unknown)}; it takes "
                                 f"{', '.join(names)}.")
        if isinstance(given.get("input_ids"), (list, tuple)):  # Keras rejects nested lists positionally
            given["input_ids"] = as_array(given["input_ids"])
        return given

    def resolved_flags(self, use_cache, output_attentions, output_hidden_states, return_dict, training):
        """HF defaults from the config; use_cache defaults off while training and inside Keras' own
        fit/evaluate/predict steps (no one reads that cache)."""
        cfg = self.config
        pick = lambda value, default: bool(default if value is None else value)  # noqa: E731
        quiet = training or getattr(self, "_in_keras_step", False)
        return (pick(use_cache, cfg.use_cache and not quiet), pick(output_attentions, cfg.output_attentions),
                pick(output_hidden_states, cfg.output_hidden_states), pick(return_dict, cfg.return_dict))

    def run_transformer(self, input_ids, past_key_values, attention_mask, token_type_ids, position_ids, head_mask,
                        inputs_embeds, use_cache, output_attentions, output_hidden_states, return_dict, training):
        """Resolves the flags, checks the inputs, runs the main layer:
        (hidden, cache or None, hidden_states, attentions, return_dict)."""
        use_cache, output_attentions, output_hidden_states, return_dict = self.resolved_flags(
            use_cache, output_attentions, output_hidden_states, return_dict, training)
        if input_ids is not None and inputs_embeds is not None:
            raise GPT2InputError("pass input_ids or inputs_embeds, not both.")
        if input_ids is None and inputs_embeds is None:
            raise GPT2InputError("input_ids is required (or inputs_embeds of shape (batch, seq_len, n_embd)).")
        if input_ids is not None:
            input_ids = check_inputs(self.config, input_ids, attention_mask, past_key_values)
        elif inputs_embeds.shape[-1] != self.config.n_embd or len(inputs_embeds.shape) != 3:
            raise GPT2InputError(f"inputs_embeds must have shape (batch, seq_len, {self.config.n_embd}), got "
                                 f"{tuple(inputs_embeds.shape)}.")
        hidden, cache, states, attentions = self.transformer(
            input_ids, past_key_values=past_key_values, attention_mask=attention_mask, token_type_ids=token_type_ids,
            position_ids=position_ids, head_mask=head_mask, inputs_embeds=inputs_embeds, use_cache=use_cache,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states, training=training)
        return hidden, cache if use_cache else None, states, attentions, return_dict  # a cache exactly when use_cache

    @staticmethod
    def finish(output, return_dict):
        return output if return_dict else output.to_tuple()

    @property
    def dummy_inputs(self):
        return {"input_ids": tf.constant(np.array(DUMMY_IDS) % self.config.vocab_size, tf.int32)}

    # ------------------------------------------------------------ HF methods
    def get_input_embeddings(self):
        return self.transformer.wte

    def set_input_embeddings(self, value):
        """`value`: a Keras Embedding layer or a (vocab, n_embd) array; vocab_size follows it."""
        table = value.embeddings if isinstance(value, keras.layers.Embedding) else value
        self.transformer.set_token_embeddings(np.asarray(table))
        self._tfgpt2_decoder = None  # compiled loops read the old table

    def get_output_embeddings(self):
        return None

    def get_bias(self):
        return None  # GPT-2's LM head has no bias

    def resize_token_embeddings(self, new_num_tokens=None, pad_to_multiple_of=None, mean_resizing=True):
        """Grows or shrinks wte to `new_num_tokens` (rounded up to `pad_to_multiple_of`); the tied head
        follows. New rows are the mean of the old ones (`mean_resizing`, as transformers) or drawn from
        N(0, initializer_range). Returns the embedding layer."""
        if self.transformer.wte.quantization_mode is not None:
            raise GPT2InputError("the token embedding is quantized; resize it before model.quantize().")
        old = self.transformer.wte.embeddings.numpy()
        n = old.shape[0] if new_num_tokens is None else int(new_num_tokens)
        if pad_to_multiple_of:
            n = -(-n // int(pad_to_multiple_of)) * int(pad_to_multiple_of)
        if n < 1:
            raise GPT2InputError(f"new_num_tokens must be >= 1, got {n}.")
        if n != old.shape[0]:
            extra = n - old.shape[0]
            if extra > 0:
                fresh = np.tile(old.mean(0, keepdims=True), (extra, 1)) if mean_resizing else \
                    np.random.normal(0, self.config.initializer_range, (extra, old.shape[1]))
                table = np.concatenate([old, fresh.astype(old.dtype)])
            else:
                table = old[:n]
            self.set_input_embeddings(table)
        return self.transformer.wte

    def num_parameters(self, only_trainable=False, exclude_embeddings=False):
        """Number of (unique) parameters; the tied LM head is the embedding, counted once."""
        weights = self.trainable_weights if only_trainable else self.weights
        skip = {id(self.transformer.wte.embeddings), id(self.transformer.wpe.embeddings)} if exclude_embeddings \
            else set()
        return int(sum(np.prod(w.shape) for w in weights if id(w) not in skip))

    def can_generate(self):
        return hasattr(self, "generate")

    # ------------------------------------------------------------ keras glue
    def quantize(self, mode=None, config=None, filters=None, **kwargs):
        """Keras' `Model.quantize` for `"int8"` and `"int4"` (weight-only; activations stay float).

        The transformer's projection weights (`Conv1D`) become int8 with one scale per output, or int4
        with one scale per output and 32 inputs; `wte` and `wpe` become Keras' int8 Embedding (per-row
        scales) in both modes: `wte` is also the tied LM head, which decides the token, stored once.
        Layer norms, biases and task heads stay float. `filters` (a regex on layer names, a list of
        them, or a callable) limits which layers change, as in Keras. Decode loops read the int8 /
        int4 bytes (docs/design.md). `.keras` files keep the quantized weights; `save_pretrained`
        writes them dequantized to float32 (transformers' GPT-2 checkpoints have no int8 form).
        Keras' `config` is accepted and not read: the formats above are fixed.

        >>> import numpy as np
        >>> from tfgpt2 import GPT2Config, TFGPT2LMHeadModel
        >>> model = TFGPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=100))
        >>> model.quantize("int8")
        >>> model.transformer.h[0].mlp.c_fc.kernels[0].dtype, model.transformer.wte.quantization_mode
        ('int8', 'int8')
        >>> model(np.array([[1, 2, 3]])).logits.shape  # generate(), fit() and predict() run as before
        TensorShape([1, 3, 100])
        """
        from tfgpt2.layers import QUANTIZATION_MODES

        kwargs.pop("type_check", None)  # Keras' flag: tfgpt2 quantizes only its own layer types anyway
        if kwargs:
            raise GPT2InputError(f"quantize() got unknown arguments {sorted(kwargs)}.")
        if mode not in QUANTIZATION_MODES:
            raise GPT2InputError(f"tfgpt2 models quantize to {' or '.join(map(repr, QUANTIZATION_MODES))} "
                                 f"(weight-only), not {mode!r}.")
        if self.quantization:
            raise GPT2InputError(f"the model is already quantized ({self.quantization['mode']}); quantize a "
                                 "float model (from_pretrained) instead.")
        layers = [layer for layer in self.quantizable_layers() if _selected(layer, filters)]
        for layer in layers:
            layer.quantize("int8" if isinstance(layer, keras.layers.Embedding) else mode)
        self._quantization = {"mode": mode, "layers": [layer.path for layer in layers]}
        self.train_function = self.test_function = self.predict_function = None
        self._tfgpt2_decoder = None  # compiled loops read the old weights

    @property
    def quantization(self):
        """None, or {"mode": "int8" | "int4", "layers": [paths of the quantized layers]}."""
        return getattr(self, "_quantization", None)

    def quantizable_layers(self):
        """The layers model.quantize() changes: wte, wpe and every Conv1D of the transformer."""
        from tfgpt2.layers import Conv1D

        t = self.transformer
        convs = [layer for block in t.h for layer in block._flatten_layers() if isinstance(layer, Conv1D)]
        return [t.wte, t.wpe] + convs

    def get_config(self):
        out = {**super().get_config(), "config": self.config.to_dict()}
        if self.quantization:
            out["quantization"] = self.quantization
        return out

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        quantization = config.pop("quantization", None)
        model = cls(config=GPT2Config.from_dict(config.pop("config")), **config)
        if quantization:  # the same variables as the saved model, so Keras can load its weights into them
            paths = set(quantization["layers"])
            model.quantize(quantization["mode"], filters=lambda layer: layer.path in paths)
        return model

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Keras hook: the compiled loss on `logits` if one was given, else the internal HF loss."""
        if getattr(self, "_compile_loss", None) is not None:
            loss = super().compute_loss(x, y, y_pred["logits"], sample_weight, training)
            _STEP.loss = keras_loss.unscale_loss_for_distribution(loss)
            return loss
        if sample_weight is not None:
            raise GPT2InputError("sample_weight is not used by the internal loss; mask tokens with "
                                 "labels=-100 (or attention_mask) instead.")
        loss = self._internal_loss(x, y, y_pred)
        for extra in self.losses:
            loss = loss + tf.cast(extra, loss.dtype)
        _STEP.loss = loss  # this step's, for train_step's logs
        return keras_loss.scale_loss_for_distribution(loss)

    def _internal_loss(self, x, y, y_pred):
        raise GPT2InputError(f"{type(self).__name__} has no built-in loss; compile(loss=...) and pass y.")

    def train_step(self, data):
        if not self.config.return_dict:  # fit reads outputs by name
            raise GPT2InputError("fit needs config.return_dict=True (outputs are read by name).")
        logs = super().train_step(data)
        # "loss" is Keras' running mean over the epoch; "step_loss" this step's own (averaged over replicas)
        return _reducible({**logs, "step_loss": _STEP.loss})

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Keras builds a model created in a strategy scope from the first batch of the training data,
        averaged over the replicas, which under MultiWorkerMirroredStrategy fails for a dict batch
        ({"input_ids": ...}); the dataset's element spec builds the same variables without a batch."""
        adapter = getattr(iterator, "data_adapter", None)
        if data_batch is None and adapter is not None and hasattr(adapter, "get_tf_dataset"):
            data_batch, iterator = adapter.get_tf_dataset().element_spec, None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def test_step(self, data):
        self._in_keras_step = True  # read while evaluate traces the step
        try:
            return _reducible(super().test_step(data))
        finally:
            self._in_keras_step = False

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        x = x if isinstance(x, dict) else {"input_ids": x}
        out = self(x, training=False, use_cache=False, return_dict=True)
        return {k: v for k, v in out.items() if k not in ("loss", "mc_loss")}

    # ------------------------------------------------------------ HF weights
    @classmethod
    def from_pretrained(cls, name_or_path, config=None, **config_overrides):
        """Loads an HF GPT-2 checkpoint dir (safetensors; .bin needs torch; tf_model.h5) or hub id."""
        from tfgpt2 import weights

        return weights.from_pretrained(cls, name_or_path, config, **config_overrides)

    def save_pretrained(self, save_directory):
        """Writes config.json + model.safetensors (+ generation_config.json) that transformers loads."""
        from tfgpt2 import weights

        weights.save_pretrained(self, save_directory)

    def head_weights(self):
        """HF key -> (variable, transposed?) of the task head (none for the base model)."""
        return {}
