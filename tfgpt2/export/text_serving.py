"""Text in, text out for TF Serving: `generate_text(text, ...) -> text`, in its own SavedModel.

The in-graph tokenizer (tfgpt2.text_graph) needs one op outside core TF: `RegexSplitWithOffsets`
from TensorFlow Text. Stock `tensorflow/serving` images don't register it ("Op type not
registered", tensorflow/serving#2064), so this signature lives in DIR/saved_model_text/1 and the
main DIR/saved_model/1 keeps to core ops. Serve it with a TF Serving build that links TF Text
(or load it with `import tensorflow_text` before `tf.saved_model.load`).
"""

import tensorflow as tf

from tfgpt2.export.contract import special_tokens
from tfgpt2.export.saved_model import SCALAR_F, SCALAR_I, GPT2Serving, _function
from tfgpt2.text_graph import GPT2GraphTokenizer

REQUIRED_OPS = ("RegexSplitWithOffsets",)


class GPT2TextServing(GPT2Serving):
    """`generate_text`: strings in, generated continuations (text after the prompt) out."""

    def __init__(self, model, max_new_tokens_cap=128):
        super().__init__(model, max_new_tokens_cap, signatures=False)
        self.tokenizer = GPT2GraphTokenizer()
        self.generate_text = _function(self._generate_text, input_signature=[
            tf.TensorSpec([None], tf.string, "text"), SCALAR_I("max_new_tokens"), SCALAR_F("temperature"),
            SCALAR_I("top_k"), SCALAR_F("top_p"), tf.TensorSpec([], tf.int64, "seed")])

    def _generate_text(self, text, max_new_tokens, temperature, top_k, top_p, seed):
        ragged = self.tokenizer.encode(text)  # (B, None)
        lengths = tf.cast(ragged.row_lengths(), tf.int32)  # (B,)
        width = tf.maximum(tf.reduce_max(lengths), 1)
        eos = special_tokens(self.cfg)[0]["eos_token_id"]
        fill, eos = (0, -1) if eos is None else (eos, eos)  # padding fed to the model must be a real id
        right = ragged.to_tensor(default_value=fill, shape=[None, None])  # (B, T) right-padded
        right = tf.pad(right, [[0, 0], [0, width - tf.shape(right)[1]]], constant_values=fill)
        shift = width - lengths  # left-pad by moving each row right
        source = tf.range(width)[None, :] - shift[:, None]  # (B, T)
        ids = tf.where(source >= 0, tf.gather(right, tf.maximum(source, 0), batch_dims=1), fill)  # (B, T)
        mask = tf.cast(source >= 0, tf.int32)  # (B, T)
        out = self._generate(ids, mask, max_new_tokens, temperature, top_k, top_p, tf.constant(1.0), seed,
                             tf.constant(eos))
        new = tf.RaggedTensor.from_tensor(out["sequences"], lengths=out["num_generated"])  # (B, None)
        keep = tf.ragged.boolean_mask(new, tf.not_equal(new, eos))  # the stop token is not text
        return {"text": self.tokenizer.decode(keep), "num_generated": out["num_generated"]}


def build(model, export_dir, max_new_tokens_cap=128):
    """Writes the text SavedModel (generate_text only) to `export_dir`, e.g. DIR/saved_model_text/1."""
    module = GPT2TextServing(model, max_new_tokens_cap)
    tf.saved_model.save(module, export_dir, signatures={"generate_text": module.generate_text})
    return module
