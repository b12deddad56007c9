"""TFLite conversion in child processes, so no process holds the model and the converter at once.

The TF converter needs ~2.5x the model's weights (frozen constants, the MLIR module, the
flatbuffer); a process that has loaded the Keras model does not give its memory back after
`del model`. So one child loads the model and writes the SavedModels the converter reads, and each
recipe is converted by a fresh child that never loads Keras weights (docs/design.md).

    python -m tfgpt2.export.worker archive SRC DIR MAX_SEQ_LEN PREFILL_LEN [float] [int4]
    python -m tfgpt2.export.worker convert DIR RECIPE OUT.tflite|OUT.litertlm [tflite|litertlm]
    python -m tfgpt2.export.worker calibrated SRC RECIPE OUT.tflite MAX_SEQ_LEN PREFILL_LEN CALIBRATION.npy
    python -m tfgpt2.export.worker onnx SRC RECIPE OUT_DIR GRAPH

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
    """DIR/<kind> for each of recipes.ARCHIVES asked for: float, int4 (the int4 recipe's graph reads an int8
    embedding table), and the same in LiteRT-LM's layout (lm-float, lm-int4), which also get what
    packing needs: lm.json (signature keys), tokenizer.json and llm_metadata.pb."""
    from tfgpt2.export import int4, litertlm, tflite
    from tfgpt2.export.source import load_model

    model = load_model(src)
    for kind in kinds:
        table = int4.Int8Table(model) if kind.endswith("int4") else None
        path = os.path.join(directory, kind)
        if not kind.startswith("lm-"):
            tflite.write_archive(model, path, max_seq_len, prefill_len, table=table)
            continue
        litertlm.write_archive(model, path, max_seq_len, prefill_len, table=table)
        litertlm.write_packing_inputs(path, model.config, max_seq_len, prefill_len)
    return {}


def convert(directory, name, out_path, layout="tflite"):
    """Converts recipe `name` from `write_archives`' SavedModel; writes `out_path` (a .tflite, or for
    layout "litertlm" a .litertlm packed around the converted .tflite)."""
    from tfgpt2.export import litertlm, tflite, verify

    recipe = recipes.get(name)
    if layout != "litertlm":
        flat = tflite.convert_archive(os.path.join(directory, recipe.archive), buffer_offset=recipe.buffer_offset,
                                      **recipe.converter_options())
        return _write(out_path, *_post_process(recipe, flat))
    archive = os.path.join(directory, "lm-" + recipe.archive)
    flat = tflite.convert_archive(archive, buffer_offset=recipe.buffer_offset, **recipe.converter_options(),
                                  signature_keys=litertlm.read_packing_inputs(archive)["signature_keys"])
    inner = out_path + ".tflite"
    result = _write(inner, *_post_process(recipe, flat))
    try:
        result["signatures"] = verify.signature_contract(inner)
        litertlm.pack(inner, archive, out_path)
    finally:
        os.remove(inner)
    result["bytes"] = os.path.getsize(out_path)
    return result


def convert_calibrated(src, name, out_path, max_seq_len, prefill_len, calibration_path):
    """A calibrated recipe: the converter calls the representative dataset, which runs the float model."""
    import numpy as np

    from tfgpt2.export import tflite
    from tfgpt2.export.source import load_model

    recipe = recipes.get(name)
    model = load_model(src)
    dataset = tflite.representative_dataset(model, np.load(calibration_path), max_seq_len, prefill_len)
    flat = tflite.convert(model, max_seq_len, prefill_len, integer_attention=recipe.integer_attention,
                          buffer_offset=recipe.buffer_offset, **recipe.converter_options(dataset))
    return _write(out_path, *_post_process(recipe, flat))


def convert_onnx(src, name, directory, graph):
    """ONNX recipe `name` of SRC's `graph` ("lm" or "base") into `directory` (onnx_export.write_recipe)."""
    from tfgpt2.export import onnx_export

    return onnx_export.write_recipe(src, recipes.get(name), directory, graph == "base")


def _post_process(recipe, flat):
    """(bytes, bytes saved): the recipe's passes over the converted flatbuffer."""
    from tfgpt2.export import int4, tied

    if recipe.int4:
        return int4.quantize(flat)
    if recipe.tied:
        return tied.share_tied_embedding(flat)
    return flat, 0


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
    return run_child("convert", archives, recipe, out_path, layout)


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
    else:
        raise SystemExit(f"unknown step {step!r}; use archive, convert, calibrated or onnx")
    result.update(seconds=time.time() - start, peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
