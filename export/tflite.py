"""Convert to TFLite (LiteRT): `prefill` and `decode` signatures with the KV cache as tensors in/out.

Design (also written to model.json): batch 1, TFLITE_BUILTINS only (no Flex, no custom ops).
- `prefill(input_ids[1, P], attention_mask[1, P]) -> logits[1, V], key_values, cache_mask, cache_index`
  starts an empty cache of `max_seq_len` slots and writes the (left-padded) prompt; P = prefill_len.
- `decode(token_id[1], key_values, cache_mask, cache_index) -> logits[1, V], key_values, cache_mask,
  cache_index` appends one token. `key_values` is `(n_layer, 2, 1, n_head, max_seq_len, head_dim)`.
The caller owns the cache (reset = run prefill again). The resource-variable design (cache kept
inside the model) is not used yet: with resource variables enabled the converter kept the Keras 3
weights as variables too and LiteRT returned garbage logits (measured).
Ids are clamped to [0, vocab) inside the graph (TFLite has no asserts); callers validate first.
"""

import tensorflow as tf

from tfgpt2.cache import KVCache
from tfgpt2.generation import Decoder


class LiteGPT2(tf.Module):
    """The module that gets converted; `max_seq_len` = cache slots (prompt + generated)."""

    def __init__(self, model, max_seq_len, prefill_len):
        super().__init__()
        cfg = model.config
        if not 0 < prefill_len < max_seq_len <= cfg.n_positions:
            raise ValueError(f"need 0 < prefill_len ({prefill_len}) < max_seq_len ({max_seq_len}) <= "
                             f"n_positions ({cfg.n_positions}); lower --max-seq-len or --prefill-len.")
        self.model, self.cfg = model, cfg
        self.decoder = Decoder(model)
        self.max_seq_len, self.prefill_len = max_seq_len, prefill_len
        kv = tf.TensorSpec([cfg.n_layer, 2, 1, cfg.n_head, max_seq_len, cfg.head_dim], tf.float32, "key_values")
        # the bound methods' names become the TFLite signature keys
        self.prefill = tf.function(self.prefill, input_signature=[
            tf.TensorSpec([1, prefill_len], tf.int32, "input_ids"),
            tf.TensorSpec([1, prefill_len], tf.int32, "attention_mask")])
        self.decode = tf.function(self.decode, input_signature=[
            tf.TensorSpec([1], tf.int32, "token_id"), kv,
            tf.TensorSpec([1, max_seq_len], tf.int32, "cache_mask"), tf.TensorSpec([], tf.int32, "cache_index")])

    def _clamp(self, ids):
        return tf.clip_by_value(ids, 0, self.cfg.vocab_size - 1)

    @staticmethod
    def _out(logits, cache):
        return {"logits": logits, "key_values": tf.stack(cache.layers), "cache_mask": cache.mask,
                "cache_index": cache.index}

    def prefill(self, input_ids, attention_mask):
        cache = KVCache.empty(self.cfg, 1, self.max_seq_len)
        logits, cache = self.decoder.prefill(self._clamp(input_ids), attention_mask, cache)
        return self._out(logits, cache)

    def decode(self, token_id, key_values, cache_mask, cache_index):
        cache = KVCache(tuple(tf.unstack(key_values)), cache_mask, cache_index)
        logits, cache = self.decoder.step(self._clamp(token_id), cache)
        return self._out(logits, cache)


def representative_dataset(model, blocks, max_seq_len, prefill_len, decode_steps=4):
    """Calibration samples for full-integer int8: (signature, inputs) for `prefill` and `decode`.

    `blocks`: (N, T) int ids of real text, T >= prefill_len + decode_steps; decode inputs come from
    running the float model, so the cache ranges are the ones it will see.
    """
    import numpy as np

    module = LiteGPT2(model, max_seq_len, prefill_len)

    def samples():
        for block in np.asarray(blocks, np.int32):
            ids = block[None, :prefill_len]
            mask = np.ones_like(ids)
            yield "prefill", {"input_ids": ids, "attention_mask": mask}
            state = {k: v.numpy() for k, v in module.prefill(ids, mask).items()}
            for token in block[prefill_len:prefill_len + decode_steps]:
                inputs = {"token_id": np.array([token], np.int32), "key_values": state["key_values"],
                          "cache_mask": state["cache_mask"], "cache_index": state["cache_index"]}
                yield "decode", inputs
                state = {k: v.numpy() for k, v in module.decode(**inputs).items()}

    return samples


def convert(model, max_seq_len=256, prefill_len=64, optimizations=None, representative_dataset=None,
            target_types=None):
    """TFLite flatbuffer bytes for `model`, builtin ops only.

    Goes through a Keras `ExportArchive` SavedModel, which stores Keras 3 variables so the
    converter freezes them from the checkpoint (a plain tf.Module SavedModel left them as
    VAR_HANDLEs that LiteRT read as garbage, measured).
    """
    import tempfile

    import keras

    module = LiteGPT2(model, max_seq_len, prefill_len)
    with tempfile.TemporaryDirectory() as tmp:
        archive = keras.export.ExportArchive()
        archive.track(model)
        for name in ("prefill", "decode"):
            fn = getattr(module, name)
            archive.add_endpoint(name=name, fn=fn.python_function, input_signature=fn.input_signature)
        archive.write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["prefill", "decode"])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if optimizations:
            converter.optimizations = optimizations
        if representative_dataset is not None:
            converter.representative_dataset = representative_dataset
        if target_types:
            converter.target_spec.supported_types = target_types
        return converter.convert()
