"""GPT-2 Keras models with Hugging Face names, call arguments and outputs."""

import keras
import tensorflow as tf
from keras.src.losses import loss as keras_loss

from tfgpt2 import generation, losses, outputs
from tfgpt2.config import GPT2Config
from tfgpt2.errors import GPT2InputError
from tfgpt2.main_layer import TFGPT2MainLayer, as_array, check_inputs

_CALL_ARGS = ("attention_mask", "position_ids", "token_type_ids", "past_key_values", "use_cache",
              "output_hidden_states", "output_attentions")


class TFGPT2PreTrainedModel(keras.Model):
    """Shared machinery: config, HF weight I/O, Keras (de)serialization and the internal loss."""

    _input_rank = 2

    def __init__(self, config=None, **kwargs):
        if config is None:
            config = GPT2Config()
        elif isinstance(config, dict):
            config = GPT2Config.from_dict(config)
        super().__init__(**kwargs)
        self.config = config
        self.transformer = TFGPT2MainLayer(config, name="transformer")
        self.transformer.build()
        self.built = True  # every weight exists now: HF weights can be assigned before any call

    # ------------------------------------------------------------ keras glue
    def __call__(self, input_ids=None, *args, **kwargs):
        if isinstance(input_ids, (list, tuple)):  # Keras rejects nested lists positionally
            input_ids = as_array(input_ids)
        return super().__call__(input_ids, *args, **kwargs)

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(config=GPT2Config.from_dict(config.pop("config")), **config)

    def _unpack(self, input_ids, kwargs):
        """Accepts Keras-style dict inputs: model({"input_ids": ..., "attention_mask": ...})."""
        if isinstance(input_ids, dict):
            merged = dict(input_ids)
            merged.update({k: v for k, v in kwargs.items() if v is not None})
            input_ids = merged.pop("input_ids", None)
            kwargs = merged
        return input_ids, kwargs

    def _run_transformer(self, input_ids, attention_mask, kwargs, training):
        input_ids = check_inputs(self.config, input_ids, attention_mask, kwargs.get("past_key_values"))
        extra = {k: kwargs.get(k) for k in _CALL_ARGS if k != "attention_mask"}
        extra = {k: v for k, v in extra.items() if v is not None}
        return self.transformer(input_ids, attention_mask=attention_mask, training=training, **extra)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Keras hook: the compiled loss on `logits` if one was given, else the internal HF loss."""
        if getattr(self, "_compile_loss", None) is not None:
            return super().compute_loss(x, y, y_pred["logits"], sample_weight, training)
        if sample_weight is not None:
            raise GPT2InputError("sample_weight is not used by the internal loss; mask tokens with "
                                 "labels=-100 (or attention_mask) instead.")
        loss = self._internal_loss(x, y, y_pred)
        for extra in self.losses:
            loss = loss + tf.cast(extra, loss.dtype)
        return keras_loss.scale_loss_for_distribution(loss)

    def _internal_loss(self, x, y, y_pred):
        raise GPT2InputError(f"{type(self).__name__} has no built-in loss; compile(loss=...) and pass y.")

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        out = self(x, training=False)
        return {k: v for k, v in out.items() if k not in ("past_key_values", "loss", "mc_loss")}

    # ------------------------------------------------------------ HF weights
    @classmethod
    def from_pretrained(cls, name_or_path, config=None, **config_overrides):
        """Loads an HF GPT-2 checkpoint dir (safetensors; .bin needs torch; tf_model.h5) or hub id."""
        from tfgpt2 import weights

        return weights.from_pretrained(cls, name_or_path, config, **config_overrides)

    def save_pretrained(self, save_directory):
        """Writes config.json + model.safetensors that transformers' PyTorch GPT-2 loads."""
        from tfgpt2 import weights

        weights.save_pretrained(self, save_directory)

    def head_weights(self):
        """HF key -> (variable, transposed?) of the task head (none for the base model)."""
        return {}


@keras.saving.register_keras_serializable(package="tfgpt2")
class TFGPT2Model(TFGPT2PreTrainedModel):
    """The bare GPT-2 transformer: last hidden states (and cache, hidden states, attentions).

    Example:
    >>> import numpy as np
    >>> from tfgpt2 import GPT2Config, TFGPT2Model
    >>> model = TFGPT2Model(GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=100))
    >>> model(np.array([[1, 2, 3]])).last_hidden_state.shape
    TensorShape([1, 3, 32])
    """

    def call(self, input_ids, attention_mask=None, training=False, **kwargs):
        input_ids, kwargs = self._unpack(input_ids, dict(kwargs, attention_mask=attention_mask))
        hidden, cache, states, attns = self._run_transformer(
            input_ids, kwargs.pop("attention_mask", None), kwargs, training)
        return outputs.BaseModelOutputWithPast(
            last_hidden_state=hidden, past_key_values=cache, hidden_states=states, attentions=attns)


@keras.saving.register_keras_serializable(package="tfgpt2")
class TFGPT2LMHeadModel(TFGPT2PreTrainedModel):
    """GPT-2 with the language-model head tied to `wte`; `fit` trains on the shifted LM loss.

    Example:
    >>> import numpy as np
    >>> from tfgpt2 import GPT2Config, TFGPT2LMHeadModel
    >>> model = TFGPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=100))
    >>> ids = np.array([[1, 2, 3, 4]])
    >>> model(ids).logits.shape
    TensorShape([1, 4, 100])
    >>> model.compile(optimizer="adamw")
    >>> history = model.fit(ids, epochs=1, verbose=0)
    >>> model.generate(ids, max_new_tokens=3).shape
    TensorShape([1, 7])
    """

    def call(self, input_ids, attention_mask=None, labels=None, training=False, **kwargs):
        input_ids, kwargs = self._unpack(input_ids, dict(kwargs, attention_mask=attention_mask, labels=labels))
        labels = kwargs.pop("labels", None)
        hidden, cache, states, attns = self._run_transformer(
            input_ids, kwargs.pop("attention_mask", None), kwargs, training)
        logits = self.transformer.lm_logits(hidden)  # (B, T, V)
        loss = None if labels is None else losses.lm_loss(logits, labels)
        return outputs.CausalLMOutputWithPast(
            loss=loss, logits=logits, past_key_values=cache, hidden_states=states, attentions=attns)

    def _internal_loss(self, x, y, y_pred):
        if "loss" in y_pred and y is None:
            return y_pred["loss"]
        if y is None:
            x = x if isinstance(x, dict) else {"input_ids": x}
            y = losses.labels_from_inputs(x["input_ids"], x.get("attention_mask"))
        return losses.lm_loss(y_pred["logits"], y)

    def generate(self, input_ids, **kwargs):
        """Prefill + compiled decode loop; see `tfgpt2.generation.generate` for the arguments."""
        return generation.generate(self, input_ids, **kwargs)


@keras.saving.register_keras_serializable(package="tfgpt2")
class TFGPT2DoubleHeadsModel(TFGPT2PreTrainedModel):
    """LM head + multiple-choice head (HF's SequenceSummary at `mc_token_ids`, default last token).

    Inputs are `(batch, num_choices, seq_len)`; `labels`/`mc_labels` add `loss`/`mc_loss`,
    and `fit` trains on their sum.

    Example:
    >>> import numpy as np
    >>> from tfgpt2 import GPT2Config, TFGPT2DoubleHeadsModel
    >>> model = TFGPT2DoubleHeadsModel(GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=100))
    >>> out = model(np.ones((2, 3, 5), "int32"), mc_token_ids=np.full((2, 3), 4))
    >>> out.logits.shape, out.mc_logits.shape
    (TensorShape([2, 3, 5, 100]), TensorShape([2, 3]))
    """

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        cfg = self.config
        units = 1 if cfg.summary_proj_to_labels else cfg.n_embd  # HF forces num_labels=1 here
        init = keras.initializers.RandomNormal(stddev=cfg.initializer_range)
        self.summary = keras.layers.Dense(units, kernel_initializer=init, name="multiple_choice_head.summary")
        self.summary.build((None, cfg.n_embd))
        self.summary_dropout = keras.layers.Dropout(cfg.summary_first_dropout)
        self.summary_activation = tf.tanh if cfg.summary_activation == "tanh" else tf.identity

    def head_weights(self):
        return {"multiple_choice_head.summary.weight": (self.summary.kernel, True),
                "multiple_choice_head.summary.bias": (self.summary.bias, False)}

    def call(self, input_ids, attention_mask=None, mc_token_ids=None, labels=None, mc_labels=None,
             training=False, **kwargs):
        input_ids, kwargs = self._unpack(input_ids, dict(
            kwargs, attention_mask=attention_mask, mc_token_ids=mc_token_ids, labels=labels, mc_labels=mc_labels))
        mc_token_ids, labels, mc_labels = (kwargs.pop(k, None) for k in ("mc_token_ids", "labels", "mc_labels"))
        check_inputs(self.config, input_ids, kwargs.get("attention_mask"), rank=3)
        shape = tf.shape(input_ids)  # (B, Ch, T)
        flat = {k: (tf.reshape(v, (-1, tf.shape(v)[-1])) if k in ("attention_mask", "position_ids",
                                                                    "token_type_ids") and v is not None else v)
                for k, v in kwargs.items()}
        flat_ids = tf.reshape(input_ids, (-1, shape[-1]))  # (B*Ch, T)
        hidden, cache, states, attns = self._run_transformer(
            flat_ids, flat.pop("attention_mask", None), flat, training)
        logits = tf.reshape(self.transformer.lm_logits(hidden), tf.concat([shape, [-1]], 0))  # (B, Ch, T, V)
        hidden = tf.reshape(hidden, tf.concat([shape, [-1]], 0))  # (B, Ch, T, C)
        if mc_token_ids is None:
            mc_token_ids = tf.fill(shape[:2], shape[2] - 1)  # (B, Ch): last token
        pooled = tf.gather(hidden, tf.cast(mc_token_ids, tf.int32), axis=2, batch_dims=2)  # (B, Ch, C)
        pooled = self.summary_dropout(pooled, training=training)
        mc_logits = tf.cast(self.summary_activation(self.summary(pooled)), tf.float32)  # (B, Ch, 1)
        mc_logits = tf.squeeze(mc_logits, -1) if self.summary.units == 1 else mc_logits  # (B, Ch)
        return outputs.GPT2DoubleHeadsModelOutput(
            loss=None if labels is None else losses.lm_loss(logits, labels),
            mc_loss=None if mc_labels is None else losses.classification_loss(mc_logits, mc_labels),
            logits=logits, mc_logits=mc_logits, past_key_values=cache, hidden_states=states, attentions=attns)

    def _internal_loss(self, x, y, y_pred):
        if "mc_loss" not in y_pred and y is None:
            raise GPT2InputError("TFGPT2DoubleHeadsModel.fit needs mc_labels in the inputs dict "
                                 "(and optionally labels) to train the multiple-choice head.")
        loss = y_pred.get("mc_loss", 0.0) if y is None else losses.classification_loss(y_pred["mc_logits"], y)
        return loss + y_pred.get("loss", 0.0)


@keras.saving.register_keras_serializable(package="tfgpt2")
class TFGPT2ForSequenceClassification(TFGPT2PreTrainedModel):
    """GPT-2 with a linear `score` head pooled at each row's last non-pad token.

    Example:
    >>> import numpy as np
    >>> from tfgpt2 import GPT2Config, TFGPT2ForSequenceClassification
    >>> cfg = GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=100, num_labels=3, pad_token_id=0)
    >>> TFGPT2ForSequenceClassification(cfg)(np.array([[5, 6, 0], [7, 0, 0]])).logits.shape
    TensorShape([2, 3])
    """

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        init = keras.initializers.RandomNormal(stddev=self.config.initializer_range)
        self.score = keras.layers.Dense(self.config.num_labels, use_bias=False, kernel_initializer=init, name="score")
        self.score.build((None, self.config.n_embd))

    def head_weights(self):
        return {"score.weight": (self.score.kernel, True)}

    def call(self, input_ids, attention_mask=None, labels=None, training=False, **kwargs):
        input_ids, kwargs = self._unpack(input_ids, dict(kwargs, attention_mask=attention_mask, labels=labels))
        labels = kwargs.pop("labels", None)
        hidden, cache, states, attns = self._run_transformer(
            input_ids, kwargs.pop("attention_mask", None), kwargs, training)
        ids = tf.cast(input_ids, tf.int32)
        pad = self.config.pad_token_id
        if pad is None:
            last = tf.fill(tf.shape(ids)[:1], tf.shape(ids)[1] - 1)  # (B,)
        else:  # HF: rightmost token that is not the pad token
            positions = tf.range(tf.shape(ids)[1])[None] * tf.cast(ids != pad, tf.int32)  # (B, T)
            last = tf.argmax(positions, axis=-1, output_type=tf.int32)  # (B,)
        pooled = tf.gather(hidden, last, axis=1, batch_dims=1)  # (B, C)
        logits = tf.cast(self.score(pooled), tf.float32)  # (B, num_labels)
        loss = None
        if labels is not None:
            loss = losses.classification_loss(logits, labels, regression=self.config.num_labels == 1)
        return outputs.SequenceClassifierOutputWithPast(
            loss=loss, logits=logits, past_key_values=cache, hidden_states=states, attentions=attns)

    def _internal_loss(self, x, y, y_pred):
        if y is None:
            if "loss" not in y_pred:
                raise GPT2InputError("fit needs class labels: pass (x, y) or a 'labels' key in the inputs.")
            return y_pred["loss"]
        return losses.classification_loss(y_pred["logits"], y, regression=self.config.num_labels == 1)
