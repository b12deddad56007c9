"""int4 recipe: channelwise int4 weights (ai-edge-quantizer) + an int8 embedding table.

ai-edge-quantizer quantizes FULLY_CONNECTED weights (the blocks and the tied LM head) but has no
policy for GATHER, so the embedding would stay float32 (4 bytes × vocab × n_embd). The model is
therefore converted with its embedding lookup rewritten in the graph as an int8 table with one
scale per row (`int8_lookup`: gather int8 rows, cast, scale); then the quantizer turns every float weight into
int4 and `dedupe_buffers` shares what it copied per signature. Needs `pip install ai-edge-quantizer`.
"""

import tensorflow as tf

from tfgpt2 import quantization


def int8_lookup(model):
    """An embedding lookup over a per-row int8 copy of `model`'s wte (constants in the traced graph):
    ids (B, T) -> (B, T, C) float32. Pass it as `lookup=` to the transformer."""
    rows, scales = (tf.constant(t.numpy()) for t in quantization.int8_rows(model.transformer.wte.embeddings))

    def lookup(ids):
        return tf.cast(tf.gather(rows, ids), tf.float32) * tf.gather(scales, ids)[..., None]  # (B, T, C)

    return lookup


def quantize(flat):
    """(int4 flatbuffer bytes, bytes saved by sharing buffers) from a float flatbuffer."""
    try:
        from ai_edge_quantizer import quantizer, recipe
    except ImportError as e:
        raise ImportError("the int4 recipe needs ai-edge-quantizer: pip install ai-edge-quantizer") from e
    from tfgpt2.export import tied

    result = quantizer.Quantizer(flat, recipe.dynamic_wi4_afp32()).quantize(enable_progress_report=False)
    return tied.dedupe_buffers(bytes(result.quantized_model))
