"""Convert to TFLite (LiteRT): `prefill` and `decode` signatures; the caller owns the KV cache.

Design (also written to model.json): batch 1, TFLITE_BUILTINS only (no Flex, no custom ops).
Per layer i the cache is two float32 tensors the caller keeps between calls:
`k_i (1, n_head, max_seq_len, head_dim)` and `vt_i (1, n_head, head_dim, max_seq_len)` (values
transposed, so both attention products reduce over the innermost axis), plus
`cache_mask (1, max_seq_len)` int32 (1 = slot holds a real token).
- `prefill(input_ids[1, P], attention_mask[1, P]) -> logits[1, V], cache_mask, k_i, vt_i`:
  the left-padded prompt fills slots 0..P-1 (pads masked); the next free slot is P.
- `decode(token_id[1], cache_mask, k_i, vt_i) -> logits[1, V], new_k, new_v`, `new_k`/`new_v`
  `(n_layer, n_head, head_dim)`: the token attends to the cache plus itself; the caller writes
  new_k[i] into k_i[0, :, slot, :] and new_v[i] into vt_i[0, :, :, slot], sets cache_mask[0, slot]=1
  and moves to the next slot (`cache_host.CacheHost` does exactly that; so does the Kotlin app).
The graph never copies the cache: a design that passed it in and out and wrote it with
DYNAMIC_UPDATE_SLICE decoded several times slower (docs/design.md).
Both signatures run the model's own blocks (`Block.call`); decode hands them `attend`, the
attention over the caller-owned cache. Ids are clamped to [0, vocab) inside the graph (TFLite has
no asserts); callers validate first.
"""

import numpy as np
import tensorflow as tf

from tfgpt2.cache import MASKED, KVCache
from tfgpt2.export.cache_host import CacheHost
from tfgpt2.generation import Decoder


class LiteGPT2(tf.Module):
    """The module that gets converted; `max_seq_len` = cache slots (prompt + generated).

    `integer_attention`: decode attends with BATCH_MATMUL + SOFTMAX (`attend_matmul`), which have
    int8 kernels, for full-integer quantization; else with `attend` (float recipes, faster).
    `table`: the embedding table the graph reads, its lookup and the tied head (bound.InputTable),
    default wte. Each `c_proj` is traced as one FULLY_CONNECTED over its concatenated weight blocks
    (a constant after freezing): as four FCs + CONCATENATION, LiteRT decoded no faster and the int8
    file grew.
    """

    def __init__(self, model, max_seq_len, prefill_len, integer_attention=False, table=None):
        super().__init__()
        cfg = model.config
        if not 0 < prefill_len < max_seq_len <= cfg.n_positions:
            raise ValueError(f"need 0 < prefill_len ({prefill_len}) < max_seq_len ({max_seq_len}) <= "
                             f"n_positions ({cfg.n_positions}); lower --max-seq-len or --prefill-len.")
        self.model, self.cfg = model, cfg
        self.decoder = Decoder(model, table=table, merged_projections=True)
        self.attend = attend_matmul if integer_attention else attend
        self.max_seq_len, self.prefill_len = max_seq_len, prefill_len
        L, H, D, S = cfg.n_layer, cfg.n_head, cfg.head_dim, max_seq_len
        caches = ([tf.TensorSpec([1, H, S, D], tf.float32, f"k_{i}") for i in range(L)]
                  + [tf.TensorSpec([1, H, D, S], tf.float32, f"vt_{i}") for i in range(L)])
        # the bound methods' names become the TFLite signature keys
        self.prefill = tf.function(self.prefill, input_signature=[
            tf.TensorSpec([1, prefill_len], tf.int32, "input_ids"),
            tf.TensorSpec([1, prefill_len], tf.int32, "attention_mask")])
        self.decode = tf.function(self.decode, input_signature=[
            tf.TensorSpec([1], tf.int32, "token_id"), tf.TensorSpec([1, S], tf.int32, "cache_mask"), *caches])

    def _clamp(self, ids):
        return tf.clip_by_value(ids, 0, self.cfg.vocab_size - 1)

    def prefill(self, input_ids, attention_mask):
        cache = KVCache.empty(self.cfg, 1, self.max_seq_len)
        logits, cache = self.decoder.prefill(self._clamp(input_ids), attention_mask, cache)
        out = {"logits": logits, "cache_mask": cache.mask}
        for i, layer in enumerate(cache.layers):  # (2, 1, nh, S, hs)
            k, v = tf.unstack(layer)  # (1, nh, S, hs) each
            out[f"k_{i}"] = k  # (1, nh, S, hs)
            out[f"vt_{i}"] = tf.transpose(v, (0, 1, 3, 2))  # (1, nh, hs, S)
        return out

    def decode(self, token_id, cache_mask, *caches):
        cfg, main = self.cfg, self.model.transformer
        L, H, D = cfg.n_layer, cfg.n_head, cfg.head_dim
        ks, vts = caches[:L], caches[L:]
        position = tf.reduce_sum(cache_mask, axis=1)  # (1,) real tokens so far
        # reshapes here, never `[:, None]` / `[:, -1]`: LiteRT runs STRIDED_SLICE with a per-element
        # reference kernel outside XNNPACK (tests/test_tflite.py checks decode has none)
        ids, positions = tf.reshape(self._clamp(token_id), (1, 1)), tf.reshape(position, (1, 1))
        x = main.embed(ids, positions, lookup=self.decoder.lookup)  # (1, 1, C)
        bias = tf.reshape(tf.where(cache_mask > 0, 0.0, MASKED), (1, 1, 1, -1))  # (1, 1, 1, S)
        new_k, new_v = [], []
        for i, block in enumerate(main.h):
            def over_cache(q, k, v, i=i):  # q (1, nh, 1, hs) scaled; the new entries are returned
                return self.attend(q, k, v, ks[i], vts[i], bias), (k, v), None

            x, (k, v), _ = block(x, None, attend=over_cache, merged=True)  # (1, 1, C)
            new_k.append(tf.reshape(k, (H, D)))
            new_v.append(tf.reshape(v, (H, D)))
        logits = self.decoder.lm_logits(tf.reshape(main.ln_f(x), (1, H * D)))  # (1, V)
        return {"logits": logits, "new_k": tf.stack(new_k), "new_v": tf.stack(new_v)}  # (L, nh, hs)


def attend(q, k, v, cached_k, cached_vt, bias):
    """One token's attention over the cache slots plus itself: (1, nh, 1, hs).

    q, k, v (1, nh, 1, hs) (q scaled); cached_k (1, nh, S, hs); cached_vt (1, nh, hs, S); bias
    (1, 1, 1, S). Products are MUL + SUM and the softmax is spelled out, with the token's own
    score kept apart: no BATCH_MATMUL (XNNPACK re-packs a matmul's non-constant operand, the cache,
    on every call), no CONCATENATION or slices around the softmax.
    """
    scores = tf.expand_dims(tf.reduce_sum(q * cached_k, -1), 2) + bias  # (1, nh, 1, S)
    own = tf.reduce_sum(q * k, -1, keepdims=True)  # (1, nh, 1, 1)
    top = tf.maximum(tf.reduce_max(scores, -1, keepdims=True), own)  # (1, nh, 1, 1)
    weights, own_weight = tf.exp(scores - top), tf.exp(own - top)  # (1, nh, 1, S), (1, nh, 1, 1)
    mixed = tf.expand_dims(tf.reduce_sum(weights * cached_vt, -1), 2) + own_weight * v  # (1, nh, 1, hs)
    return mixed / (tf.reduce_sum(weights, -1, keepdims=True) + own_weight)  # (1, nh, 1, hs)


def attend_matmul(q, k, v, cached_k, cached_vt, bias):
    """`attend` with BATCH_MATMUL, CONCATENATION and SOFTMAX: every op has an int8 kernel
    (`attend`'s DIV does not, and LiteRT aborts on an int8 DIV)."""
    scores = tf.concat([tf.matmul(q, cached_k, transpose_b=True) + bias,  # (1, nh, 1, S)
                        tf.reduce_sum(q * k, -1, keepdims=True)], axis=-1)  # (1, nh, 1, S + 1)
    probs = tf.nn.softmax(scores, axis=-1)  # (1, nh, 1, S + 1)
    return tf.matmul(probs[..., :-1], cached_vt, transpose_b=True) + probs[..., -1:] * v  # (1, nh, 1, hs)


def representative_dataset(model, blocks, max_seq_len, prefill_len, decode_steps=4):
    """Calibration samples for full-integer int8: (signature, inputs) for `prefill` and `decode`.

    `blocks`: (N, T) int ids of real text, T >= prefill_len + decode_steps; decode inputs come from
    running the float model, so the cache ranges are the ones it will see.
    """
    module = LiteGPT2(model, max_seq_len, prefill_len)

    def run_decode(token_id, cache_mask, **caches):
        L = model.config.n_layer
        return module.decode(token_id, cache_mask, *[caches[f"k_{i}"] for i in range(L)],
                             *[caches[f"vt_{i}"] for i in range(L)])

    def samples():
        for block in np.asarray(blocks, np.int32):
            host = CacheHost(module.prefill, run_decode, model.config.n_layer, max_seq_len, prefill_len)
            yield "prefill", host.prefill_inputs(block[:prefill_len])
            host.prefill(block[:prefill_len])
            for token in block[prefill_len:prefill_len + decode_steps]:
                yield "decode", host.decode_inputs(token)
                host.decode(token)

    return samples


def write_archive(model, directory, max_seq_len=256, prefill_len=64, integer_attention=False, table=None):
    """The `prefill`/`decode` SavedModel the converter reads, written with a Keras `ExportArchive`.

    ExportArchive stores Keras 3 variables so the converter freezes them from the checkpoint (a
    plain tf.Module SavedModel left them as VAR_HANDLEs that LiteRT read as garbage).
    """
    import keras

    module = LiteGPT2(model, max_seq_len, prefill_len, integer_attention, table)
    archive = keras.export.ExportArchive()
    archive.track(model)
    if table is not None:
        archive.track(table)
    for name in ("prefill", "decode"):
        fn = getattr(module, name)
        archive.add_endpoint(name=name, fn=fn.python_function, input_signature=fn.input_signature)
    archive.write_out(directory, verbose=False)


def convert_archive(directory, optimizations=None, representative_dataset=None, target_types=None,
                    buffer_offset=True, signature_keys=("prefill", "decode")):
    """TFLite flatbuffer bytes from `write_archive`'s SavedModel (or litertlm.write_archive's with its
    `signature_keys`), builtin ops only."""
    converter = tf.lite.TFLiteConverter.from_saved_model(directory, signature_keys=list(signature_keys))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    # weights written after the flatbuffer by offset: one less copy of them while serialising, same
    # logits; LiteRT reads such files since TF 2.15
    converter._experimental_use_buffer_offset = buffer_offset
    if optimizations:
        converter.optimizations = optimizations
    if representative_dataset is not None:
        converter.representative_dataset = representative_dataset
    if target_types:
        converter.target_spec.supported_types = target_types
    return converter.convert()


def convert(model, max_seq_len=256, prefill_len=64, integer_attention=False, table=None, **converter_options):
    """TFLite flatbuffer bytes for `model` (`write_archive` + `convert_archive` in a temp dir)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        write_archive(model, tmp, max_seq_len, prefill_len, integer_attention, table)
        return convert_archive(tmp, **converter_options)
