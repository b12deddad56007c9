"""Store the tied GPT-2 embedding once in a quantized .tflite.

With dynamic-range int8 the converter quantizes `wte` twice: per-tensor for the embedding GATHER
and per-channel for the LM head's FULLY_CONNECTED — 2 × vocab × n_embd bytes (77 MB at 124M
shapes; the int8 file was 0.34× fp32). This pass points the head at the GATHER's int8 tensor
(the hybrid FULLY_CONNECTED kernel takes per-tensor int8 weights) and empties the orphaned buffer.
It only rewires tensors whose dequantized values agree within one quantization step, i.e. copies
of the same float matrix; anything else is left untouched.
"""

import numpy as np

GATHER, FULLY_CONNECTED = 36, 9


def _const_int8(model, graph, index):
    """(int8 array, scales, tensor) if `index` is an int8 constant of rank 2, else None."""
    if index < 0:
        return None
    t = graph.tensors[index]
    data = model.buffers[t.buffer].data
    q = t.quantization
    if data is None or len(t.shape) != 2 or t.type != 9 or q is None or q.scale is None:  # 9 = INT8
        return None
    values = np.frombuffer(bytes(data), np.int8).reshape(tuple(t.shape))
    return values, np.asarray(q.scale, np.float32), t


def _dequantized(values, scales, tensor):
    if scales.size == 1:
        return values.astype(np.float32) * scales[0]
    axis = tensor.quantization.quantizedDimension
    shape = [1, 1]
    shape[axis] = -1
    return values.astype(np.float32) * scales.reshape(shape)


def share_tied_embedding(flat):
    """`flat` with the LM head reading the embedding's int8 table; returns (bytes, bytes_saved)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flat))
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    rewired = 0
    for graph in model.subgraphs:
        tables = [op.inputs[0] for op in graph.operators if codes[op.opcodeIndex] == GATHER]
        tables = {i: c for i in tables if (c := _const_int8(model, graph, i)) is not None}
        for op in graph.operators:
            if codes[op.opcodeIndex] != FULLY_CONNECTED or len(op.inputs) < 2:
                continue
            head = _const_int8(model, graph, op.inputs[1])
            if head is None:
                continue
            for index, (values, scales, tensor) in tables.items():
                if tensor.shape.tolist() != head[2].shape.tolist() or index == op.inputs[1]:
                    continue
                step = scales.max() + head[1].max()
                if np.abs(_dequantized(values, scales, tensor) - _dequantized(*head)).max() <= step:
                    op.inputs[1] = index
                    rewired += 1
                    break
    if not rewired:
        return flat, 0
    for graph in model.subgraphs:  # tensors no op reads any more point at the empty buffer 0
        live = {i for op in graph.operators for i in (*op.inputs, *op.outputs)}
        live |= {*graph.inputs, *graph.outputs}
        for i, t in enumerate(graph.tensors):
            if i not in live:
                t.buffer = 0
    used = {t.buffer for g in model.subgraphs for t in g.tensors}
    saved = 0
    for i, buffer in enumerate(model.buffers):
        if i not in used and buffer.data is not None and len(buffer.data):
            saved += len(buffer.data)
            buffer.data = None
    out = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    return out, saved
