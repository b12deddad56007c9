"""LiteRT-LM (.litertlm): the model in LiteRT-LM's signature layout, packed with its tokenizer and metadata.

Signatures (litert-torch's layout, which LiteRT-LM's CPU/GPU executors drive), batch 1, S = max_seq_len:
- `prefill_<T>(tokens[1, T], input_pos[T], mask[1, 1, T, S], kv_cache_k_<i>, kv_cache_v_<i>)` ->
  `kv_cache_k_<i>, kv_cache_v_<i>`: the prompt's entries written at input_pos[0]... (a longer prompt is
  prefilled in chunks of T by the runtime; a shorter one padded);
- `decode(tokens[1, 1], input_pos[1], mask[1, 1, 1, S], caches)` -> `logits[1, 1, V]`, caches.
Per layer `kv_cache_k_<i>` (1, n_head, S, head_dim) and `kv_cache_v_<i>` (1, n_head, head_dim, S) (values
transposed, as in the .tflite files); the graph writes the new entries with DYNAMIC_UPDATE_SLICE and
returns the caches under the input names, so the runtime swaps buffers instead of copying them. `mask`
is additive (0 = visible), built by the runtime. The blocks are the model's own (`Block.call`); only
the attention over the caches is this module's (`attend`).

The .litertlm holds that .tflite, the GPT-2 vocabulary as an HF tokenizer.json and an LlmMetadata:
the stop token (eos, when it is in the vocabulary), max_num_tokens = S, no start token and no prompt
template (GPT-2 has none), greedy sampling (top-k 1 through the TOP_P sampler, the one LiteRT-LM's CPU
executor implements).
"""

import json
import os

import keras
import tensorflow as tf

PREFILL = "prefill_{}"
INSTALL = "pip install 'tfgpt2[litertlm]' (litert-lm-builder, litert-lm-api, tokenizers)"


def check_installed():
    """ImportError naming the install command when a library the LiteRT-LM export needs is missing."""
    from tfgpt2.export.extras import require

    require(("litert_lm_builder", "litert_lm", "tokenizers"), "the LiteRT-LM export", INSTALL)


class LmGPT2(tf.Module):
    """The module that gets converted; `table`: the embedding lookup and tied head to read (bound.InputTable)."""

    def __init__(self, model, max_seq_len, prefill_len, table=None):
        super().__init__()
        cfg = model.config
        if not 0 < prefill_len < max_seq_len <= cfg.n_positions:
            raise ValueError(f"need 0 < prefill_len ({prefill_len}) < max_seq_len ({max_seq_len}) <= "
                             f"n_positions ({cfg.n_positions}); lower --max-seq-len or --prefill-len.")
        self.model, self.cfg, self.table = model, cfg, table
        self.max_seq_len, self.prefill_len = max_seq_len, prefill_len
        self.signatures = {PREFILL.format(prefill_len): (self._prefill, self._specs(prefill_len)),
                           "decode": (self._decode, self._specs(1))}

    def _specs(self, length):
        cfg, S = self.cfg, self.max_seq_len
        specs = [tf.TensorSpec([1, length], tf.int32, "tokens"), tf.TensorSpec([length], tf.int32, "input_pos"),
                 tf.TensorSpec([1, 1, length, S], tf.float32, "mask")]
        for i in range(cfg.n_layer):
            specs += [tf.TensorSpec([1, cfg.n_head, S, cfg.head_dim], tf.float32, f"kv_cache_k_{i}"),
                      tf.TensorSpec([1, cfg.n_head, cfg.head_dim, S], tf.float32, f"kv_cache_v_{i}")]
        return specs

    def _prefill(self, tokens, input_pos, mask, *caches):
        return self._run(tokens, input_pos, mask, caches, logits=False)

    def _decode(self, tokens, input_pos, mask, *caches):
        return self._run(tokens, input_pos, mask, caches, logits=True)

    def _run(self, tokens, input_pos, mask, caches, logits):
        cfg, main = self.cfg, self.model.transformer
        length = tokens.shape[1]
        ids = tf.clip_by_value(tokens, 0, cfg.vocab_size - 1)  # LiteRT has no asserts; the runtime validates
        positions = tf.reshape(tf.clip_by_value(input_pos, 0, cfg.n_positions - 1), (1, length))
        x = main.embed(ids, positions, lookup=self.table.lookup if self.table is not None else None)  # (1, T, C)
        start = tf.reshape(input_pos[:1], ())
        out = {}
        for i, block in enumerate(main.h):
            def over_cache(q, k, v, i=i):  # q (1, nh, T, hs) scaled; k, v (1, nh, T, hs)
                return attend(q, k, v, caches[2 * i], caches[2 * i + 1], mask, start)

            x, (out[f"kv_cache_k_{i}"], out[f"kv_cache_v_{i}"]), _ = block(x, None, attend=over_cache, merged=True)
        if logits:
            hidden = tf.reshape(main.ln_f(x), (length, cfg.n_embd))  # (T, C)
            head = self.table.logits if self.table is not None else main.lm_logits
            out["logits"] = tf.reshape(head(hidden), (1, length, cfg.vocab_size))  # (1, T, V)
        return out


def attend(q, k, v, cache_k, cache_vt, mask, start):
    """Writes k, v at slot `start` of the caches, then attends over them: (y (1, nh, T, hs), (caches), None).

    cache_k (1, nh, S, hs), cache_vt (1, nh, hs, S) (values transposed); mask (1, 1, T, S) additive.
    One token (decode) attends with MUL + SUM, as tflite.attend does: XNNPACK re-packs a BATCH_MATMUL's
    non-constant operand, the cache, on every call. A prompt chunk uses BATCH_MATMUL (MUL + SUM would
    build a (T, S, hs) product per head)."""
    cache_k = keras.ops.slice_update(cache_k, (0, 0, start, 0), k)  # (1, nh, S, hs)
    cache_vt = keras.ops.slice_update(cache_vt, (0, 0, 0, start), tf.transpose(v, (0, 1, 3, 2)))  # (1, nh, hs, S)
    if q.shape[2] == 1:
        heads, size = q.shape[1], q.shape[3]
        scores = tf.reshape(tf.reduce_sum(tf.reshape(q, (1, heads, 1, size)) * cache_k, -1), (1, heads, 1, -1))
        probs = tf.nn.softmax(scores + mask, axis=-1)  # (1, nh, 1, S)
        y = tf.reshape(tf.reduce_sum(probs * cache_vt, -1), (1, heads, 1, size))  # (1, nh, 1, hs)
        return y, (cache_k, cache_vt), None
    scores = tf.matmul(q, cache_k, transpose_b=True) + mask  # (1, nh, T, S)
    y = tf.matmul(tf.nn.softmax(scores, axis=-1), cache_vt, transpose_b=True)  # (1, nh, T, hs)
    return y, (cache_k, cache_vt), None


def signature_keys(prefill_len):
    return [PREFILL.format(prefill_len), "decode"]


def metadata(config, max_seq_len):
    """The LlmMetadata bytes: stop token, max_num_tokens, generic model, greedy TOP_P sampler."""
    from litert_lm_builder.runtime.proto import llm_metadata_pb2, llm_model_type_pb2, sampler_params_pb2

    from tfgpt2.export.contract import special_tokens

    md = llm_metadata_pb2.LlmMetadata()
    eos = special_tokens(config)[0]["eos_token_id"]
    if eos is not None:
        md.stop_tokens.add().token_ids.ids.append(eos)
    md.max_num_tokens = max_seq_len
    md.llm_model_type.CopyFrom(llm_model_type_pb2.LlmModelType(generic_model=llm_model_type_pb2.GenericModel()))
    md.sampler_params.type = sampler_params_pb2.SamplerParameters.TOP_P
    md.sampler_params.k, md.sampler_params.p, md.sampler_params.temperature = 1, 1.0, 1.0
    return md.SerializeToString()


def write_packing_inputs(directory, config, max_seq_len, prefill_len):
    """Beside an archive: lm.json (signature keys, lengths), tokenizer.json and llm_metadata.pb."""
    from tfgpt2.export.hf_tokenizer import write_tokenizer_json

    with open(os.path.join(directory, "lm.json"), "w", encoding="utf-8") as f:
        json.dump({"signature_keys": signature_keys(prefill_len), "max_seq_len": max_seq_len,
                   "prefill_len": prefill_len}, f)
    write_tokenizer_json(directory)
    with open(os.path.join(directory, "llm_metadata.pb"), "wb") as f:
        f.write(metadata(config, max_seq_len))


def read_packing_inputs(directory):
    with open(os.path.join(directory, "lm.json"), encoding="utf-8") as f:
        return json.load(f)


def pack(tflite_path, inputs, out_path):
    """Writes the .litertlm: the model (prefill/decode, float32 activations), the HF tokenizer and the
    LlmMetadata from the `inputs` directory (write_packing_inputs)."""
    from litert_lm_builder import litertlm_builder as lb

    builder = lb.LitertLmFileBuilder()
    builder.add_system_metadata(lb.Metadata(key="Authors", value="tfgpt2", dtype=lb.DType.STRING))
    # float32 activations: LiteRT-LM's default for a text decoder is float16, which is not the model's numerics
    builder.add_tflite_model(tflite_path, lb.TfLiteModelType.PREFILL_DECODE, prefer_activation_type="fp32")
    builder.add_hf_tokenizer(os.path.join(inputs, "tokenizer.json"))
    builder.add_llm_metadata(os.path.join(inputs, "llm_metadata.pb"))
    with open(out_path + ".partial", "wb") as f:
        builder.build(f)
    os.replace(out_path + ".partial", out_path)
