"""LiteRT files whose weights tfgpt2 writes: the converter sees the graph with its weights as inputs.

The TF converter copies every constant several times (frozen graph, MLIR module, flatbuffer), so
converting a graph that holds the weights needs ~5x their bytes: gpt2-xl would not convert in 24 GB.
The bound recipes (fp32, int8, int4) convert a graph whose large matrices (each FULLY_CONNECTED
weight and the embedding table) are graph inputs, traced from a stand-in model whose large variables
are never allocated (lazy_weights.uninitialized_variables). `bind` then turns each such input into a
constant: it encodes the checkpoint's tensor (float32, int8 with one scale per output row, or int4
with one scale per output row, ai-edge-quantizer's min-max rule), streams it after the flatbuffer
(LiteRT's buffer offsets) and drops the input from the signatures. Peak memory is one tensor plus the
weightless graph at any model size; the file is what the converter's own quantization writes (FC
weights per output channel, the tied table int8 once, read by the lookup and the head).
"""

import dataclasses
import json
import os
import shutil

import numpy as np

from tfgpt2.errors import ExportError

FULLY_CONNECTED, GATHER = 9, 36
ALIGN = 64  # each weight's offset in the file: XNNPACK reads them in place
INT8_FC_VERSION = 12  # what the converter writes for a per-channel hybrid FULLY_CONNECTED


@dataclasses.dataclass(frozen=True)
class Weight:
    """One graph input the binder turns into a constant."""

    name: str  # the input's name in every signature
    key: str  # its checkpoint tensor (PyTorch layout, transformers' key)
    role: str  # "fc" (a FULLY_CONNECTED weight), "table" (float wte), "rows" / "scales" / "head" (int8 wte)
    shape: tuple
    columns: tuple = None  # fc: (start, stop) of the checkpoint's (in, out) columns it holds


def weights_of(model, table):
    """The inputs of a bound graph of `model`: per layer the FULLY_CONNECTED weights as the export graph
    reads them (c_attn / c_fc per weight block, c_proj merged: see Attention.call / MLP.call), then the
    embedding: `table` "float" (wte, read by the lookup and the head) or "int8" (rows, scales, head)."""
    from tfgpt2.weights import conv1d_layers

    out = []
    for prefix, layer in conv1d_layers(model):
        merged = prefix.endswith("c_proj")
        fan_in, n = int(layer.kernels[0].shape[1]), 1 if merged else layer.num_blocks
        rows = layer.units // n
        name = prefix[len("transformer.h."):].replace(".", "_")  # 0_attn_c_attn
        for j in range(n):
            out.append(Weight(f"w_h{name}_{j}", prefix + ".weight", "fc", (rows, fan_in), (j * rows, (j + 1) * rows)))
    shape = (model.config.vocab_size, model.config.n_embd)
    key = "transformer.wte.weight"
    if table == "float":
        return out + [Weight("w_wte", key, "table", shape)]
    return out + [Weight("w_wte_rows", key, "rows", shape), Weight("w_wte_scales", key, "scales", shape[:1]),
                  Weight("w_wte_head", key, "head", shape)]


class WeightInputs:
    """What a bound graph reads instead of the model's large variables: `specs()` for the signatures,
    `reading(tensors)` around the traced call, `table` for the Decoder (lookup and tied head)."""

    def __init__(self, model, table="float"):
        from tfgpt2.weights import conv1d_layers, large_variables

        self.model, self.kind = model, table
        self.weights = weights_of(model, table)
        self.table = InputTable(table)
        names = {}
        for w in self.weights:
            if w.role == "fc":
                names.setdefault(w.key, []).append(w.name)
        self._kernels = [(layer, names[prefix + ".weight"]) for prefix, layer in conv1d_layers(model)]
        large = {id(v) for v in large_variables(model)}
        self._small = [(v, v.numpy()) for v in model.variables if id(v) not in large]  # read as constants

    def specs(self):
        import tensorflow as tf

        return [tf.TensorSpec(w.shape, tf.int8 if w.role == "rows" else tf.float32, w.name) for w in self.weights]

    def reading(self, tensors):
        """Context: the Conv1D layers and the table read `tensors` (in `specs()` order); every other
        variable is read as a constant of its value, so the traced graph captures no variable."""
        import contextlib

        import keras
        import tensorflow as tf

        @contextlib.contextmanager
        def scope():
            named = dict(zip((w.name for w in self.weights), tensors))
            try:
                for layer, names in self._kernels:
                    layer.export_kernels = [named[n] for n in names]
                self.table.tensors = {w.role: named[w.name] for w in self.weights if w.role != "fc"}
                with keras.StatelessScope(state_mapping=[(v, tf.constant(x)) for v, x in self._small]):
                    yield
            finally:
                for layer, _ in self._kernels:
                    layer.export_kernels = None
                self.table.tensors = None

        return scope()


class InputTable:
    """The embedding lookup and the tied head over input tensors (`tensors`, set while tracing)."""

    def __init__(self, kind):
        self.kind, self.tensors = kind, None

    def lookup(self, ids):
        import tensorflow as tf

        if self.kind == "float":
            return tf.gather(self.tensors["table"], ids)  # (B, T, C)
        rows = tf.cast(tf.gather(self.tensors["rows"], ids), tf.float32)  # (B, T, C)
        return rows * tf.gather(self.tensors["scales"], ids)[..., None]  # (B, T, C)

    def logits(self, hidden):
        import tensorflow as tf

        head = self.tensors["table" if self.kind == "float" else "head"]
        return tf.matmul(tf.cast(hidden, tf.float32), head, transpose_b=True)  # (..., V)


# ------------------------------------------------------------------ the stand-in and its graph
TABLES = {"fp32": "float", "int8": "int8", "int4": "int8"}  # the graph each bound recipe binds


def stand_in(src):
    """A TFGPT2LMHeadModel of `src`'s shape whose small weights (biases, layer norms, wpe) are loaded and
    whose large ones (the WeightInputs) are never allocated."""
    from tfgpt2 import TFGPT2LMHeadModel
    from tfgpt2.export.source import source_config, weight_state
    from tfgpt2.layers import HFKernel
    from tfgpt2.lazy_weights import uninitialized_variables
    from tfgpt2.weights import large_variables, model_weights

    with uninitialized_variables() as pending:
        model = TFGPT2LMHeadModel(source_config(src))
    state = weight_state(src)
    assigned = []
    for key, (variable, transpose) in model_weights(model).items():
        if isinstance(variable, HFKernel) or key == "transformer.wte.weight" or key not in state:
            continue
        value = state[key]
        variable.assign((value.T if transpose else value).astype("float32"))
        assigned.append(variable)
    pending.initialize(skip=large_variables(model) + assigned)
    return model


def with_weight_inputs(functions, inputs):
    """{name: tf.function}: each (fn, specs) of `functions` taking `inputs`' tensors after its own."""
    import tensorflow as tf

    out = {}
    for name, (fn, specs) in functions.items():
        def run(*args, fn=fn, n=len(specs)):
            with inputs.reading(args[n:]):
                return fn(*args[:n])

        out[name] = tf.function(run, input_signature=[*specs, *inputs.specs()])
    return out


def write_archive(src, directory, table, layout, max_seq_len, prefill_len):
    """The SavedModel the converter reads for the bound recipes of `table` ("float" / "int8") in `layout`
    ("tflite": tflite.LiteGPT2's signatures, "litertlm": litertlm.LmGPT2's), and weights.json (the
    inputs to bind). It holds no variable: exporting fails if a traced function captures one."""
    import tensorflow as tf

    from tfgpt2.export import litertlm, tflite

    model = stand_in(src)
    inputs = WeightInputs(model, table)
    if layout == "litertlm":
        functions = litertlm.LmGPT2(model, max_seq_len, prefill_len, table=inputs.table).signatures
    else:
        module = tflite.LiteGPT2(model, max_seq_len, prefill_len, table=inputs.table)
        functions = {n: (getattr(module, n).python_function, getattr(module, n).input_signature)
                     for n in ("prefill", "decode")}
    signatures = {n: f.get_concrete_function() for n, f in with_weight_inputs(functions, inputs).items()}
    tf.saved_model.save(tf.Module(), directory, signatures=signatures)
    with open(os.path.join(directory, WEIGHTS), "w", encoding="utf-8") as f:
        json.dump([dataclasses.asdict(w) for w in inputs.weights], f)


def read_weights(directory):
    with open(os.path.join(directory, WEIGHTS), encoding="utf-8") as f:
        return [Weight(**{k: tuple(v) if isinstance(v, list) else v for k, v in w.items()}) for w in json.load(f)]


WEIGHTS = "weights.json"


# ------------------------------------------------------------------ binding
def encode(weight, state, recipe, cache):
    """(bytes as a numpy array, TFLite tensor type, per-row scales or None) of one weight for `recipe`.
    `cache` keeps the int8 table (its rows, scales and head are three inputs) and the last tensor read
    (the blocks of one layer come from one checkpoint tensor)."""
    if weight.role in ("rows", "scales", "head"):
        if "table" not in cache:
            cache["table"] = _int8_table(state[weight.key])
        q, scale = cache["table"]
        return {"rows": (q, 9, None), "scales": (scale, 0, None), "head": (q, 9, scale)}[weight.role]  # 9 = INT8
    if cache.get("key") != weight.key:
        cache["key"], cache["value"] = weight.key, state[weight.key]
    value = cache["value"]  # (V, C) table, or an fc's (in, out) checkpoint weight
    if weight.role == "fc":
        value = np.ascontiguousarray(value[:, weight.columns[0]:weight.columns[1]].T)  # (out, in)
    if recipe == "fp32":
        return value.astype(np.float32), 0, None  # 0 = FLOAT32
    if recipe == "int8":
        return _int8(value)
    return _int4_rows(value)


def _int8(value):
    q, scale = _int8_table(value)
    return q, 9, scale


def _int8_table(w, chunk=8192):
    """quantization.int8_rows of a (rows, C) matrix, a chunk of rows at a time (its TF temporaries
    would otherwise be several copies of a 321 MB gpt2-xl table)."""
    from tfgpt2 import quantization

    q, scale = np.empty(w.shape, np.int8), np.empty(w.shape[:1], np.float32)
    for start in range(0, w.shape[0], chunk):
        part_q, part_scale = quantization.int8_rows(w[start:start + chunk])
        q[start:start + chunk], scale[start:start + chunk] = part_q.numpy(), part_scale.numpy()
    return q, scale


def _int4_rows(value):
    """Channelwise symmetric int4 (ai-edge-quantizer's min-max rule: scale = max |w| / 7 per output
    row), two values per byte, low nibble first."""
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.algorithms.uniform_quantize import uniform_quantize_tensor as uqt
    from ai_edge_quantizer.transformations import transformation_utils

    _, scale = uqt.tensor_zp_scale_from_min_max(value.min(1, keepdims=True), value.max(1, keepdims=True), 4, True,
                                                qtyping.QuantGranularity.CHANNELWISE)
    q = np.clip(np.rint(value / scale), -8, 7).astype(np.int8)
    return transformation_utils.pack_data(4, q), 17, scale.reshape(-1).astype(np.float32)  # 17 = INT4


def bind(flat, weights, state, recipe, out_path):
    """Writes `out_path`: the converted weightless flatbuffer `flat` with every Weight input made a
    constant from `state`, its data after the flatbuffer. Returns the file's size."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flat))
    by_name = {w.name: w for w in weights}
    uses = _bound_inputs(model, by_name)
    data_path = out_path + ".data"
    slots, cache = {}, {}  # data slot ("rows" for the table's int8 bytes, else the weight) -> buffer index
    with open(data_path, "wb") as data:
        for weight in weights:
            if weight.name not in uses:
                continue
            value, kind, scale = encode(weight, state, recipe, cache)
            slot = "rows" if weight.role in ("rows", "head") else weight.name
            if slot not in slots:
                data.write(b"\0" * (-data.tell() % ALIGN))
                buffer = schema.BufferT()
                buffer.offset, buffer.size = data.tell() + 1, value.nbytes  # + 1: never the default 0 (see below)
                data.write(np.ascontiguousarray(value).tobytes())
                model.buffers.append(buffer)
                slots[slot] = len(model.buffers) - 1
            for graph, tensor in uses[weight.name]:
                _make_constant(model, graph, tensor, slots[slot], kind, scale)
            del value
    _mark_external(model, schema)
    # offsets count from the file's start; the data goes after the flatbuffer, whose size does not
    # depend on the offsets' values (fixed-width fields, all present)
    base = -(-len(flatbuffer_utils.convert_object_to_bytearray(model)) // ALIGN) * ALIGN
    for index in slots.values():
        model.buffers[index].offset += base - 1
    header = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    if len(header) > base:
        raise ExportError(f"the bound flatbuffer grew to {len(header)} bytes, past its data offset {base}")
    with open(out_path, "wb") as out, open(data_path, "rb") as data:
        out.write(header + b"\0" * (base - len(header)))
        shutil.copyfileobj(data, out, 16 << 20)
    os.remove(data_path)
    return os.path.getsize(out_path)


def _bound_inputs(model, by_name):
    """{weight name: [(subgraph, tensor index)]}, each input removed from its subgraph's inputs and
    signature; ExportError when an input feeds anything but what its role allows."""
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    allowed = {"fc": {(FULLY_CONNECTED, 1)}, "head": {(FULLY_CONNECTED, 1)}, "rows": {(GATHER, 0)},
               "scales": {(GATHER, 0)}, "table": {(FULLY_CONNECTED, 1), (GATHER, 0)}}
    uses = {}
    for signature in model.signatureDefs:
        graph = model.subgraphs[signature.subgraphIndex]
        kept = []
        for item in signature.inputs:
            name = item.name.decode() if isinstance(item.name, bytes) else item.name
            if name not in by_name:
                kept.append(item)
                continue
            index = item.tensorIndex
            readers = {(codes[op.opcodeIndex], list(op.inputs).index(index))
                       for op in graph.operators if index in op.inputs}
            if not readers <= allowed[by_name[name].role]:
                raise ExportError(f"the converted graph reads weight input {name} through {sorted(readers)}; "
                                  "bound.py can only bind FULLY_CONNECTED weights and GATHER tables")
            uses.setdefault(name, []).append((graph, index))
            graph.inputs = [i for i in graph.inputs if i != index]
        signature.inputs = kept
    return uses


def _make_constant(model, graph, index, buffer, kind, scale):
    from tensorflow.lite.python import schema_py_generated as schema

    tensor = graph.tensors[index]
    tensor.buffer, tensor.type = buffer, kind
    if scale is not None:
        q = schema.QuantizationParametersT()
        q.scale, q.zeroPoint, q.quantizedDimension = scale.tolist(), [0] * scale.size, 0
        tensor.quantization = q
        for op in graph.operators:
            if op.inputs is not None and len(op.inputs) > 1 and op.inputs[1] == index and kind == 9:
                op.builtinOptions.asymmetricQuantizeInputs = True
                op.opcodeIndex = _opcode(model, FULLY_CONNECTED, INT8_FC_VERSION)


def _opcode(model, builtin, version):
    from tensorflow.lite.python import schema_py_generated as schema

    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin and code.version == version:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), version
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _mark_external(model, schema):
    """The metadata entry the converter writes when weights follow the flatbuffer."""
    names = [m.name.decode() if isinstance(m.name, bytes) else m.name for m in (model.metadata or [])]
    if "buffer_location" in names:
        return
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(b"outside flatbuffers", np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = "buffer_location", len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
