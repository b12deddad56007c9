"""TFLite conversion in child processes, so no process holds the model and the converter at once.

The TF converter needs ~2.5x the model's weights (frozen constants, the MLIR module, the
flatbuffer); a process that has loaded the Keras model does not give its memory back after
`del model` (measured: 1.57 -> 1.50 GB at 124M). So one child loads the model and writes the
SavedModels the converter reads, and each recipe is converted by a fresh child that never loads
Keras weights (fp32 at 124M: 4.21 GB in one process, see benchmarks/export.py for the split).

    python -m tfgpt2.export.worker archive SRC DIR MAX_SEQ_LEN PREFILL_LEN [float] [int4]
    python -m tfgpt2.export.worker convert DIR RECIPE OUT.tflite
    python -m tfgpt2.export.worker calibrated SRC OUT.tflite MAX_SEQ_LEN PREFILL_LEN CALIBRATION.npy

Each prints one JSON line (peak_rss_gb, seconds, and for conversions bytes and tied_embedding_bytes_saved).
int8-full is `calibrated`: its representative dataset runs the float model during conversion.
"""

import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def archive_kinds(recipes):
    """The SavedModels `recipes` convert from: "float" (fp32, fp16, int8) and/or "int4"."""
    kinds = ["float"] if {"fp32", "fp16", "int8"} & set(recipes) else []
    return kinds + (["int4"] if "int4" in recipes else [])


def write_archives(src, directory, max_seq_len, prefill_len, kinds):
    """DIR/float and/or DIR/int4 (the int4 recipe's graph reads an int8 embedding table)."""
    from tfgpt2.export import int4, tflite
    from tfgpt2.export.pipeline import load_model

    model = load_model(src)
    for kind in kinds:
        with int4.int8_embedding(model) if kind == "int4" else contextlib.nullcontext():
            tflite.write_archive(model, os.path.join(directory, kind), max_seq_len, prefill_len)
    return {}


def convert(directory, recipe, out_path):
    """Converts one recipe from `write_archives`' SavedModels; writes `out_path`."""
    from tfgpt2.export import int4, pipeline, tflite, tied

    if recipe == "int4":
        flat, shared = int4.quantize(tflite.convert_archive(os.path.join(directory, "int4")))
    else:
        # tied.py re-serialises int8 files, which is 45x slower on buffer-offset files (68.5 vs 1.5 s)
        flat = tflite.convert_archive(os.path.join(directory, "float"), buffer_offset=recipe != "int8",
                                      **pipeline.recipe_kwargs(recipe))
        flat, shared = tied.share_tied_embedding(flat) if recipe == "int8" else (flat, 0)
    return _write(out_path, flat, shared)


def convert_calibrated(src, out_path, max_seq_len, prefill_len, calibration_path):
    """int8-full: the converter calls the representative dataset, which runs the float model."""
    import numpy as np

    from tfgpt2.export import pipeline, tflite, tied

    model = pipeline.load_model(src)
    kwargs = pipeline.recipe_kwargs("int8-full", model, np.load(calibration_path), max_seq_len, prefill_len)
    flat = tflite.convert(model, max_seq_len, prefill_len, integer_attention=True, **kwargs)
    flat, shared = tied.share_tied_embedding(flat)
    return _write(out_path, flat, shared)


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
    (the child's peak + what this process holds meanwhile)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    # run from the temp dir: `python -m` puts the cwd first on sys.path, and a source checkout's
    # tfgpt2/ there would shadow the installed package (whose tfgpt2.export comes from export/)
    args = [os.path.abspath(a) if isinstance(a, str) and os.path.exists(a) else str(a) for a in args]
    proc = subprocess.run([sys.executable, "-m", "tfgpt2.export.worker", *args], capture_output=True, text=True,
                          env=env, cwd=tempfile.gettempdir())
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"TFLite export step `{' '.join(args[:2])}` failed in its child process "
                           f"(exit {proc.returncode}):\n{tail}")
    result = json.loads(lines[-1])
    result["tree_peak_rss_gb"] = result["peak_rss_gb"] + rss_gb()
    return result


def convert_in_child(recipe, archives, src, out_path, max_seq_len, prefill_len, calibration_path=None):
    """One recipe in a fresh child: from `write_archives`' DIR, or for int8-full from `src`."""
    if recipe == "int8-full":
        return run_child("calibrated", src, out_path, max_seq_len, prefill_len, calibration_path)
    return run_child("convert", archives, recipe, out_path)


def convert_in_children(src, recipe, out_path, max_seq_len, prefill_len, scratch, calibration_path=None):
    """One recipe end to end (archive child + conversion child); the peak is the larger one's."""
    kinds = archive_kinds([recipe])
    archive = run_child("archive", src, scratch, max_seq_len, prefill_len, *kinds) if kinds else None
    result = convert_in_child(recipe, scratch, src, out_path, max_seq_len, prefill_len, calibration_path)
    if archive:
        result["tree_peak_rss_gb"] = max(result["tree_peak_rss_gb"], archive["tree_peak_rss_gb"])
        result["archive_peak_rss_gb"] = archive["peak_rss_gb"]
    return result


def main(argv):
    start = time.time()
    step, args = argv[0], argv[1:]
    if step == "archive":
        if not set(args[4:]) or not set(args[4:]) <= {"float", "int4"}:
            raise SystemExit(f"archive needs the kinds to write (float and/or int4), got {args[4:]}")
        result = write_archives(args[0], args[1], int(args[2]), int(args[3]), kinds=args[4:])
    elif step == "convert":
        result = convert(*args)
    elif step == "calibrated":
        result = convert_calibrated(args[0], args[1], int(args[2]), int(args[3]), args[4])
    else:
        raise SystemExit(f"unknown step {step!r}; use archive, convert or calibrated")
    result.update(seconds=time.time() - start, peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
