"""TFLite conversion in child processes, so no process holds the model and the converter at once.

The bound recipes (fp32, int8, int4; bound.py) never load the model's large weights: one child
traces a stand-in and writes the weightless SavedModel the converter reads, a fresh child converts it
and writes each weight into the file from the checkpoint, one tensor at a time. fp16 and int8-full
hand the converter the weights as constants, which costs ~2.5x their bytes (frozen constants, the
MLIR module, the flatbuffer), and a process that has loaded the Keras model does not give its memory
back after `del model`: so the child that loads the model is never the one that converts
(docs/design.md).

    python -m tfgpt2.export.worker archive SRC DIR MAX_SEQ_LEN PREFILL_LEN KIND...  (recipes.ARCHIVES)
    python -m tfgpt2.export.worker convert DIR RECIPE OUT.tflite|OUT.litertlm tflite|litertlm SRC
    python -m tfgpt2.export.worker calibrated SRC RECIPE OUT.tflite MAX_SEQ_LEN PREFILL_LEN CALIBRATION.npy
    python -m tfgpt2.export.worker onnx SRC RECIPE OUT_DIR GRAPH
    python -m tfgpt2.export.worker saved_model SRC RECIPE OUT_DIR  (saved_model.build_recipe)

Each prints one JSON line (peak_rss_gb, seconds, and for conversions bytes and tied_embedding_bytes_saved).
A calibrated recipe (int8-full) converts from SRC: its representative dataset runs the float model.
An ONNX recipe converts from SRC too: tf2onnx reads a graph whose weights are inputs (onnx_graph.py),
so the child holds the Keras weights and one ONNX copy of them, not the converter's copies.
"""

import json
import os
import resource
import signal
import subprocess
import sys
import time

from tfgpt2.errors import ExportError
from tfgpt2.export import recipes


def write_archives(src, directory, max_seq_len, prefill_len, kinds):
    """DIR/<kind> for each of recipes.ARCHIVES asked for: float (the model's own weights as constants), the
    bound recipes' weightless graphs (bound-float, bound-int8: bound.py; the model is never loaded), and
    those in LiteRT-LM's layout (lm-...), which also get what packing needs: lm.json (signature keys),
    tokenizer.json and llm_metadata.pb."""
    from tfgpt2.export import bound, litertlm, tflite
    from tfgpt2.export.source import load_model, source_config

    for kind in kinds:
        path = os.path.join(directory, kind)
        layout, table = ("litertlm" if kind.startswith("lm-") else "tflite"), kind.rpartition("-")[2]
        if "bound-" in kind:
            bound.write_archive(src, path, table, layout, max_seq_len, prefill_len)
        else:
            tflite.write_archive(load_model(src), path, max_seq_len, prefill_len)
        if layout == "litertlm":
            litertlm.write_packing_inputs(path, source_config(src), max_seq_len, prefill_len)
    return {}


def convert(directory, name, out_path, layout="tflite", src=None):
    """Converts recipe `name` from `write_archives`' SavedModel; writes `out_path` (a .tflite, or for
    layout "litertlm" a .litertlm packed around the converted .tflite). A bound recipe's weights come
    from `src`, tensor by tensor."""
    from tfgpt2.export import litertlm, verify

    recipe = recipes.get(name)
    archive = os.path.join(directory, ("lm-" if layout == "litertlm" else "") + recipe.archive)
    if layout != "litertlm":
        return _convert(recipe, archive, out_path, ("prefill", "decode"), src)
    inner = out_path + ".tflite"
    result = _convert(recipe, archive, inner, litertlm.read_packing_inputs(archive)["signature_keys"], src)
    try:
        result["signatures"] = verify.signature_contract(inner)
        litertlm.pack(inner, archive, out_path)
    finally:
        os.remove(inner)
    result["bytes"] = os.path.getsize(out_path)
    return result


def _convert(recipe, archive, out_path, signature_keys, src):
    from tfgpt2.export import bound, tflite
    from tfgpt2.export.source import weight_state

    if not recipe.bound:
        flat = tflite.convert_archive(archive, buffer_offset=not recipe.tied, signature_keys=signature_keys,
                                      **recipe.converter_options())
        return _write(out_path, *_post_process(recipe, flat))
    flat = tflite.convert_archive(archive, buffer_offset=False, signature_keys=signature_keys)
    weights = bound.read_weights(archive)
    size = bound.bind(flat, weights, weight_state(src), recipe.name, out_path)
    shared = sum(w.shape[0] * w.shape[1] for w in weights if w.role == "head")  # the head reads the table
    return {"bytes": size, "tied_embedding_bytes_saved": shared}


def convert_calibrated(src, name, out_path, max_seq_len, prefill_len, calibration_path):
    """A calibrated recipe: the converter calls the representative dataset, which runs the float model."""
    import numpy as np

    from tfgpt2.export import tflite
    from tfgpt2.export.source import load_model

    recipe = recipes.get(name)
    model = load_model(src)
    dataset = tflite.representative_dataset(model, np.load(calibration_path), max_seq_len, prefill_len)
    flat = tflite.convert(model, max_seq_len, prefill_len, integer_attention=recipe.integer_attention,
                          buffer_offset=False, **recipe.converter_options(dataset))
    return _write(out_path, *_post_process(recipe, flat))


def convert_onnx(src, name, directory, graph):
    """ONNX recipe `name` of SRC's `graph` ("lm" or "base") into `directory` (onnx_export.write_recipe)."""
    from tfgpt2.export import onnx_export

    return onnx_export.write_recipe(src, recipes.get(name), directory, graph == "base")


def _post_process(recipe, flat):
    """(bytes, bytes saved): the recipe's passes over the converted flatbuffer."""
    from tfgpt2.export import tied

    return tied.share_tied_embedding(flat) if recipe.tied else (flat, 0)


def _write(path, flat, shared):
    with open(path, "wb") as f:
        f.write(flat)
    return {"bytes": len(flat), "tied_embedding_bytes_saved": shared}


def rss_gb():
    """This process's resident set now (not its peak), in GB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9


def run_child(*args):
    """Runs `python -m tfgpt2.export.worker ARGS`; its JSON result plus `tree_peak_rss_gb`
    (the child's peak + what this process holds meanwhile). A failed child raises ExportError with
    its last error line; the child dies with this process (a killed export leaves no converter running)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    args = [str(a) for a in args]
    proc = subprocess.run([sys.executable, "-m", "tfgpt2.export.worker", *args], capture_output=True, text=True,
                          env=env, preexec_fn=_die_with_parent)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise ExportError(f"the export step `{' '.join(args[:2])}` failed in its child process: "
                          f"{_why(proc.returncode, proc.stderr)}")
    result = json.loads(lines[-1])
    result["tree_peak_rss_gb"] = result["peak_rss_gb"] + rss_gb()
    return result


def _why(code, stderr):
    """One line: the signal that killed the child, or the last line of its error output."""
    if code < 0:
        name = signal.Signals(-code).name
        hint = " (out of memory? the kernel's OOM killer sends it)" if -code == signal.SIGKILL else ""
        return f"it was killed by {name}{hint}; rerun the export"
    last = [line.strip() for line in stderr.splitlines() if line.strip()]
    return f"{last[-1] if last else 'no error output'} (exit {code})"


def _die_with_parent():
    """Linux: the child gets SIGKILL when the export process dies, instead of converting for nobody."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def convert_in_child(recipe, archives, src, out_path, max_seq_len, prefill_len, calibration_path=None,
                     layout="tflite"):
    """One recipe in a fresh child: from `write_archives`' DIR, or for a calibrated one from `src`."""
    if recipes.get(recipe).archive is None:
        return run_child("calibrated", src, recipe, out_path, max_seq_len, prefill_len, calibration_path)
    return run_child("convert", archives, recipe, out_path, layout, src)


def convert_in_children(src, recipe, out_path, max_seq_len, prefill_len, scratch, calibration_path=None,
                        layout="tflite"):
    """One recipe end to end (archive child + conversion child); the peak is the larger one's."""
    kinds = recipes.archive_kinds([recipe], layout)
    archive = run_child("archive", src, scratch, max_seq_len, prefill_len, *kinds) if kinds else None
    result = convert_in_child(recipe, scratch, src, out_path, max_seq_len, prefill_len, calibration_path, layout)
    if archive:
        result["tree_peak_rss_gb"] = max(result["tree_peak_rss_gb"], archive["tree_peak_rss_gb"])
        result["archive_peak_rss_gb"] = archive["peak_rss_gb"]
    return result


def main(argv):
    start = time.time()
    step, args = argv[0], argv[1:]
    if step == "archive":
        if not set(args[4:]) or not set(args[4:]) <= set(recipes.ARCHIVES):
            raise SystemExit(f"archive needs the kinds to write ({', '.join(recipes.ARCHIVES)}), got {args[4:]}")
        result = write_archives(args[0], args[1], int(args[2]), int(args[3]), kinds=args[4:])
    elif step == "convert":
        result = convert(*args)
    elif step == "calibrated":
        result = convert_calibrated(args[0], args[1], args[2], int(args[3]), int(args[4]), args[5])
    elif step == "onnx":
        result = convert_onnx(*args)
    elif step == "saved_model":
        from tfgpt2.export import saved_model

        result = saved_model.build_recipe(*args)
    else:
        raise SystemExit(f"unknown step {step!r}; use archive, convert, calibrated, onnx or saved_model")
    result.update(seconds=time.time() - start, peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
