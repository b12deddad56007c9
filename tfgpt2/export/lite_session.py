"""A tfgpt2 .tflite driven in LiteRT's CompiledModel the way an app with persistent buffers drives it."""

import ctypes
import os
import shutil
import tempfile

import numpy as np

from tfgpt2.export.cache_host import CacheHost


def lite_session(path_or_bytes, threads=2):
    """A LiteSession on the .tflite: `.prefill(prompt)`, `.decode(token)`, `.capacity_left`."""
    return LiteSession(path_or_bytes, threads)


class LiteSession(CacheHost):
    """A CacheHost whose cache arrays are numpy views of the decode signature's own input buffers.

    Each step writes only the new token's entries there and runs, so nothing cache-sized is copied
    per token. XNNPack packs the weights into one weight-cache file that both signatures share
    (LiteRT's Interpreter packs them into anonymous memory once per signature: 3x the file's bytes
    instead of about 1.3x). The file is unlinked once the model is compiled; its mapping lives as
    long as the session.
    """

    def __init__(self, path_or_bytes, threads=2):
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.cpu_options import CpuOptions
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator
        from ai_edge_litert.options import Options

        size = os.path.getsize(path_or_bytes) if isinstance(path_or_bytes, str) else len(path_or_bytes)
        scratch = tempfile.mkdtemp(prefix="tfgpt2-xnnpack-")
        try:
            cache = os.path.join(scratch, "weights") if weight_cache_fits(size) else ""
            options = Options(hardware_accelerators=HardwareAccelerator.CPU, cpu_options=CpuOptions(
                num_threads=threads, xnnpack_weight_cache_path=cache))
            if isinstance(path_or_bytes, str):
                self.model = CompiledModel.from_file(path_or_bytes, options=options)
            else:
                self.model = CompiledModel.from_buffer(bytes(path_or_bytes), options=options)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        (run_prefill, prefill), (run_decode, decode) = (_bind(self.model, key) for key in ("prefill", "decode"))
        token = decode["token_id"]

        def prefill_step(**inputs):
            for name, value in inputs.items():
                prefill[name][...] = value
            return run_prefill()

        def decode_step(token_id, **cache):  # the cache inputs already are the decode buffers
            token[...] = token_id
            return run_decode()

        # closures, not bound methods: a cycle through the session would keep its mapped weights until gc runs
        n_layer = sum(1 for name in decode if name.startswith("k_"))
        super().__init__(prefill_step, decode_step, n_layer, int(decode["cache_mask"].shape[1]),
                         int(prefill["input_ids"].shape[1]))
        self.mask = decode["cache_mask"]
        self.k = [decode[f"k_{i}"] for i in range(n_layer)]
        self.vt = [decode[f"vt_{i}"] for i in range(n_layer)]

    def keep_cache(self, out):
        for target, name in [(self.mask, "cache_mask"), *((k, f"k_{i}") for i, k in enumerate(self.k)),
                             *((vt, f"vt_{i}") for i, vt in enumerate(self.vt))]:
            target[...] = out[name]


def _bind(model, key):
    """The signature's run() and numpy views of its input buffers by tensor name (run() returns the
    views of its outputs)."""
    index = model.get_signature_index(key)
    names = model.get_signature_by_index(index)
    inputs, outputs = model.create_input_buffers(index), model.create_output_buffers(index)
    out_views = {name: host_view(b) for name, b in zip(names["outputs"], outputs)}

    def run():
        model.run_by_index(index, inputs, outputs)
        return out_views

    return run, {name: host_view(b) for name, b in zip(names["inputs"], inputs)}


def weight_cache_fits(model_bytes):
    """Whether the temporary directory has room for XNNPack's packed weights of a model this size
    (the packed weights take about the model's bytes; a margin for the rest of the disk's users)."""
    return shutil.disk_usage(tempfile.gettempdir()).free > 1.2 * model_bytes + (1 << 30)


def host_view(buffer):
    """A numpy array on a host-memory TensorBuffer's own bytes, with its shape.

    ai_edge_litert's TensorBuffer reads and writes whole copies only; LiteRT's C API
    (LiteRtGetTensorBufferHostMemory, in the libLiteRt.so the wheel ships) gives the address. The
    view is checked against TensorBuffer.read once, so a LiteRT whose buffers are laid out otherwise
    fails here rather than computing on the wrong bytes.
    """
    details = buffer.get_tensor_details()
    dtype, shape = np.dtype(details["dtype"]), tuple(int(d) for d in details["shape"])
    address = ctypes.c_void_p()
    status = _litert().LiteRtGetTensorBufferHostMemory(ctypes.c_void_p(_capsule_pointer(buffer.capsule)),
                                                       ctypes.byref(address))
    if status != 0 or not address.value:
        raise RuntimeError(f"LiteRT gave no host address for a {details} buffer (status {status}); "
                           "install the ai-edge-litert version setup.py names")
    raw = (ctypes.c_byte * (int(np.prod(shape)) * dtype.itemsize)).from_address(address.value)
    raw.buffer = buffer  # the view keeps the buffer that owns its bytes
    view = np.frombuffer(raw, dtype).reshape(shape)
    probe = np.arange(1, view.size + 1).astype(dtype).reshape(shape)
    view[...] = probe
    if not np.array_equal(buffer.read(view.size, dtype).reshape(shape), probe):
        raise RuntimeError("LiteRT's buffer bytes are not where its C API says; install the ai-edge-litert "
                           "version setup.py names")
    view[...] = 0
    return view


def _capsule_pointer(capsule):
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return get(capsule, b"LiteRtTensorBuffer")


_LIB = []


def _litert():
    if not _LIB:
        import ai_edge_litert

        _LIB.append(ctypes.CDLL(os.path.join(os.path.dirname(ai_edge_litert.__file__), "libLiteRt.so")))
    return _LIB[0]
