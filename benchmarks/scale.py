"""Every GPT-2 size on one machine: export time and peak memory, file sizes, from_pretrained memory, decode speed.

    pip install ".[bench]" && python benchmarks/scale.py [--presets distilgpt2,gpt2,gpt2-medium,gpt2-large,gpt2-xl]
        [--quantize int8,int4] [--new 32]

Per preset shape (random weights): a checkpoint written by transformers' save_pretrained (cached in
~/.cache/tfgpt2/scale), then `tfgpt2 export --quantize Q` (the fp32 SavedModel and one .tflite per recipe)
with the peak RSS of its process tree (report.json: the largest child's peak plus what the exporting
process holds meanwhile, or the exporting process's own peak, "parent": its LiteRT check of each
file) against the largest file it writes, `from_pretrained` in a fresh process
(ru_maxrss against the checkpoint's bytes), greedy decode tok/s of model.generate (XLA, fp32) and of
each .tflite (LiteRT, as the export's report measures it), how many of NEW greedy tokens the int8
file picks as the fp32 Keras model does, and how many of its top-1 next tokens at NEW positions of a
random sequence (teacher-forced) equal the fp32 model's. "TF baseline": a process that imports tfgpt2 and TensorFlow
and does nothing else, the floor under every number.
"""

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import ROOT, run_system  # noqa: E402

CACHE = os.path.expanduser("~/.cache/tfgpt2/scale")
PRESETS = ("distilgpt2", "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")

COMMON = """
import json, os, resource, sys, time
import numpy as np
def report(**kw):
    kw["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print("RESULT " + json.dumps(kw))
"""

CHECKPOINT = """
import torch, transformers
from tfgpt2.config import PRESETS
torch.manual_seed(0)
model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**PRESETS[sys.argv[1]]))
model.save_pretrained(sys.argv[2] + ".partial")
os.replace(sys.argv[2] + ".partial", sys.argv[2])
report(params=sum(p.numel() for p in model.parameters()))
"""

BASELINE = """
import tensorflow as tf
import tfgpt2
report()
"""

FROM_PRETRAINED = """
from tfgpt2 import TFGPT2LMHeadModel
t = time.perf_counter()
TFGPT2LMHeadModel.from_pretrained(sys.argv[1])
report(seconds=time.perf_counter() - t)
"""

DECODE = """
# model.generate (XLA, fp32) tok/s; the int8 file's greedy tokens against it, and its top-1 next token
# against the fp32 model's at each of NEW positions of a random sequence (teacher-forced: one flip
# doesn't carry over into the positions after it)
from tfgpt2 import TFGPT2LMHeadModel
from tfgpt2.export.lite_session import lite_session
new, model = int(sys.argv[3]), TFGPT2LMHeadModel.from_pretrained(sys.argv[1])
sequence = np.random.default_rng(0).integers(0, model.config.vocab_size, (1, 8 + new)).astype(np.int32)
prompt = sequence[:, :8]
run = lambda: model.generate(prompt, max_new_tokens=new, do_sample=False).numpy()[0, 8:]
keras_tokens = run()
t = time.perf_counter(); run(); seconds = time.perf_counter() - t
session = lite_session(sys.argv[2])
logits, lite_tokens = session.prefill(prompt[0]), []
for _ in range(new):
    lite_tokens.append(int(np.argmax(logits)))
    logits = session.decode(lite_tokens[-1])
same = [int(a) == b for a, b in zip(keras_tokens, lite_tokens)]
keras_next = np.argmax(model(sequence).logits.numpy()[0, 7:-1], -1)  # (NEW,)
logits, forced = session.prefill(prompt[0]), 0
for position, token in enumerate(sequence[0, 8:]):
    forced += int(np.argmax(logits)) == int(keras_next[position])
    logits = session.decode(int(token))
report(xla_tok_s=new / seconds, agree=sum(same), prefix=same.index(False) if False in same else len(same),
       forced_agree=forced)
"""


def checkpoint(preset):
    """The cached checkpoint directory of `preset` (written by transformers on first use)."""
    path = os.path.join(CACHE, preset)
    if not os.path.isdir(path):
        os.makedirs(CACHE, exist_ok=True)
        result = run_system(COMMON, CHECKPOINT, 2, argv=[preset, path])
        if "error" in result:
            raise SystemExit(f"{preset}: writing the checkpoint failed: {result['error']}")
    return path


def export(path, out, quantize):
    """report.json of `tfgpt2 export`, plus its wall time."""
    cmd = [sys.executable, "-m", "tfgpt2.cli", "export", "--model", path, "--out", out, "--quantize", quantize,
           "--overwrite"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]}
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        return json.load(f)


def row(preset, quantize, new, work):
    path = checkpoint(preset)
    ckpt = os.path.getsize(os.path.join(path, "model.safetensors"))
    out = os.path.join(work, preset)
    rep = export(path, out, quantize)
    if "error" in rep:
        return {"preset": preset, "error": rep["error"]}
    files = rep["files"]
    largest = max(f["bytes"] for f in files.values())
    loaded = run_system(COMMON, FROM_PRETRAINED, 2, argv=[path])
    decode = run_system(COMMON, DECODE, 2, argv=[path, os.path.join(out, "gpt2_int8.tflite"), str(new)])
    result = {"preset": preset, "checkpoint_gb": ckpt / 1e9, "export_s": rep["conversion_seconds"],
              "export_peak_gb": rep["peak_rss_gb"], "largest_file_gb": largest / 1e9,
              "exporting_process_peak_gb": rep["exporting_process_peak_rss_gb"],
              "peak_over_largest": rep["peak_rss_gb"] * 1e9 / largest,
              "files": {n: {"gb": f["bytes"] / 1e9, "peak_gb": f.get("peak_rss_gb"), "s": f.get("seconds"),
                            "tok_s": f.get("decode_tok_s")} for n, f in files.items()},
              "from_pretrained_peak_gb": loaded.get("peak_rss_gb"),
              "from_pretrained_over_checkpoint": loaded.get("peak_rss_gb", 0) * 1e9 / ckpt, **decode}
    return result


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--presets", default=",".join(PRESETS))
    p.add_argument("--quantize", default="int8,int4")
    p.add_argument("--new", type=int, default=32)
    p.add_argument("--work", default=os.path.join(CACHE, "exports"), help="where the exports are written")
    args = p.parse_args()
    os.makedirs(args.work, exist_ok=True)
    baseline = run_system(COMMON, BASELINE, 2)
    print(f"TF baseline (import tfgpt2 + TensorFlow): {baseline.get('peak_rss_gb', 0):.2f} GB RSS")
    head = (f"{'preset':<12}{'ckpt GB':>8}{'export s':>9}{'peak GB':>8}{'parent':>7}{'largest':>8}{'ratio':>6}"
            f"{'int8 GB':>8}{'int4 GB':>8}{'SM GB':>7}{'load GB':>8}{'x ckpt':>7}{'XLA t/s':>8}"
            f"{'int8 t/s':>9}{'int4 t/s':>9}{'int8=fp32':>10}{'forced':>8}")
    print(head)
    rows = []
    for preset in args.presets.split(","):
        r = row(preset, args.quantize, args.new, args.work)
        rows.append(r)
        if "error" in r:
            print(f"{preset:<12} error: {r['error']}")
            continue
        f = r["files"]
        get = lambda name, key: (f.get(name) or {}).get(key) or 0  # noqa: E731
        print(f"{preset:<12}{r['checkpoint_gb']:>8.2f}{r['export_s']:>9.0f}{r['export_peak_gb']:>8.2f}"
              f"{r['exporting_process_peak_gb']:>7.2f}{r['largest_file_gb']:>8.2f}{r['peak_over_largest']:>6.2f}"
              f"{get('gpt2_int8.tflite', 'gb'):>8.2f}"
              f"{get('gpt2_int4.tflite', 'gb'):>8.2f}{get('saved_model', 'gb'):>7.2f}"
              f"{r['from_pretrained_peak_gb'] or 0:>8.2f}{r['from_pretrained_over_checkpoint']:>7.2f}"
              f"{r.get('xla_tok_s', 0):>8.1f}{get('gpt2_int8.tflite', 'tok_s'):>9.1f}"
              f"{get('gpt2_int4.tflite', 'tok_s'):>9.1f}{r.get('agree', 0):>6}/{args.new}"
              f"{r.get('forced_agree', 0):>5}/{args.new}", flush=True)
    print("RESULTS " + json.dumps({"baseline_gb": baseline.get("peak_rss_gb"), "rows": rows}))


if __name__ == "__main__":
    main()
