"""Verify an export: each .tflite in the LiteRT interpreter, each ONNX graph in ONNX Runtime; sizes; decode speed."""

import os
import time

import numpy as np

from tfgpt2.export import contract
from tfgpt2.export.lite_session import lite_session, weight_cache_fits


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


# what a LiteSession holds per byte of a .tflite: XNNPack's packed weights (in its weight-cache file, mapped)
# and the pages of the .tflite it read to pack them; without room for that file on disk, a packed copy in
# anonymous memory per signature (prefill, decode) on top of the mapped file
LITE_MEMORY_PER_FILE_BYTE = {True: 1.5, False: 3.5}


def lite_memory_shortfall(path):
    """None when the memory available can run `path` in LiteRT, else a line saying what it lacks."""
    size = os.path.getsize(path)
    need = LITE_MEMORY_PER_FILE_BYTE[weight_cache_fits(size)] * size
    free = available_memory()
    if free is None or need <= free:
        return None
    return (f"not run in LiteRT here: it holds about {need / 1e9:.1f} GB for this file and "
            f"{free / 1e9:.1f} GB is available; run `tfgpt2 verify` where it fits")


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
