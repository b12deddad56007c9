"""int4 recipe: channelwise int4 weights (ai-edge-quantizer) + an int8 embedding table.

ai-edge-quantizer quantizes FULLY_CONNECTED weights (the blocks and the tied LM head) but has no
policy for GATHER, so the embedding would stay float32 (4 bytes × vocab × n_embd). The model is
therefore converted with its embedding lookup rewritten in the graph as an int8 table with one
scale per row (gather int8 rows, cast, scale); then the quantizer turns every float weight into
int4 and `dedupe_buffers` shares what it copied per signature. Needs `pip install ai-edge-quantizer`.
"""

import contextlib

import numpy as np
import tensorflow as tf


@contextlib.contextmanager
def int8_embedding(model):
    """While active, `model`'s token embedding reads a per-row int8 copy of `wte`."""
    layer = model.transformer
    wte = layer.wte.embeddings.numpy()  # (V, C)
    scale = np.maximum(np.abs(wte).max(axis=1), 1e-12) / 127.0  # (V,)
    table = tf.constant(np.clip(np.round(wte / scale[:, None]), -127, 127).astype(np.int8))  # (V, C)
    scales = tf.constant(scale.astype(np.float32))  # (V,)

    def lookup(ids):
        return tf.cast(tf.gather(table, ids), tf.float32) * tf.gather(scales, ids)[..., None]  # (B, T, C)

    def embed(input_ids, position_ids, token_type_ids=None):
        x = lookup(input_ids) + layer.wpe(position_ids)  # (B, T, C)
        return x if token_type_ids is None else x + lookup(token_type_ids)

    layer.embed = embed  # instance attribute shadows the method while tracing
    try:
        yield
    finally:
        del layer.embed


def quantize(flat):
    """(int4 flatbuffer bytes, bytes saved by sharing buffers) from a float flatbuffer."""
    try:
        from ai_edge_quantizer import quantizer, recipe
    except ImportError as e:
        raise ImportError("the int4 recipe needs ai-edge-quantizer: pip install ai-edge-quantizer") from e
    from tfgpt2.export import tied

    result = quantizer.Quantizer(flat, recipe.dynamic_wi4_afp32()).quantize(enable_progress_report=False)
    return tied.dedupe_buffers(bytes(result.quantized_model))
