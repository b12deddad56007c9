"""One TFLite conversion per child process, so the exporting process never holds the converter's memory.

The TF converter needs ~2.5x the model's weights on top of the model itself (frozen constants,
the MLIR module, the quantized copy, the flatbuffer). Converting in a child that loads the
model from disk, while the parent has not loaded it yet, keeps the process tree's peak at one
model + one converter (benchmarks/export.py prints it).

    python -m tfgpt2.export.worker SRC RECIPE OUT.tflite MAX_SEQ_LEN PREFILL_LEN [CALIBRATION.npy]

prints one JSON line: bytes, tied_embedding_bytes_saved, peak_rss_gb, seconds.
"""

import contextlib
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def convert_recipe(model, recipe, max_seq_len, prefill_len, calibration=None):
    """(flatbuffer bytes, bytes saved by sharing buffers) for one recipe.

    Drops `model` (a one-item list) once the SavedModel the converter reads is written, so the
    converter's peak does not include the Keras model; int8-full keeps it to calibrate.
    """
    from tfgpt2.export import int4, pipeline, tflite, tied

    if recipe == "int8-full":
        kwargs = pipeline.recipe_kwargs(recipe, model[0], calibration, max_seq_len, prefill_len)
        return tied.share_tied_embedding(tflite.convert(model[0], max_seq_len, prefill_len, **kwargs))
    with tempfile.TemporaryDirectory() as tmp:
        with int4.int8_embedding(model[0]) if recipe == "int4" else contextlib.nullcontext():
            tflite.write_archive(model[0], tmp, max_seq_len, prefill_len)
        model.clear()
        gc.collect()
        flat = tflite.convert_archive(tmp, **({} if recipe == "int4" else pipeline.recipe_kwargs(recipe)))
    if recipe == "int4":
        return int4.quantize(flat)
    return tied.share_tied_embedding(flat) if recipe == "int8" else (flat, 0)


def rss_gb():
    """This process's resident set now (not its peak), in GB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9


def convert_in_child(src, recipe, out_path, max_seq_len, prefill_len, calibration_path=None):
    """Runs the conversion in `python -m tfgpt2.export.worker`; returns its JSON result.

    `peak_rss_gb` is the child's peak; `tree_peak_rss_gb` adds what this process held meanwhile.
    """
    args = [sys.executable, "-m", "tfgpt2.export.worker", src, recipe, out_path, str(max_seq_len),
            str(prefill_len)] + ([calibration_path] if calibration_path else [])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"TFLite {recipe} conversion failed in its child process (exit {proc.returncode}):\n{tail}")
    result = json.loads(lines[-1])
    result["tree_peak_rss_gb"] = result["peak_rss_gb"] + rss_gb()
    return result


def main(argv):
    import numpy as np

    from tfgpt2.export.pipeline import load_model

    src, recipe, out_path, max_seq_len, prefill_len = argv[:5]
    calibration = np.load(argv[5]) if len(argv) > 5 else None
    start = time.time()
    flat, shared = convert_recipe([load_model(src)], recipe, int(max_seq_len), int(prefill_len), calibration)
    with open(out_path, "wb") as f:
        f.write(flat)
    print(json.dumps({"bytes": len(flat), "tied_embedding_bytes_saved": shared, "seconds": time.time() - start,
                      "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}))


if __name__ == "__main__":
    main(sys.argv[1:])
