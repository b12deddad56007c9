"""Greedy decode speed at GPT-2 124M shape (random weights), every peer in the same run.

    pip install ".[bench]" && python benchmarks/decode.py [--new 128] [--prompt 32] [--threads 2] [--rounds 5]
                                                         [--only tfgpt2,hf_torch]

Each system runs in its own subprocess with the same thread count: tfgpt2 (XLA loop),
keras-hub GPT2CausalLM.generate (TF backend), transformers PyTorch generate, ONNX Runtime
(transformers' model exported with torch.onnx.export(dynamo=True), greedy loop with past),
and transformers 4.57.6 TFGPT2LMHeadModel with tf.function(generate, jit_compile=True)
(in the venv made by tools/hf_tf_venv.sh). Also: prefill of a 512-token prompt, batch-8
throughput, and the bandwidth bound (weight bytes per token / measured GEMV bandwidth) for fp32
weights and for what tfgpt2's greedy decode reads (int8-screened LM head, tfgpt2/generation/screen.py).
The processes stay alive and each round times one generate of every system in turn (peers.interleaved):
tok/s are the median and best over rounds, and tfgpt2 / peer is the median of the per-round ratios.
"""

import argparse
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import EXPORT, decode_arguments, interleaved  # noqa: E402

COMMON = """
import json, os, sys, time
import numpy as np
NEW, PROMPT, THREADS = {new}, {prompt}, {threads}
ids = np.random.default_rng(0).integers(0, 50257, (1, PROMPT)).astype("int64")
def report(**kw):
    print("RESULT " + json.dumps(kw))
"""

SYSTEMS = {
    "tfgpt2": """
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(THREADS)
tf.config.threading.set_inter_op_parallelism_threads(THREADS)
from tfgpt2 import GPT2Config, TFGPT2LMHeadModel
model = TFGPT2LMHeadModel(GPT2Config.from_preset("gpt2"))
x = ids.astype("int32")
serve(lambda: model.generate(x, max_new_tokens=NEW, eos_token_id=[]))
long = np.random.default_rng(1).integers(0, 50257, (1, 512)).astype("int32")
prefill = best(lambda: model.generate(long, max_new_tokens=1))
x8 = np.random.default_rng(2).integers(0, 50257, (8, PROMPT)).astype("int32")
dt8 = best(lambda: model.generate(x8, max_new_tokens=NEW, eos_token_id=[]), repeats=1)
report(prefill_512_s=prefill, batch8_tok_s=8 * NEW / dt8)
""",
    "keras_hub": """
os.environ["KERAS_BACKEND"] = "tensorflow"
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(THREADS)
tf.config.threading.set_inter_op_parallelism_threads(THREADS)
import keras_hub
backbone = keras_hub.models.GPT2Backbone(vocabulary_size=50257, num_layers=12, num_heads=12, hidden_dim=768,
                                         intermediate_dim=3072, max_sequence_length=1024)
lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None, sampler="greedy")
inputs = {"token_ids": np.concatenate([ids, np.zeros((1, NEW), "int64")], 1).astype("int32"),
          "padding_mask": np.concatenate([np.ones((1, PROMPT)), np.zeros((1, NEW))], 1).astype(bool)}
serve(lambda: lm.generate(inputs, stop_token_ids=None))
report()
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
serve(run)
long = torch.tensor(np.random.default_rng(1).integers(0, 50257, (1, 512)))
def pre():
    with torch.no_grad():
        model(long)
report(prefill_512_s=best(pre))
""",
    "onnxruntime": EXPORT + """
serve(ort_greedy_runner(path))
report()
""",
    "hf_tf_4_57": """
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(THREADS)
tf.config.threading.set_inter_op_parallelism_threads(THREADS)
import transformers
assert transformers.__version__ == "4.57.6", transformers.__version__
model = transformers.TFGPT2LMHeadModel(transformers.GPT2Config())
model(tf.constant(ids[:, :2]))
gen = tf.function(model.generate, jit_compile=True)
x = tf.constant(ids.astype("int32"))
def run():
    return gen(x, attention_mask=tf.ones_like(x), max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False,
               pad_token_id=0).numpy()
serve(run)
report()
""",
    "bandwidth": """
W = np.random.default_rng(0).standard_normal((768, 3 * 50257), dtype=np.float32)
x = np.ones((1, 768), np.float32)
fastest = [float("inf")]
def gemvs():  # a round's sample; the bound uses the fastest single GEMV of the whole run
    for _ in range(10):
        t = time.perf_counter(); x @ W; fastest[0] = min(fastest[0], time.perf_counter() - t)
serve(gemvs)
report(gb_s=W.nbytes / fastest[0] / 1e9)
""",
}


def hf_tf_python():
    """The interpreter of the transformers 4.57 TF venv (made on first use by tools/hf_tf_venv.sh)."""
    venv = subprocess.run(["bash", os.path.join(ROOT, "tools", "hf_tf_venv.sh")], capture_output=True,
                          text=True).stdout.strip().splitlines()
    return os.path.join(venv[-1], "bin", "python") if venv else sys.executable


def summarize(times, results, args):
    """Per system: median and best tok/s over rounds, and tfgpt2's speed over each peer's, per round."""
    rates = {name: [args.new / t for t in ts if t] for name, ts in times.items() if name != "bandwidth"}
    ours = times.get("tfgpt2", [])
    print(f"\nGPT-2 124M fp32, batch 1, {args.prompt}-token prompt, {args.new} greedy tokens, {args.threads} threads, "
          f"{args.rounds} interleaved rounds")
    print(f"{'system':14s} {'median tok/s':>12s} {'best':>7s} {'tfgpt2 / peer (median of rounds, range)':>42s}")
    for name, rate in rates.items():
        if not rate:
            print(f"{name:14s} {'failed':>12s}  {results[name].get('error', '')}")
            continue
        ratios = sorted(p / o for o, p in zip(ours, times[name]) if o and p)
        ratio = (f"{statistics.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})"
                 if ratios and name != "tfgpt2" else "")
        print(f"{name:14s} {statistics.median(rate):12.1f} {max(rate):7.1f} {ratio:>42s}")
    weight_bytes = 124_439_808 * 4  # GPT-2 124M parameters (tied head counted once), fp32
    head = 50257 * 768
    screened_bytes = weight_bytes - 4 * head + head + 4 * 50257  # the screen: int8 head + row scales
    bw = results.get("bandwidth", {}).get("gb_s")
    if bw and rates.get("tfgpt2"):
        median, best = statistics.median(rates["tfgpt2"]), max(rates["tfgpt2"])
        for what, nbytes in (("fp32", weight_bytes), ("tfgpt2 greedy (int8-screened head)", screened_bytes)):
            bound = bw * 1e9 / nbytes
            print(f"{what} bandwidth bound: {bw:.1f} GB/s (fastest numpy GEMV of the run, {args.threads} threads) "
                  f"/ {nbytes / 1e6:.0f} MB per token = {bound:.1f} tok/s; tfgpt2 median reaches "
                  f"{100 * median / bound:.0f}%, best {100 * best / bound:.0f}%")
    extra = results.get("tfgpt2", {})
    if "prefill_512_s" in extra:
        peer = results.get("hf_torch", {}).get("prefill_512_s")
        print(f"prefill 512 tokens: tfgpt2 {extra['prefill_512_s'] * 1000:.0f} ms"
              + (f", HF PyTorch {peer * 1000:.0f} ms" if peer else "")
              + f"; batch 8 throughput: {extra['batch8_tok_s']:.1f} tok/s")


def main():
    parser = decode_arguments(argparse.ArgumentParser(description=__doc__,
                                                      formatter_class=argparse.RawDescriptionHelpFormatter))
    parser.add_argument("--only", default=",".join(SYSTEMS))
    args = parser.parse_args()
    common = COMMON.format(new=args.new, prompt=args.prompt, threads=args.threads)
    systems = {name: (common + SYSTEMS[name], hf_tf_python() if name == "hf_tf_4_57" else sys.executable)
               for name in args.only.split(",")}
    times, results = interleaved(systems, args.rounds, args.threads)
    summarize(times, results, args)


if __name__ == "__main__":
    main()
