"""Verify an export: each .tflite in the LiteRT interpreter, each ONNX graph in ONNX Runtime; sizes; decode speed."""

import os
import time

import numpy as np

from tfgpt2.export import contract
from tfgpt2.export.cache_host import CacheHost


def lite_runners(path_or_bytes, threads=2):
    from ai_edge_litert.interpreter import Interpreter

    kw = {"model_path": path_or_bytes} if isinstance(path_or_bytes, str) else {"model_content": path_or_bytes}
    it = Interpreter(num_threads=threads, **kw)
    return it, it.get_signature_runner("prefill"), it.get_signature_runner("decode")


def lite_session(path_or_bytes, threads=2):
    """A LiteSession on the .tflite: `.prefill(prompt)`, `.decode(token)`, `.capacity_left`."""
    return LiteSession(path_or_bytes, threads)


class LiteSession(CacheHost):
    """Drives a tfgpt2 .tflite in LiteRT the way an app with persistent buffers would.

    A CacheHost whose cache arrays are numpy views of the decode signature's own input
    tensors: each step writes only the new token's entries there and invokes, so nothing
    cache-sized is copied per token (passing the cache through the Python signature runner costs
    a copy of it per token).
    """

    def __init__(self, path_or_bytes, threads=2):
        self.interpreter, prefill, decode = lite_runners(path_or_bytes, threads)
        inputs = decode.get_input_details()
        n_layer = sum(1 for name in inputs if name.startswith("k_"))
        super().__init__(prefill, self._invoke, n_layer, int(inputs["cache_mask"]["shape"][1]),
                         int(prefill.get_input_details()["input_ids"]["shape"][1]))
        decode(**{name: np.zeros(d["shape"], d["dtype"]) for name, d in inputs.items()})  # allocate once
        wrapper, sub = self.interpreter._interpreter, decode._subgraph_index
        view = {name: wrapper.tensor(wrapper, index, sub) for name, index in decode._inputs.items()}
        self._token, self.mask = view["token_id"], view["cache_mask"]
        self.k = [view[f"k_{i}"] for i in range(n_layer)]
        self.vt = [view[f"vt_{i}"] for i in range(n_layer)]
        self._run = lambda: wrapper.Invoke(sub)
        self._outputs = {name: (lambda i=index: wrapper.tensor(wrapper, i, sub)) for name, index in decode._outputs}

    def keep_cache(self, out):
        for target, name in [(self.mask, "cache_mask"), *((k, f"k_{i}") for i, k in enumerate(self.k)),
                             *((vt, f"vt_{i}") for i, vt in enumerate(self.vt))]:
            target[...] = out[name]

    def _invoke(self, token_id, **cache):  # the cache inputs already are the interpreter's tensors
        self._token[...] = token_id
        self._run()
        return {name: get() for name, get in self._outputs.items()}


def lite_logits(path, prompt, continuation):
    """Logits (N, V) predicting each token of `continuation` after `prompt`, via prefill + decode."""
    session = lite_session(path)
    rows = [session.prefill(prompt)]
    for token in continuation[:-1]:
        rows.append(session.decode(token))
    return np.stack(rows)


def signature_contract(path):
    """Signature names, tensor names, dtypes and shapes as the app's runner sees them (read without the
    XNNPack delegate, which would pack every weight to answer)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=path, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    contract = {}
    for name in it.get_signature_list():
        runner = it.get_signature_runner(name)
        contract[name] = {
            kind: {k: {"dtype": np.dtype(v["dtype"]).name, "shape": [int(d) for d in v["shape"]]}
                   for k, v in details.items()}
            for kind, details in (("inputs", runner.get_input_details()), ("outputs", runner.get_output_details()))}
    return contract


# what LiteRT's interpreter holds per byte of a .tflite: the mapped file plus XNNPack's packed copy of the
# weights for each of the two signatures (prefill, decode): 2.95x for a gpt2-xl int8 file, 3.5x int4
LITE_MEMORY_PER_FILE_BYTE = 3.5


def lite_memory_shortfall(path):
    """None when the memory available can run `path` in LiteRT, else a line saying what it lacks."""
    need = LITE_MEMORY_PER_FILE_BYTE * os.path.getsize(path)
    free = available_memory()
    if free is None or need <= free:
        return None
    return (f"not run in LiteRT here: it holds about {need / 1e9:.1f} GB for this file (XNNPack packs the weights "
            f"once per signature) and {free / 1e9:.1f} GB is available; run `tfgpt2 verify` where it fits")


def available_memory():
    """Bytes the kernel can give without swapping (Linux MemAvailable), None where it is not known."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def decode_speed(path, steps=32, threads=2):
    """Greedy decode tokens/s after a prefill_len-token prompt (prefill not timed)."""
    session = lite_session(path, threads)
    logits = session.prefill(np.ones(session.prefill_len, np.int32))
    steps = min(steps, session.capacity_left)
    start = time.perf_counter()
    for _ in range(steps):
        logits = session.decode(int(np.argmax(logits)))
    return steps / (time.perf_counter() - start)


def fidelity(model, path, blocks, prefill_len):
    """max |logit diff| vs Keras, top-1 agreement and perplexity on held-out blocks: each block's first
    prefill_len tokens are the prompt, the rest is predicted through prefill + decode."""
    from tfgpt2.export.fidelity import compare

    return compare((lite_logits(path, block[:prefill_len], block[prefill_len:]),
                    model(block[None]).logits.numpy()[0, prefill_len - 1:-1], block[prefill_len:]) for block in blocks)


def verify_litertlm(path, name, entry, log):
    """Problem lines for one .litertlm: the signatures of the .tflite inside against model.json, and a
    greedy run of a short prompt through LiteRT-LM's Python API."""
    import tempfile

    from tfgpt2.export import litertlm_run
    from tfgpt2.export.litertlm import check_installed

    try:
        check_installed()
        with tempfile.TemporaryDirectory() as tmp:
            if signature_contract(litertlm_run.inner_tflite(path, tmp)) != entry["signatures"]:
                return [f"{name}: signatures differ from model.json"]
        with litertlm_run.engine(path) as lm:
            text, why = litertlm_run.generate(lm, "Hello", 4, entry["max_num_tokens"])
    except (ImportError, ValueError, RuntimeError) as e:
        return [f"{name}: {e}"]
    log(f"{name}: signatures match model.json, LiteRT-LM generated {text!r} (stopped: {why})")
    return []


def verify_onnx(path, name, entry, written, log):
    """Problem lines for one ONNX recipe directory: its graph's inputs/outputs against model.json, and a
    prompt pass + 4 cached steps in ONNX Runtime (and ORT GenAI on its directory when it is installed)."""
    from tfgpt2.export import onnx_run

    try:
        from tfgpt2.export.onnx_export import check_installed

        check_installed()
        graph = os.path.join(path, "model.onnx")
        if onnx_run.signature(graph) != entry["signatures"]["model"]:
            return [f"{name}/model.onnx: inputs/outputs differ from model.json"]
        prompt = min(4, written["config"]["n_positions"] // 2)
        rate = onnx_run.decode_speed(graph, prompt, min(4, written["config"]["n_positions"] - prompt - 1))
    except (ImportError, ValueError) as e:
        return [f"{name}: {e}"]
    log(f"{name}/model.onnx: inputs/outputs match model.json, ONNX Runtime ran a prompt + 4 cached steps "
        f"({rate:.1f} tok/s)")
    if entry.get("genai"):
        import importlib.util

        if importlib.util.find_spec("onnxruntime_genai") is None:
            log(f"{name}: ORT GenAI not installed (pip install onnxruntime-genai), its run skipped")
            return []
        tokens = onnx_run.genai_greedy(path, [0, 1], 2)
        log(f"{name}: ORT GenAI opened the directory and generated {len(tokens)} tokens")
    return []


def verify_dir(directory, log=print):
    """Re-checks an export: file hashes, each .tflite's signatures against model.json and a
    prefill + decode run, each ONNX graph in ONNX Runtime, and the SavedModel's serving_default.
    Raises ValueError on a mismatch."""
    written = contract.read(directory)
    problems = contract.changed_files(directory, written)
    for name, entry in written["models"].items():
        file = os.path.join(directory, name)
        if any(p.startswith(name + " ") for p in problems):
            continue  # missing or altered: not worth loading
        if signature_contract(file) != entry["signatures"]:
            problems.append(f"{name}: signatures differ from model.json")
        else:
            rate = decode_speed(file, steps=4)
            log(f"{name}: signatures match model.json, prefill + 4 decode steps ran ({rate:.1f} tok/s)")
    for name, entry in written.get("litertlm", {}).items():
        if not any(p.startswith(name + " ") for p in problems):
            problems += verify_litertlm(os.path.join(directory, name), name, entry, log)
    for name, entry in written.get("onnx", {}).items():
        if not any(p.startswith(name + "/") for p in problems):
            problems += verify_onnx(os.path.join(directory, name), name, entry, written, log)
    for name in sorted(set(written.get("saved_model", {})) | {"saved_model"}):
        saved = os.path.join(directory, name, "1")
        if not os.path.isdir(saved) or any(p.startswith(name + "/") for p in problems):
            continue
        import tensorflow as tf

        loaded = tf.saved_model.load(saved)
        expected = written.get("saved_model", {}).get(name, {}).get("signatures")
        if expected is not None and sorted(loaded.signatures) != expected:
            problems.append(f"{name}/1: signatures {sorted(loaded.signatures)} differ from model.json")
            continue
        eos = written["special_tokens"].get("eos_token_id")
        ids = tf.constant([[eos if eos is not None else 0] * 2], tf.int32)  # an id inside the vocabulary
        logits = loaded.signatures["serving_default"](input_ids=ids, attention_mask=tf.ones_like(ids))["logits"]
        log(f"{name}/1: serving_default ran, logits {tuple(logits.shape)}")
    if problems:
        raise ValueError(f"{directory} failed verification: " + "; ".join(problems))
    log(f"{directory}: ok ({len(written['sha256'])} files hashed)")
