"""Writes tests/golden/model.json: the contract the Kotlin core tests read (format version inside).

    model.json          the contract of a tiny exported GPT-2 (.tflite fp32/int8, the int8 .litertlm
                        the Android app runs)

    python tools/write_goldens.py

The Python tests compare the committed file with a fresh export, so a change that would alter it
fails until this script is run again.
"""

import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
GOLDEN = os.path.join(ROOT, "tests", "golden")


def tiny_export(directory, held_out=None):
    """A tiny model (large random weights, so greedy text doesn't collapse into one id) exported to
    `directory`/export with .tflite fp32 + int8 and the int8 .litertlm the app runs (no SavedModel: its
    tests build their own): (Keras model, export report). `held_out` (N, T) ids add fidelity numbers to the report."""
    from helpers import CONFIGS, build_hf
    from tfgpt2 import TFGPT2LMHeadModel
    from tfgpt2.export import pipeline

    hf = build_hf("GPT2LMHeadModel", CONFIGS["small-gelu_new"], seed=3, initializer_range=0.5)
    hf.save_pretrained(os.path.join(directory, "hf"))
    model = TFGPT2LMHeadModel.from_pretrained(os.path.join(directory, "hf"))
    report = pipeline.export(model, os.path.join(directory, "export"), formats=["tflite", "litertlm"],
                             quantize=["tflite:fp32", "tflite:int8", "litertlm:int8"], max_seq_len=24, prefill_len=8,
                             held_out=held_out, log=lambda *_: None)
    return model, report


def main():
    import shutil

    os.makedirs(GOLDEN, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tiny_export(tmp)
        shutil.copy(os.path.join(tmp, "export", "model.json"), os.path.join(GOLDEN, "model.json"))
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()
