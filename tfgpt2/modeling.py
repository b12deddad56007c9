"""GPT-2 Keras models with Hugging Face names, call arguments and outputs."""

import keras
import tensorflow as tf

from tfgpt2 import generation, losses, outputs
from tfgpt2.errors import GPT2InputError
from tfgpt2.main_layer import check_inputs
from tfgpt2.pretrained import BASE_ARGS, TFGPT2PreTrainedModel


@keras.saving.register_keras_serializable(package="tfgpt2")
class TFGPT2Model(TFGPT2PreTrainedModel):
    """The bare GPT-2 transformer: last hidden states (and cache, hidden states, attentions).

    Example:
    >>> import numpy as np
    >>> from tfgpt2 import GPT2Config, TFGPT2Model
    >>> model = TFGPT2Model(GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=100))
    >>> out = model(np.array([[1, 2, 3]]), use_cache=True)
    >>> out.last_hidden_state.shape, len(out)
    (TensorShape([1, 3, 32]), 2)
    >>> model(np.array([[4]]), past_key_values=out.past_key_values).last_hidden_state.shape
    TensorShape([1, 1, 32])
    """

    call_args = BASE_ARGS

    def call(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None, position_ids=None,
             head_mask=None, inputs_embeds=None, use_cache=None, output_attentions=None, output_hidden_states=None,
             return_dict=None, training=False):
        hidden, cache, states, attns, return_dict = self.run_transformer(
            input_ids, past_key_values, attention_mask, token_type_ids, position_ids, head_mask, inputs_embeds,
            use_cache, output_attentions, output_hidden_states, return_dict, training)
        return self.finish(outputs.BaseModelOutputWithPast(
            last_hidden_state=hidden, past_key_values=cache, hidden_states=states, attentions=attns), return_dict)


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

    def call(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None, position_ids=None,
             head_mask=None, inputs_embeds=None, use_cache=None, output_attentions=None, output_hidden_states=None,
             return_dict=None, labels=None, training=False):
        hidden, cache, states, attns, return_dict = self.run_transformer(
            input_ids, past_key_values, attention_mask, token_type_ids, position_ids, head_mask, inputs_embeds,
            use_cache, output_attentions, output_hidden_states, return_dict, training)
        logits = self.transformer.lm_logits(hidden)  # (B, T, V)
        loss = None if labels is None else losses.lm_loss(logits, labels)
        return self.finish(outputs.CausalLMOutputWithPast(
            loss=loss, logits=logits, past_key_values=cache, hidden_states=states, attentions=attns), return_dict)

    def get_output_embeddings(self):
        return self.transformer.wte  # the tied head

    def set_output_embeddings(self, value):
        self.set_input_embeddings(value)

    def _internal_loss(self, x, y, y_pred):
        if "loss" in y_pred and y is None:
            return y_pred["loss"]
        if y is None:
            x = x if isinstance(x, dict) else {"input_ids": x}
            y = losses.labels_from_inputs(x["input_ids"], x.get("attention_mask"))
        return losses.lm_loss(y_pred["logits"], y)

    def generate(self, input_ids=None, **kwargs):
        """transformers' `generate` for a decoder-only model; see `tfgpt2.generation.generate`."""
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

    call_args = BASE_ARGS[:7] + ("mc_token_ids",) + BASE_ARGS[7:] + ("labels", "mc_labels")

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

    def call(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None, position_ids=None,
             head_mask=None, inputs_embeds=None, mc_token_ids=None, use_cache=None, output_attentions=None,
             output_hidden_states=None, return_dict=None, labels=None, mc_labels=None, training=False):
        source = input_ids if input_ids is not None else inputs_embeds
        if source is None or len(source.shape) < 3:
            raise GPT2InputError("TFGPT2DoubleHeadsModel takes input_ids of shape (batch, num_choices, seq_len) "
                                 "(or inputs_embeds (batch, num_choices, seq_len, n_embd)).")
        shape = tf.shape(source)[:3]  # (B, Ch, T)
        if input_ids is not None:
            check_inputs(self.config, input_ids, attention_mask, past_key_values, rank=3)
        hidden, cache, states, attns, return_dict = self.run_transformer(
            _flat(input_ids), past_key_values, _flat(attention_mask), _flat(token_type_ids), _flat(position_ids),
            head_mask, _flat(inputs_embeds), use_cache, output_attentions, output_hidden_states, return_dict, training)
        logits = tf.reshape(self.transformer.lm_logits(hidden), tf.concat([shape, [-1]], 0))  # (B, Ch, T, V)
        hidden = tf.reshape(hidden, tf.concat([shape, [-1]], 0))  # (B, Ch, T, C)
        if mc_token_ids is None:
            mc_token_ids = tf.fill(shape[:2], shape[2] - 1)  # (B, Ch): last token
        pooled = tf.gather(hidden, tf.cast(mc_token_ids, tf.int32), axis=2, batch_dims=2)  # (B, Ch, C)
        pooled = self.summary_dropout(pooled, training=training)
        mc_logits = tf.cast(self.summary_activation(self.summary(pooled)), tf.float32)  # (B, Ch, 1)
        mc_logits = tf.squeeze(mc_logits, -1) if self.summary.units == 1 else mc_logits  # (B, Ch)
        return self.finish(outputs.GPT2DoubleHeadsModelOutput(
            loss=None if labels is None else losses.lm_loss(logits, labels),
            mc_loss=None if mc_labels is None else losses.classification_loss(mc_logits, mc_labels),
            logits=logits, mc_logits=mc_logits, past_key_values=cache, hidden_states=states, attentions=attns),
            return_dict)

    def _internal_loss(self, x, y, y_pred):
        if "mc_loss" not in y_pred and y is None:
            raise GPT2InputError("TFGPT2DoubleHeadsModel.fit needs mc_labels in the inputs dict "
                                 "(and optionally labels) to train the multiple-choice head.")
        loss = y_pred.get("mc_loss", 0.0) if y is None else losses.classification_loss(y_pred["mc_logits"], y)
        return loss + y_pred.get("loss", 0.0)


def _flat(value):
    """(B, Ch, T, ...) -> (B*Ch, T, ...); None and already-flat values pass through."""
    if value is None or len(value.shape) < 3:
        return value
    flat = tf.reshape(value, tf.concat([[-1], tf.shape(value)[2:]], 0))
    flat.set_shape([None] + list(value.shape[2:]))
    return flat


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

    def call(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None, position_ids=None,
             head_mask=None, inputs_embeds=None, use_cache=None, output_attentions=None, output_hidden_states=None,
             return_dict=None, labels=None, training=False):
        hidden, cache, states, attns, return_dict = self.run_transformer(
            input_ids, past_key_values, attention_mask, token_type_ids, position_ids, head_mask, inputs_embeds,
            use_cache, output_attentions, output_hidden_states, return_dict, training)
        length = tf.shape(hidden)[1]
        pad = self.config.pad_token_id
        if pad is None or input_ids is None:  # HF: the last token
            last = tf.fill(tf.shape(hidden)[:1], length - 1)  # (B,)
        else:  # HF: rightmost token that is not the pad token
            ids = tf.cast(input_ids, tf.int32)
            positions = tf.range(length)[None] * tf.cast(ids != pad, tf.int32)  # (B, T)
            last = tf.argmax(positions, axis=-1, output_type=tf.int32)  # (B,)
        pooled = tf.gather(hidden, last, axis=1, batch_dims=1)  # (B, C)
        logits = tf.cast(self.score(pooled), tf.float32)  # (B, num_labels)
        loss = None
        if labels is not None:
            loss = losses.classification_loss(logits, labels, regression=self.config.num_labels == 1)
        return self.finish(outputs.SequenceClassifierOutputWithPast(
            loss=loss, logits=logits, past_key_values=cache, hidden_states=states, attentions=attns), return_dict)

    def _internal_loss(self, x, y, y_pred):
        if y is None:
            if "loss" not in y_pred:
                raise GPT2InputError("fit needs class labels: pass (x, y) or a 'labels' key in the inputs.")
            return y_pred["loss"]
        return losses.classification_loss(y_pred["logits"], y, regression=self.config.num_labels == 1)
