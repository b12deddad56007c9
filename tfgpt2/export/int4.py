"""int4 recipe: channelwise int4 block weights (ai-edge-quantizer), the tied embedding as one int8 table.

ai-edge-quantizer quantizes FULLY_CONNECTED weights but has no policy for GATHER, so the embedding
would stay float32 (4 bytes x vocab x n_embd). The model is therefore converted reading wte as an
int8 table with one scale per row (`Int8Table`): the embedding gathers int8 rows, casts and scales;
the tied LM head's weight is that table dequantized. The quantizer turns the block weights into
int4 and the head's weight into int8 channelwise, which gives back the table's own bytes (each
row's largest value is 127 steps), so `dedupe_buffers` stores them once. The head stays int8
because it decides the token: as int4 it cost the trained reference models up to 7 points of top-1
agreement (docs/export.md; llama.cpp keeps its output matrix at higher precision for the same
reason). Needs `pip install ai-edge-quantizer`.
"""

import keras
import tensorflow as tf

from tfgpt2 import quantization

# The head is the FULLY_CONNECTED that writes a signature output (logits); no other FC does, and the
# converter names signature outputs StatefulPartitionedCall[_N]:K.
HEAD_OUTPUT = "^StatefulPartitionedCall"


class Int8Table(keras.layers.Layer):
    """wte as int8 rows and one float scale per row (quantization.int8_rows), held as variables so an
    export archive stores them in its checkpoint (graph constants would be copied with the graph)."""

    def __init__(self, model, **kwargs):
        super().__init__(name="int8_table", **kwargs)
        rows, scales = (t.numpy() for t in quantization.int8_rows(model.transformer.wte.embeddings))
        self.rows = self.add_weight(shape=rows.shape, dtype="int8", trainable=False, name="rows")  # (V, C)
        self.scales = self.add_weight(shape=scales.shape, trainable=False, name="scales")  # (V,)
        # the head's weight: the table dequantized; int8 channelwise quantization gives back its bytes
        self.head = self.add_weight(shape=rows.shape, trainable=False, name="head")  # (V, C)
        self.rows.assign(rows)
        self.scales.assign(scales)
        self.head.assign(rows.astype("float32") * scales[:, None])
        self.built = True

    def lookup(self, ids):
        """ids (B, T) -> (B, T, C) float32."""
        return tf.cast(tf.gather(self.rows, ids), tf.float32) * tf.gather(self.scales, ids)[..., None]

    def logits(self, hidden):
        """The tied head over the table: hidden (..., C) -> float32 (..., V)."""
        return tf.matmul(tf.cast(hidden, tf.float32), self.head, transpose_b=True)


def quantize(flat):
    """(int4 flatbuffer bytes, bytes saved by sharing buffers) from a float flatbuffer of `Int8Table`."""
    try:
        from ai_edge_quantizer import quantizer, recipe
    except ImportError as e:
        raise ImportError("the int4 recipe needs ai-edge-quantizer: pip install ai-edge-quantizer") from e
    from tfgpt2.export import tied

    rules = recipe.dynamic_wi4_afp32()  # channelwise int4 for every weight
    head = recipe.dynamic_wi8_afp32()[0]  # channelwise int8 for the head's FULLY_CONNECTED
    head.update(regex=HEAD_OUTPUT, operation=recipe.TFLOperationName.FULLY_CONNECTED)
    result = quantizer.Quantizer(flat, rules + [head]).quantize(enable_progress_report=False)
    return tied.dedupe_buffers(bytes(result.quantized_model))
