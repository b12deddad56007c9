"""TF Serving speed at GPT-2 124M shape (random weights): the SavedModel's generate against model.generate.

    pip install ".[bench]" && python benchmarks/serving.py [--new 128] [--prompt 32] [--threads 2] [--rounds 3]

One random 124M checkpoint is saved and exported as `tfgpt2 export` does (export/saved_model.py).
Three systems, each in its own process with the same thread count, decode the same prompt:
`model.generate` (the checkpoint loaded with from_pretrained; XLA loop), the SavedModel's `generate`
signature loaded with `tf.saved_model.load` (a plain graph: what TF Serving runs by default), and its
`generate_xla` (for TF Serving with `--xla_cpu_compilation_enabled`). Cases: greedy and top-k 50
sampling (temperature 1), at batch 1 and batch 8, NEW tokens after a PROMPT-token prompt, eos off.
Each case keeps one process per system alive and times one generate of every system in turn, round
after round (peers.interleaved); tok/s = batch x NEW / seconds, the median over rounds, and
"/ generate" is the median of the per-round ratios. Greedy tokens are compared across the systems.
The GEMV note prints the tok/s that reading each step's weights once would allow at the GEMV rate
each runtime reaches on a 124M block shape (chained 3072 x 768 products), measured in the same run:
fp32 in the plain graph and in XLA, and int8 weights in the plain graph (TF's int8 MatMul kernel),
and the other plain-graph kernels that read fewer weight bytes (bf16 MatMul, QuantizedMatMul,
UniformQuantizedDotHybrid).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import interleaved, run_system  # noqa: E402

COMMON = """
import json, os, sys, time
import numpy as np
import tensorflow as tf
NEW, PROMPT, THREADS, BATCH, SAMPLE = {new}, {prompt}, {threads}, {batch}, {sample}
tf.config.threading.set_intra_op_parallelism_threads(THREADS)
tf.config.threading.set_inter_op_parallelism_threads(THREADS)
ids = np.random.default_rng(0).integers(0, 50257, (BATCH, PROMPT)).astype("int32")
CKPT, EXPORT = {ckpt!r}, {export!r}
last = {{}}
def report(**kw):
    print("RESULT " + json.dumps(kw))
"""

PREPARE = """
from tfgpt2 import GPT2Config, TFGPT2LMHeadModel
from tfgpt2.export import saved_model
model = TFGPT2LMHeadModel(GPT2Config.from_preset("gpt2"))
model(np.zeros((1, 2), np.int32))
model.save_pretrained(CKPT)
saved_model.build(TFGPT2LMHeadModel.from_pretrained(CKPT), EXPORT, max_new_tokens_cap=NEW)
report(params=model.count_params())
"""

GENERATE = """
from tfgpt2 import TFGPT2LMHeadModel
model = TFGPT2LMHeadModel.from_pretrained(CKPT)
kw = dict(do_sample=True, top_k=50, temperature=1.0, seed=0) if SAMPLE else {{}}
def run():
    out = model.generate(ids, max_new_tokens=NEW, eos_token_id=[], **kw)
    last["tokens"] = np.asarray(out)[:, PROMPT:].tolist()
serve(run)
report(tokens=last["tokens"])
"""

SIGNATURE = """
signature = tf.saved_model.load(EXPORT).signatures["{name}"]
request = dict(input_ids=tf.constant(ids), attention_mask=tf.ones_like(ids), max_new_tokens=tf.constant(NEW),
               temperature=tf.constant(1.0 if SAMPLE else 0.0), top_k=tf.constant(50 if SAMPLE else 0),
               top_p=tf.constant(1.0), repetition_penalty=tf.constant(1.0), seed=tf.constant(0, tf.int64),
               eos_token_id=tf.constant(-1))
def run():
    last["tokens"] = signature(**request)["sequences"].numpy().tolist()
serve(run)
report(tokens=last["tokens"])
"""

GEMV = """
# the fastest (out, in) fp32 GEMV each runtime reaches on the 124M block shapes: 16 chained products
# of 3072 x 768 (beyond the caches), plain graph and XLA
rng = np.random.default_rng(0)
weights = [tf.Variable(rng.normal(0, .02, (3072, 768)).astype("float32")) for _ in range(16)]
def chain(x):
    for w in weights:
        x = x + tf.matmul(x, w, transpose_b=True)[:, :768] * 1e-3
    return x
int8 = [tf.Variable(rng.integers(-127, 128, (3072, 768)).astype("int8")) for _ in range(16)]
def chain_int8(x):  # the same products from int8 weights, as an int8 SavedModel would run them without XLA
    for w in int8:
        y = tf.matmul(tf.cast(x * 8, tf.int8), w, transpose_b=True, output_type=tf.int32)
        x = x + tf.cast(y[:, :768], tf.float32) * 1e-6
    return x
bf16 = [tf.Variable(tf.cast(w, tf.bfloat16)) for w in weights]
def chain_bf16(x):  # bfloat16 weights: half the bytes, if TF's kernel read them at memory speed
    for w in bf16:
        x = x + tf.cast(tf.matmul(tf.cast(x, tf.bfloat16), w, transpose_b=True)[:, :768], tf.float32) * 1e-3
    return x
uint8 = [tf.Variable(rng.integers(0, 255, (768, 3072)).astype("uint8")) for _ in range(16)]
def chain_quantized_matmul(x):  # TF's QuantizedMatMul (quint8 x quint8 -> qint32)
    for w in uint8:
        qx, lo, hi = tf.quantization.quantize(x, -8.0, 8.0, tf.quint8)
        y, _, _ = tf.raw_ops.QuantizedMatMul(a=qx, b=tf.bitcast(w, tf.quint8), min_a=lo, max_a=hi, min_b=-1.0,
                                             max_b=1.0, Toutput=tf.qint32)
        x = x + tf.cast(tf.bitcast(y, tf.int32)[:, :768], tf.float32) * 1e-9
    return x
int8_t = [tf.Variable(tf.transpose(w)) for w in int8]  # (in, out)
def chain_hybrid(x):  # TF's UniformQuantizedDotHybrid: float activations, per-channel qint8 weights
    for w in int8_t:
        y = tf.raw_ops.UniformQuantizedDotHybrid(
            lhs=x, rhs=tf.bitcast(w, tf.qint8), rhs_scales=tf.ones((3072,)),
            rhs_zero_points=tf.zeros((3072,), tf.int32), Tout=tf.float32, rhs_quantization_min_val=-127,
            rhs_quantization_max_val=127, rhs_quantization_axis=1)
        x = x + y[:, :768] * 1e-3
    return x
x = tf.constant(rng.normal(0, 1, (1, 768)).astype("float32"))
rates = dict()
for name, jit, fn in (("graph", False, chain), ("xla", True, chain), ("graph_int8", False, chain_int8),
                      ("graph_bf16", False, chain_bf16), ("graph_quantized_matmul", False, chain_quantized_matmul),
                      ("graph_hybrid_int8", False, chain_hybrid)):
    fn = tf.function(fn, jit_compile=jit)
    fn(x).numpy()
    seconds = []
    for _ in range(10):
        t0 = time.perf_counter()
        fn(x).numpy()
        seconds.append(time.perf_counter() - t0)
    rates[name] = 16 * 3072 * 768 / min(seconds)  # weights per second
report(**rates)
"""

SYSTEMS = (("generate", GENERATE), ("saved_model", SIGNATURE.replace("{name}", "generate")),
           ("saved_model_xla", SIGNATURE.replace("{name}", "generate_xla")))


def common(args, batch, sample, ckpt, export):
    return COMMON.format(new=args.new, prompt=args.prompt, threads=args.threads, batch=batch, sample=sample,
                         ckpt=ckpt, export=export)


def run_case(args, batch, sample, ckpt, export):
    """{system: (median tok/s, median ratio to generate)}, {system: tokens}."""
    head = common(args, batch, sample, ckpt, export)
    systems = {name: (head + code.format(), sys.executable) for name, code in SYSTEMS}
    times, results = interleaved(systems, args.rounds, args.threads)
    rows = {}
    for name, _ in SYSTEMS:
        seconds = [t for t in times[name] if t]
        if not seconds:
            rows[name] = (results[name].get("error", "failed"), None)
            continue
        ratios = [g / t for g, t in zip(times["generate"], times[name]) if g and t]
        rows[name] = (batch * args.new / statistics.median(seconds), statistics.median(ratios) if ratios else None)
    return rows, {name: results[name].get("tokens") for name, _ in SYSTEMS}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", default="1,8")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tfgpt2-serving-") as tmp:
        ckpt, export = os.path.join(tmp, "ckpt"), os.path.join(tmp, "saved_model", "1")
        prepared = run_system(common(args, 1, False, ckpt, export) + PREPARE, "", args.threads)
        if "error" in prepared:
            sys.exit(f"export failed: {prepared['error']}")
        table = []
        for batch in (int(b) for b in args.batches.split(",") if b):  # --batches "": the GEMV note alone
            for sample in (False, True):
                rows, tokens = run_case(args, batch, sample, ckpt, export)
                same = "" if sample else ("greedy tokens identical" if len({json.dumps(t) for t in tokens.values()})
                                          == 1 else "GREEDY TOKENS DIFFER")
                table.append((batch, "top-k 50" if sample else "greedy", rows, same))
        gemv = run_system(common(args, 1, False, ckpt, export) + GEMV, "", args.threads)
    print(f"\nGPT-2 124M shape, {args.prompt}-token prompt, {args.new} new tokens, {args.threads} threads, "
          f"median of {args.rounds} interleaved rounds")
    print(f"{'batch':>5s} {'mode':9s} {'system':16s} {'tok/s':>8s} {'/ generate':>11s}")
    for batch, mode, rows, same in table:
        for name, (rate, ratio) in rows.items():
            shown = f"{rate:8.1f}" if isinstance(rate, float) else f"  {rate}"
            print(f"{batch:5d} {mode:9s} {name:16s} {shown} {'' if ratio is None else f'{ratio:10.2f}x'}")
        if same:
            print(f"{'':16s}{same}")
    if "error" not in gemv:
        graph, xla, int8 = gemv["graph"], gemv["xla"], gemv["graph_int8"]
        body, head = 85.0e6, 38.6e6  # weights per token at 124M: the blocks, the tied LM head
        print(f"\nGEMV rate (weights/s): graph fp32 {graph / 1e9:.2f} G ({4 * graph / 1e9:.1f} GB/s), XLA fp32 "
              f"{xla / 1e9:.2f} G ({4 * xla / 1e9:.1f} GB/s), graph int8 {int8 / 1e9:.2f} G. Reading each weight once "
              f"at those rates, batch 1: graph fp32 {graph / (body + head):.1f} tok/s, graph int8 "
              f"{int8 / (body + head):.1f} tok/s, XLA with the int8-screened head {xla / (body + head / 4):.1f} tok/s")
        others = {"bf16 MatMul": "graph_bf16", "QuantizedMatMul (quint8)": "graph_quantized_matmul",
                  "UniformQuantizedDotHybrid (qint8)": "graph_hybrid_int8"}
        print("Other plain-graph kernels with fewer weight bytes (weights/s): " + ", ".join(
            f"{label} {gemv[key] / 1e9:.2f} G" for label, key in others.items() if key in gemv))


if __name__ == "__main__":
    main()
