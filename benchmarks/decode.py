"""Greedy decode speed at GPT-2 124M shape (random weights), every peer in the same run.

    pip install ".[bench]" && python benchmarks/decode.py [--new 128] [--prompt 32] [--threads 2] [--only tfgpt2,hf_torch]

Each system runs in its own subprocess with the same thread count: tfgpt2 (XLA loop),
keras-hub GPT2CausalLM.generate (TF backend), transformers PyTorch generate, ONNX Runtime
(transformers' model exported with torch.onnx.export(dynamo=True), greedy loop with past),
and transformers 4.57.6 TFGPT2LMHeadModel with tf.function(generate, jit_compile=True)
(in the venv made by tools/hf_tf_venv.sh). Also: prefill of a 512-token prompt, batch-8
throughput, and the fp32 bandwidth bound (weight bytes per token / measured GEMV bandwidth).
"""

import argparse
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import EXPORT, run_system  # noqa: E402

COMMON = """
import json, os, sys, time
import numpy as np
NEW, PROMPT, THREADS = {new}, {prompt}, {threads}
ids = np.random.default_rng(0).integers(0, 50257, (1, PROMPT)).astype("int64")
def best(fn, repeats=3):
    fn()  # warm-up / compile
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    return min(times)
def report(**kw):
    print("RESULT " + json.dumps(kw))
"""

SYSTEMS = {
    "tfgpt2": """
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(THREADS); tf.config.threading.set_inter_op_parallelism_threads(THREADS)
from tfgpt2 import GPT2Config, TFGPT2LMHeadModel
model = TFGPT2LMHeadModel(GPT2Config.from_preset("gpt2"))
x = ids.astype("int32")
dt = best(lambda: model.generate(x, max_new_tokens=NEW))
long = np.random.default_rng(1).integers(0, 50257, (1, 512)).astype("int32")
prefill = best(lambda: model.generate(long, max_new_tokens=1))
x8 = np.random.default_rng(2).integers(0, 50257, (8, PROMPT)).astype("int32")
dt8 = best(lambda: model.generate(x8, max_new_tokens=NEW), repeats=1)
report(tok_s=NEW / dt, prefill_512_s=prefill, batch8_tok_s=8 * NEW / dt8)
""",
    "keras_hub": """
os.environ["KERAS_BACKEND"] = "tensorflow"
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(THREADS); tf.config.threading.set_inter_op_parallelism_threads(THREADS)
import keras_hub
backbone = keras_hub.models.GPT2Backbone(vocabulary_size=50257, num_layers=12, num_heads=12, hidden_dim=768,
                                         intermediate_dim=3072, max_sequence_length=1024)
lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None, sampler="greedy")
inputs = {"token_ids": np.concatenate([ids, np.zeros((1, NEW), "int64")], 1).astype("int32"),
          "padding_mask": np.concatenate([np.ones((1, PROMPT)), np.zeros((1, NEW))], 1).astype(bool)}
dt = best(lambda: lm.generate(inputs, stop_token_ids=None))
report(tok_s=NEW / dt)
""",
    "hf_torch": """
import torch, transformers
torch.set_num_threads(THREADS)
model = transformers.GPT2LMHeadModel(transformers.GPT2Config()).eval()
x = torch.tensor(ids)
def run():
    with torch.no_grad():
        model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=NEW, min_new_tokens=NEW,
                       do_sample=False, pad_token_id=0)
dt = best(run)
long = torch.tensor(np.random.default_rng(1).integers(0, 50257, (1, 512)))
def pre():
    with torch.no_grad():
        model(long)
report(tok_s=NEW / dt, prefill_512_s=best(pre))
""",
    "onnxruntime": EXPORT + """
report(tok_s=ort_greedy(path, repeats=3))
""",
    "hf_tf_4_57": """
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(THREADS); tf.config.threading.set_inter_op_parallelism_threads(THREADS)
import transformers
assert transformers.__version__ == "4.57.6", transformers.__version__
model = transformers.TFGPT2LMHeadModel(transformers.GPT2Config())
model(tf.constant(ids[:, :2]))
gen = tf.function(model.generate, jit_compile=True)
x = tf.constant(ids.astype("int32"))
def run():
    return gen(x, attention_mask=tf.ones_like(x), max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False,
               pad_token_id=0).numpy()
report(tok_s=NEW / best(run))
""",
    "bandwidth": """
W = np.random.default_rng(0).standard_normal((768, 3 * 50257), dtype=np.float32)
x = np.ones((1, 768), np.float32)
dt = best(lambda: x @ W, repeats=10)
report(gb_s=W.nbytes / dt / 1e9)
""",
}


def run(name, args, python=sys.executable):
    common = COMMON.format(new=args.new, prompt=args.prompt, threads=args.threads)
    return run_system(common, SYSTEMS[name], args.threads, python)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default=",".join(SYSTEMS))
    args = parser.parse_args()
    results = {}
    for name in args.only.split(","):
        python = sys.executable
        if name == "hf_tf_4_57":
            venv = subprocess.run(["bash", os.path.join(ROOT, "tools", "hf_tf_venv.sh")], capture_output=True,
                                  text=True).stdout.strip().splitlines()
            python = os.path.join(venv[-1], "bin", "python") if venv else python
        results[name] = run(name, args, python)
        print(f"{name:12s} {results[name]}", flush=True)
    ours = results.get("tfgpt2", {}).get("tok_s")
    print(f"\nGPT-2 124M fp32, batch 1, {args.prompt}-token prompt, {args.new} greedy tokens, {args.threads} threads")
    print(f"{'system':14s} {'tok/s':>8s} {'tfgpt2 / peer':>14s}")
    for name, r in results.items():
        if "tok_s" in r:
            ratio = f"{ours / r['tok_s']:.2f}x" if ours else "-"
            print(f"{name:14s} {r['tok_s']:8.1f} {ratio:>14s}")
        elif "error" in r:
            print(f"{name:14s} {'failed':>8s}  {r['error']}")
    bw = results.get("bandwidth", {}).get("gb_s")
    if bw and ours:
        weight_bytes = 124_439_808 * 4  # GPT-2 124M parameters (tied head counted once), fp32
        bound = bw * 1e9 / weight_bytes
        print(f"fp32 bandwidth bound: {bw:.1f} GB/s / {weight_bytes / 1e6:.0f} MB per token = {bound:.1f} tok/s; "
              f"tfgpt2 reaches {100 * ours / bound:.0f}%")
    if "tfgpt2" in results and "prefill_512_s" in results["tfgpt2"]:
        r = results["tfgpt2"]
        peer = results.get("hf_torch", {}).get("prefill_512_s")
        print(f"prefill 512 tokens: tfgpt2 {r['prefill_512_s'] * 1000:.0f} ms"
              + (f", HF PyTorch {peer * 1000:.0f} ms" if peer else "")
              + f"; batch 8 throughput: {r['batch8_tok_s']:.1f} tok/s")


if __name__ == "__main__":
    main()
