"""Exports at GPT-2 124M shape (random weights): size, conversion cost, LiteRT and ONNX Runtime decode speed.

    pip install ".[bench]" && python benchmarks/export.py [--recipes fp32,fp16,int8,int4] [--threads 2]
        [--sections tflite,onnx,litertlm] [--rounds 5]

Each row runs in its own subprocess. tfgpt2 rows convert a saved 124M checkpoint the way
`tfgpt2 export` does (a child loads it and writes the converter's SavedModel, a fresh child
converts; "conv. RSS" = the larger child's peak + the row's own RSS, i.e. the process tree),
recipes with a 256-slot cache, greedy decode of 128 tokens after a 32-token prompt
in the LiteRT interpreter; in the same run ONNX Runtime GPT-2 with past (fp32, and dynamic
int8 after quant_pre_process) and a "full window, no cache" int8 TFLite (the 2019 HF Android design:
the whole window is recomputed every token). Decode tok/s = the NEW - 1 tokens after the
prompt pass, best of 3 runs, for every system alike; prefill time is printed apart.
"""

import argparse
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_litertlm  # noqa: E402
import export_onnx  # noqa: E402
from peers import EXPORT, run_system  # noqa: E402

COMMON = """
import json, os, resource, sys, time
import numpy as np
NEW, PROMPT, THREADS, SLOTS = {new}, {prompt}, {threads}, 256
ids = np.random.default_rng(0).integers(0, 50257, (1, PROMPT)).astype("int64")
def report(**kw):
    kw["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print("RESULT " + json.dumps(kw))
def lite_greedy(path):
    # (decode tok/s, prefill s): prefill gives token 1, then NEW - 1 decode steps are timed
    from tfgpt2.export.lite_session import lite_session
    session = lite_session(path, THREADS)  # the app's loop: caller-owned cache, new entries written back
    def run():
        t0 = time.perf_counter()
        logits = session.prefill(ids[0].astype(np.int32))
        t1 = time.perf_counter()
        for _ in range(NEW - 1):
            logits = session.decode(int(np.argmax(logits)))
        return (NEW - 1) / (time.perf_counter() - t1), t1 - t0
    run()
    return max((run() for _ in range(3)), key=lambda r: r[0])
"""

CHECKPOINT = """
from tfgpt2 import GPT2Config, TFGPT2LMHeadModel
model = TFGPT2LMHeadModel(GPT2Config.from_preset("gpt2"))
model(np.zeros((1, 2), np.int32))
model.save_pretrained(sys.argv[1])
report(params=model.count_params())
"""

TFLITE = """
from tfgpt2.export import worker
# what `tfgpt2 export --model CKPT` does: a child loads the checkpoint and writes the converter's
# SavedModel, a fresh child converts it
path = os.path.join(scratch(), "m.tflite")
r = worker.convert_in_children(sys.argv[1], "{recipe}", path, SLOTS, PROMPT, scratch())
tok_s, prefill_s = lite_greedy(path)
report(bytes=r["bytes"], convert_s=r["seconds"], child_peak_rss_gb=r["peak_rss_gb"],
       convert_peak_rss_gb=r["tree_peak_rss_gb"], tok_s=tok_s, prefill_ms=prefill_s * 1000)
"""

SYSTEMS = {
    "full_window_int8": """
import tensorflow as tf
from tfgpt2 import GPT2Config, TFGPT2LMHeadModel
model = TFGPT2LMHeadModel(GPT2Config.from_preset("gpt2"))
W = PROMPT + NEW
import keras
def window(input_ids, attention_mask):
    return {"logits": model(input_ids, attention_mask=attention_mask).logits[:, -1]}
tmp = scratch()
archive = keras.export.ExportArchive(); archive.track(model)  # freezes Keras 3 variables (as tfgpt2 export does)
archive.add_endpoint(name="window", fn=window, input_signature=[tf.TensorSpec([1, W], tf.int32, "input_ids"),
                                                                 tf.TensorSpec([1, W], tf.int32, "attention_mask")])
archive.write_out(tmp, verbose=False)
conv = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["window"])
conv.optimizations = [tf.lite.Optimize.DEFAULT]
flat = conv.convert()
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_content=flat, num_threads=THREADS); it.allocate_tensors()
run_window = it.get_signature_runner("window")
def run():
    x = np.zeros((1, W), np.int32); m = np.zeros((1, W), np.int32)
    x[0, -PROMPT:], m[0, -PROMPT:] = ids[0], 1
    for _ in range(NEW):
        token = int(np.argmax(run_window(input_ids=x, attention_mask=m)["logits"]))
        x = np.roll(x, -1, 1); m = np.roll(m, -1, 1); x[0, -1], m[0, -1] = token, 1
def run():
    x = np.zeros((1, W), np.int32); m = np.zeros((1, W), np.int32)
    x[0, -PROMPT:], m[0, -PROMPT:] = ids[0], 1
    token = int(np.argmax(run_window(input_ids=x, attention_mask=m)["logits"]))  # prompt pass
    t = time.perf_counter()
    for _ in range(NEW - 1):
        x = np.roll(x, -1, 1); m = np.roll(m, -1, 1); x[0, -1], m[0, -1] = token, 1
        token = int(np.argmax(run_window(input_ids=x, attention_mask=m)["logits"]))
    return (NEW - 1) / (time.perf_counter() - t)
run()
report(bytes=len(flat), tok_s=max(run() for _ in range(3)))
""",
    "onnxruntime": EXPORT + """
from onnxruntime.quantization import quantize_dynamic, QuantType
from onnxruntime.quantization.shape_inference import quant_pre_process
pre = os.path.join(tmp, "pre.onnx"); q8 = os.path.join(tmp, "int8.onnx")
quant_pre_process(path, pre, skip_symbolic_shape=True)
quantize_dynamic(pre, q8, weight_type=QuantType.QInt8)
report(fp32_tok_s=ort_greedy(path, repeats=3, decode_only=True), int8_tok_s=ort_greedy(q8, repeats=3, decode_only=True),
       fp32_bytes=os.path.getsize(path), int8_bytes=os.path.getsize(q8))
""",
}


def run(code, args, *argv):
    common = COMMON.format(new=args.new, prompt=args.prompt, threads=args.threads)
    return run_system(common, code, args.threads, argv=argv)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", default="fp32,fp16,int8,int4")
    parser.add_argument("--peers", default="full_window_int8",
                        help="TFLite-section peers: full_window_int8, onnxruntime (transformers' ONNX, best of 3)")
    parser.add_argument("--sections", default="tflite,onnx,litertlm")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the ONNX section")
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rows, sections, onnx_rates = {}, args.sections.split(","), {}
    with tempfile.TemporaryDirectory(prefix="gpt2-124m-") as work:
        checkpoint = os.path.join(work, "checkpoint")
        print(f"checkpoint {run(CHECKPOINT, args, checkpoint)}", flush=True)
        for recipe in filter(None, args.recipes.split(",") if "tflite" in sections else []):
            rows[recipe] = run(TFLITE.replace("{recipe}", recipe), args, checkpoint)
            print(f"tfgpt2 {recipe:6s} {rows[recipe]}", flush=True)
        if "onnx" in sections:
            onnx_rates = export_onnx.run(args, checkpoint, work)
        if "litertlm" in sections:
            export_litertlm.run(args, checkpoint, work)
    if "tflite" not in sections:
        return
    peers = {name: run(SYSTEMS[name], args) for name in filter(None, args.peers.split(","))}
    for name, r in peers.items():
        print(f"{name} {r}", flush=True)
    fp32 = rows.get("fp32", {}).get("bytes")
    ort = peers.get("onnxruntime", {})
    if "int8_tok_s" not in ort and "transformers int8" in onnx_rates:  # the ONNX section's median
        ort = {"int8_tok_s": onnx_rates["transformers int8"]}
    print(f"\nGPT-2 124M, LiteRT interpreter, {args.threads} threads, {args.prompt}-token prompt, {args.new} greedy "
          f"tokens, 256-slot KV cache")
    print(f"{'file':22s} {'MB':>8s} {'x fp32':>7s} {'convert s':>9s} {'conv. RSS GB':>12s} {'tok/s':>7s} "
          f"{'/ ORT int8':>10s}")
    for recipe, r in rows.items():
        if "error" in r:
            print(f"gpt2_{recipe}.tflite  failed: {r['error']}")
            continue
        ratio = f"{r['bytes'] / fp32:.3f}" if fp32 else "-"
        vs = f"{r['tok_s'] / ort['int8_tok_s']:.2f}x" if ort.get("int8_tok_s") else "-"
        print(f"{'gpt2_' + recipe + '.tflite':22s} {r['bytes'] / 1e6:8.1f} {ratio:>7s} {r['convert_s']:9.0f} "
              f"{r['convert_peak_rss_gb']:12.2f} {r['tok_s']:7.1f} {vs:>10s}")
    if "fp32_tok_s" in ort:
        gap = f"{'':7s} {'':9s} {'':11s}"
        print(f"{'ONNX Runtime fp32':22s} {ort['fp32_bytes'] / 1e6:8.1f} {gap} {ort['fp32_tok_s']:7.1f}")
        print(f"{'ONNX Runtime int8':22s} {ort['int8_bytes'] / 1e6:8.1f} {gap} {ort['int8_tok_s']:7.1f}")
    fw = peers.get("full_window_int8", {})
    if "tok_s" in fw:
        gap = f"{'':7s} {'':9s} {'':11s}"
        print(f"{'full window int8 (no cache)':22s} {fw['bytes'] / 1e6:8.1f} {gap} {fw['tok_s']:7.1f}")
    for name, r in peers.items():
        if "error" in r:
            print(f"{name} failed: {r['error']}")


if __name__ == "__main__":
    main()
