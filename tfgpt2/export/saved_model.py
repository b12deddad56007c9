"""Build a TF Serving SavedModel: logits, generate, and cache-in/cache-out prefill/decode.

Signatures (all stateless, any number of rows B; ids are int32, the cache is one tensor):
- `serving_default(input_ids, attention_mask) -> logits (B, T, V)`
- `generate(input_ids, attention_mask, max_new_tokens, temperature, top_k, top_p,
  repetition_penalty, seed, eos_token_id) -> sequences (B, max max_new_tokens), num_generated (B,)`
  (temperature 0 = greedy, top_k 0 / top_p 1 = off, eos_token_id -1 = none); each setting is a
  scalar for the whole request or one value per row (B,), the form TF Serving's batcher merges
- `generate_xla`: the same, its loops compiled by XLA (TF Serving's --xla_cpu_compilation_enabled)
- `prefill(input_ids, attention_mask, max_new_tokens) -> logits (B, V), key_values, cache_mask, cache_index`
- `decode(token_ids, key_values, cache_mask, cache_index) -> logits (B, V), key_values, cache_mask, cache_index`
`key_values` is `(n_layer, 2, B, n_head, capacity, head_dim)` float32, `capacity = T + max_new_tokens`.
Bad ids or lengths fail the request with InvalidArgument (graph asserts), never a silent gather.
Warm-up requests for TF Serving go to `assets.extra/tf_serving_warmup_requests`.
"""

import functools
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from tfgpt2 import cache as kv_cache
from tfgpt2.cache import KVCache
from tfgpt2.generation import DecodeConfig, Decoder, heads

IDS = tf.TensorSpec([None, None], tf.int32, "input_ids")
MASK = tf.TensorSpec([None, None], tf.int32, "attention_mask")
SCALAR_I = lambda name: tf.TensorSpec([], tf.int32, name)  # noqa: E731
SCALAR_F = lambda name: tf.TensorSpec([], tf.float32, name)  # noqa: E731
SETTING = lambda dtype, name: tf.TensorSpec(None, dtype, name)  # noqa: E731 - a scalar or one per row (B,)


SIGNATURES = ("serving_default", "generate", "generate_xla", "prefill", "decode")
GENERATE_SETTINGS = {"max_new_tokens": tf.int32, "temperature": tf.float32, "top_k": tf.int32, "top_p": tf.float32,
                     "repetition_penalty": tf.float32, "seed": tf.int64, "eos_token_id": tf.int32}


def _function(fn, **kwargs):
    """tf.function without autograph: the serving code has no Python control flow on tensors, and
    converting the whole decoder made tracing (and every export) several times slower."""
    return tf.function(fn, autograph=False, **kwargs)


class GPT2Serving(tf.Module):
    """The exported module; `max_new_tokens_cap` bounds the decode loop of `generate`."""

    def __init__(self, model, max_new_tokens_cap=128, signatures=True):
        super().__init__()
        # the Keras model is no checkpoint dependency (set past tf.Module's tracking): as one, every weight
        # was saved twice, under model/... and weights/...
        object.__setattr__(self, "model", model)
        # the raw tf.Variables as direct dependencies: without them the TF1 session loader (TF Serving,
        # saved_model_cli run) finds no restored variable behind the signatures' captured handles
        self.weights = [v.value for v in model.variables]
        self.cfg = model.config
        self.cap = min(max_new_tokens_cap, self.cfg.n_positions - 1)
        self.decoder = Decoder(model, shared_blocks=True)  # one traced block for every loop (shared_block.py)
        if not signatures:  # a subclass serving its own signatures (text_serving) traces none of these
            return
        self.serving_default = _function(self._logits, input_signature=[IDS, MASK])
        generate_inputs = [IDS, MASK] + [SETTING(dtype, name) for name, dtype in GENERATE_SETTINGS.items()]
        self.generate = _function(self._generate, input_signature=generate_inputs)
        # the same checks outside XLA (it drops Assert ops), the loops compiled inside
        # in a dict, not a tf.function attribute, which tf.saved_model.save would find, serialize and trace
        # a second time for it, though only generate_xla calls it
        object.__setattr__(self, "_inner", {"compiled_loops": _function(self._compiled, jit_compile=True)})
        self.generate_xla = _function(functools.partial(self._generate, compiled=True),
                                      input_signature=generate_inputs)
        self.prefill = _function(self._prefill, input_signature=[IDS, MASK, SCALAR_I("max_new_tokens")])
        kv = tf.TensorSpec([self.cfg.n_layer, 2, None, self.cfg.n_head, None, self.cfg.head_dim], tf.float32,
                           "key_values")
        self.decode = _function(self._decode, input_signature=[
            tf.TensorSpec([None], tf.int32, "token_ids"), kv, tf.TensorSpec([None, None], tf.int32, "cache_mask"),
            SCALAR_I("cache_index")])

    def signatures(self):
        return {name: getattr(self, name) for name in SIGNATURES}

    # ------------------------------------------------------------ checks inside the graph
    def _check(self, ids, extra_tokens=0):
        cfg = self.cfg
        return [tf.debugging.assert_non_negative(ids, message="input_ids must be >= 0"),
                tf.debugging.assert_less(ids, cfg.vocab_size, message=f"input_ids must be < {cfg.vocab_size}"),
                tf.debugging.assert_less_equal(tf.shape(ids)[1] + extra_tokens, cfg.n_positions,
                                               message=f"prompt + max_new_tokens must be <= {cfg.n_positions}")]

    def _weights_read_once(self):
        """Every weight read once per request, not once per step inside a loop nor once per forward pass:
        the model's variables map to one read each (keras.StatelessScope), which SharedBlock then passes on."""
        return keras.StatelessScope(state_mapping=[(v, tf.convert_to_tensor(v.value)) for v in self.model.variables])

    # ------------------------------------------------------------ signatures
    def _logits(self, input_ids, attention_mask):
        with tf.control_dependencies(self._check(input_ids)), self._weights_read_once():
            mask = tf.cast(attention_mask > 0, tf.int32)
            positions = kv_cache.new_positions(tf.zeros_like(mask), mask)  # left padding is inert, as in generate
            transformer = self.model.transformer
            hidden = transformer(input_ids, attention_mask=mask, position_ids=positions, shared_blocks=True)[0]
            return {"logits": transformer.lm_logits(hidden)}  # (B, T, V)

    def _generate(self, input_ids, attention_mask, max_new_tokens, temperature, top_k, top_p,
                  repetition_penalty, seed, eos_token_id, compiled=False):
        batch = tf.shape(input_ids)[0]
        given = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                     repetition_penalty=repetition_penalty, seed=seed, eos_token_id=eos_token_id)
        checks = [tf.debugging.assert_equal(
            tf.logical_and(tf.rank(value) <= 1, tf.logical_or(tf.size(value) == 1, tf.size(value) == batch)), True,
            message=f"{name} must be a scalar or one value per row of input_ids") for name, value in given.items()]
        with tf.control_dependencies(checks):
            rows = {name: tf.broadcast_to(tf.reshape(value, [-1]), [batch]) for name, value in given.items()}  # (B,)
        max_new_tokens, temperature, top_p, penalty = (rows[k] for k in ("max_new_tokens", "temperature", "top_p",
                                                                         "repetition_penalty"))
        checks = self._check(input_ids, max_new_tokens) + [
            tf.debugging.assert_positive(max_new_tokens, message="max_new_tokens must be >= 1"),
            tf.debugging.assert_less_equal(max_new_tokens, self.cap,
                                           message=f"max_new_tokens must be <= {self.cap} in this export"),
            tf.debugging.assert_greater(top_p, 0.0, message="top_p must be in (0, 1]"),
            tf.debugging.assert_less_equal(top_p, 1.0, message="top_p must be in (0, 1]"),
            tf.debugging.assert_non_negative(temperature, message="temperature must be >= 0 (0 = greedy)"),
            tf.debugging.assert_positive(penalty, message="repetition_penalty must be > 0")]
        with tf.control_dependencies(checks):
            eos = rows["eos_token_id"]
            # a scalar seed numbers the rows' noise as model.generate does; a seed per row draws each row
            # as a one-row request would, wherever the batcher put it
            noise_rows = tf.range(batch) * tf.cast(tf.rank(seed) == 0, tf.int32)
            params = dict(rows, max_new_tokens=tf.identity(max_new_tokens), min_new_tokens=0,
                          eos_token_id=eos[:, None], pad_token_id=tf.maximum(eos, 0), noise_rows=noise_rows)
            if compiled:
                tokens, lengths = self._inner["compiled_loops"](input_ids, attention_mask, params)
            else:
                with self._weights_read_once():
                    tokens, lengths = self._loops(input_ids, attention_mask, params, screen=False)
        return {"sequences": tokens[:, :tf.reduce_max(max_new_tokens)], "num_generated": lengths}

    def _compiled(self, input_ids, attention_mask, params):
        with self._weights_read_once():
            return self._loops(input_ids, attention_mask, params, screen=True)

    def _loops(self, input_ids, attention_mask, params, screen):
        """The decode loop a request needs, chosen at run time: plain greedy skips the sampling machinery,
        and with `screen` (XLA only: without it the int8 -> fp32 convert is a full fp32 copy of wte every
        step) small greedy batches pick tokens through the int8-screened head."""
        plain = tf.logical_and(params["temperature"] <= 0.0, tf.equal(params["repetition_penalty"], 1.0))  # (B,)
        greedy = tf.reduce_all(plain)

        def loop(**choice):
            tokens, lengths, _ = self.decoder.run_loop(
                DecodeConfig(**{"num_steps": self.cap, "head": "fp32", **choice}), input_ids, attention_mask, params)
            return tokens, lengths

        greedy_loop = loop
        if screen and heads.screen_applies(DecodeConfig(), 1, self.model.transformer):
            small = tf.shape(input_ids)[0] <= heads.SCREEN_MAX_BATCH
            greedy_loop = lambda: tf.cond(small, lambda: loop(head="screened"), loop)  # noqa: E731
        return tf.cond(greedy, greedy_loop, lambda: loop(dynamic=True))

    def _prefill(self, input_ids, attention_mask, max_new_tokens):
        with tf.control_dependencies(self._check(input_ids, max_new_tokens)), self._weights_read_once():
            capacity = tf.shape(input_ids)[1] + max_new_tokens
            cache = self.decoder.empty_cache(tf.shape(input_ids)[0], capacity)
            logits, cache = self.decoder.prefill(input_ids, attention_mask, cache)
        return self._cache_out(logits, cache)

    def _decode(self, token_ids, key_values, cache_mask, cache_index):
        checks = [tf.debugging.assert_non_negative(token_ids), tf.debugging.assert_less(token_ids, self.cfg.vocab_size),
                  tf.debugging.assert_less(cache_index, tf.shape(cache_mask)[1], message="the cache is full")]
        with tf.control_dependencies(checks), self._weights_read_once():
            cache = KVCache(tuple(tf.unstack(key_values)), cache_mask, cache_index)
            logits, cache = self.decoder.step(token_ids, cache)
        return self._cache_out(logits, cache)

    @staticmethod
    def _cache_out(logits, cache):
        return {"logits": logits, "key_values": tf.stack(cache.layers), "cache_mask": cache.mask,
                "cache_index": cache.index}


def build(model, export_dir, max_new_tokens_cap=128, warmup=True):
    """Writes the SavedModel to `export_dir` (a TF Serving version dir, e.g. .../saved_model/1)."""
    module = GPT2Serving(model, max_new_tokens_cap)
    tf.saved_model.save(module, export_dir, signatures=module.signatures())
    if warmup:
        write_warmup(export_dir, model.config)
    return module


def build_from_checkpoint(src, export_dir, group_bytes=64 << 20, **build_args):
    """build() for an HF checkpoint without ever holding its weights: the module is traced and saved from a
    stand-in whose large variables were never written (bound.stand_in; the saved checkpoint holds zeros for
    them), then the checkpoint is written again from `src`, `group_bytes` of tensors at a time, each group a
    shard that TF's MergeV2Checkpoints joins into variables/variables (what every TF loader reads). A tensor
    larger than a group (the embedding) is written as row slices, which every TF loader reads back whole."""
    from tfgpt2.export import bound
    from tfgpt2.export.source import weight_state

    model = bound.stand_in(src)
    module = build(model, export_dir, **build_args)
    values = _checkpoint_values(model, weight_state(src))
    prefix = os.path.join(export_dir, "variables", "variables")
    reader = tf.train.load_checkpoint(prefix)
    groups, size = [[]], 0
    for entry in _checkpoint_entries(module, reader, values, group_bytes):
        size += entry[3]
        if size > group_bytes and groups[-1]:
            groups.append([])
            size = entry[3]
        groups[-1].append(entry)
    parts = os.path.join(export_dir, "variables", ".parts")
    prefixes = []
    for g, entries in enumerate(groups):
        prefixes.append(os.path.join(parts, f"part_{g}"))
        tf.raw_ops.SaveV2(prefix=prefixes[-1], tensor_names=[e[0] for e in entries],
                          shape_and_slices=[e[1] for e in entries], tensors=[e[2]() for e in entries])
    for name in os.listdir(os.path.dirname(prefix)):
        if name.startswith("variables."):
            os.remove(os.path.join(os.path.dirname(prefix), name))
    tf.raw_ops.MergeV2Checkpoints(checkpoint_prefixes=prefixes, destination_prefix=prefix, delete_old_dirs=True)
    shutil.rmtree(parts, ignore_errors=True)
    return model


def _checkpoint_entries(module, reader, values, group_bytes):
    """(name, shape_and_slice, () -> value, bytes) for SaveV2: every tensor of the saved checkpoint, those
    over `group_bytes` as row slices ("d0 d1 start,length:-")."""
    for name, shape in sorted(reader.get_variable_to_shape_map().items()):
        if name == "_CHECKPOINTABLE_OBJECT_GRAPH":
            yield name, "", lambda name=name: tf.constant(reader.get_tensor(name)), 0
            continue
        read, row_bytes = values[id(_variable(module, name))], 4 * int(np.prod(shape[1:]))
        if not shape or row_bytes * shape[0] <= group_bytes:
            yield name, "", lambda read=read: read(slice(None)), row_bytes * (shape[0] if shape else 1)
            continue
        step = max(1, group_bytes // row_bytes)
        for first in range(0, shape[0], step):
            rows = slice(first, min(first + step, shape[0]))
            spec = " ".join(map(str, shape)) + f" {first},{rows.stop - first}" + ":-" * (len(shape) - 1)
            yield name, spec, lambda read=read, rows=rows: read(rows), row_bytes * (rows.stop - first)


def _checkpoint_values(model, state):
    """{id(tf.Variable): rows (a slice) -> those rows of its value}: the large weights read from the
    checkpoint `state` (Conv1D blocks as (out / blocks, in), wte), every other variable its own value."""
    from tfgpt2.lazy_weights import read_slice
    from tfgpt2.weights import conv1d_layers

    values = {id(v.value): (lambda rows, v=v: v.numpy()[rows] if v.shape else v.numpy()) for v in model.variables}
    values[id(model.transformer.wte.embeddings.value)] = lambda rows: read_slice(state, "transformer.wte.weight",
                                                                                 (rows,))
    for prefix, layer in conv1d_layers(model):
        size = layer.units // len(layer.kernels)
        for j, kernel in enumerate(layer.kernels):  # the checkpoint's weight is (in, out)
            def read(rows, key=prefix + ".weight", first=j * size, size=size):
                columns = slice(first + (rows.start or 0), first + (size if rows.stop is None else rows.stop))
                return np.ascontiguousarray(read_slice(state, key, (slice(None), columns)).T)
            values[id(kernel.value)] = read
    return values


def _variable(root, key):
    """The tf.Variable a checkpoint key names: `model/transformer/h/0/.../.ATTRIBUTES/VARIABLE_VALUE`."""
    obj = root
    for part in key.split("/.ATTRIBUTES/")[0].split("/"):
        obj = obj[int(part)] if isinstance(obj, (list, tuple)) else getattr(obj, part)
    return obj if isinstance(obj, tf.Variable) else obj.value  # a Keras variable holds its tf.Variable


def build_recipe(src, recipe, export_dir):
    """Writes the SavedModel of one recipe from `src` (an HF checkpoint or .keras file): fp32 as the model
    is (an HF checkpoint streamed: build_from_checkpoint), int8 / int4 after model.quantize(recipe).
    Returns its model.json / report entry."""
    from tfgpt2.export.source import is_keras_file, load_model

    start = time.time()
    if recipe == "fp32" and not is_keras_file(src):
        build_from_checkpoint(src, export_dir)
    else:
        model = load_model(src)
        if recipe != "fp32":
            model.quantize(recipe)
        build(model, export_dir)
    return {"signatures": sorted(SIGNATURES), "bytes": directory_bytes(export_dir), "seconds": time.time() - start}


def directory_bytes(path):
    return sum(os.path.getsize(os.path.join(root, n)) for root, _, names in os.walk(path) for n in names)


def fidelity(model, export_dir, held_out):
    """The fidelity dict of a SavedModel's serving_default logits against `model` (float Keras) on held-out
    blocks (N, T) of ids (export/fidelity.py)."""
    from tfgpt2.export import fidelity as measure

    fn = tf.saved_model.load(export_dir).signatures["serving_default"]
    pairs = []
    for row in np.asarray(held_out, np.int32):
        ids = tf.constant(row[None])
        ours = fn(input_ids=ids, attention_mask=tf.ones_like(ids))["logits"].numpy()[0]
        ref = np.asarray(model(row[None]).logits)[0]
        pairs.append((ours[:-1], ref[:-1], row[1:]))
    return measure.compare(pairs)


def warmup_inputs(config):
    """One small request per signature; decode's cache comes from a 4-token prefill."""
    ids = tf.constant([[config.eos_token_id % config.vocab_size] * 4], tf.int32)
    mask = tf.ones_like(ids)
    shape = [config.n_layer, 2, 1, config.n_head, 8, config.head_dim]
    return {
        "serving_default": {"input_ids": ids, "attention_mask": mask},
        "generate": {"input_ids": ids, "attention_mask": mask, "max_new_tokens": tf.constant(4),
                     "temperature": tf.constant(0.0), "top_k": tf.constant(0), "top_p": tf.constant(1.0),
                     "repetition_penalty": tf.constant(1.0), "seed": tf.constant(0, tf.int64),
                     "eos_token_id": tf.constant(-1)},
        "prefill": {"input_ids": ids, "attention_mask": mask, "max_new_tokens": tf.constant(4)},
        "decode": {"token_ids": tf.constant([0]), "key_values": tf.zeros(shape),
                   "cache_mask": tf.constant([[1, 1, 1, 1, 0, 0, 0, 0]]), "cache_index": tf.constant(4)},
    }


def write_warmup(export_dir, config):
    """assets.extra/tf_serving_warmup_requests: one PredictionLog per signature (TFRecord)."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path = os.path.join(export_dir, "assets.extra")
    os.makedirs(path, exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(path, "tf_serving_warmup_requests")) as writer:
        for signature, inputs in warmup_inputs(config).items():
            request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(signature_name=signature))
            for name, value in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
