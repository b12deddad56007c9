"""Quantized decode at GPT-2 124M shape (random weights): Keras model.quantize, its SavedModel, and llama.cpp.

    pip install ".[bench]" && python benchmarks/quantized.py [--new 128] [--prompt 32] [--threads 2] [--rounds 5]

One random 124M checkpoint is saved with save_pretrained and converted by llama.cpp's own converter
(benchmarks/llamacpp.py: F32, Q8_0, Q4_0). Each system runs in its own process with the same thread
count: tfgpt2 `model.generate` (XLA loop) on the float model and on `model.quantize("int8")` /
`("int4")` copies of it, greedy and top-k 50 sampling; the SavedModel `generate_xla` signature of each
quantized model (saved_model.build, loaded with tf.saved_model.load); llama.cpp greedy on each GGUF.
Batch 1, NEW tokens after a PROMPT-token prompt, eos off. The processes stay alive and each round times
one run of every system in turn (peers.interleaved): tok/s = NEW / median seconds, ratios are medians
of per-round ratios. After the rounds each process times the prefill of a 512-token prompt (best of 3).
Bandwidth bound per precision: the bytes of weights a decode step reads over the fastest numpy GEMV
of the run.
"""

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llamacpp  # noqa: E402
from decode import SYSTEMS as DECODE_SYSTEMS  # noqa: E402
from peers import decode_arguments, interleaved, run_system  # noqa: E402

COMMON = """
import json, os, sys, time
import numpy as np
NEW, PROMPT, THREADS = {new}, {prompt}, {threads}
CKPT, WORK = {ckpt!r}, {work!r}
ids = np.random.default_rng(0).integers(0, 50257, (1, PROMPT)).astype("int64")
long = np.random.default_rng(1).integers(0, 50257, (1, 512)).astype("int64")
def report(**kw):
    print("RESULT " + json.dumps(kw))
last = {{}}
"""

TF_THREADS = """
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(THREADS)
tf.config.threading.set_inter_op_parallelism_threads(THREADS)
"""

PREPARE = TF_THREADS + """
from tfgpt2 import GPT2Config, TFGPT2LMHeadModel
from tfgpt2.export import saved_model
model = TFGPT2LMHeadModel(GPT2Config.from_preset("gpt2"))
model.save_pretrained(CKPT)
for mode in ("int8", "int4"):
    quantized = TFGPT2LMHeadModel.from_pretrained(CKPT)
    quantized.quantize(mode)
    saved_model.build(quantized, os.path.join(WORK, f"saved_model_{mode}", "1"), max_new_tokens_cap=NEW)
report()
"""

KERAS = TF_THREADS + """
from tfgpt2 import TFGPT2LMHeadModel
model = TFGPT2LMHeadModel.from_pretrained(CKPT)
if "{mode}" != "fp32":
    model.quantize("{mode}")
kw = dict(do_sample=True, top_k=50, temperature=1.0, seed=0) if {sample} else dict(do_sample=False)
x = ids.astype("int32")
def run():
    last["tokens"] = np.asarray(model.generate(x, max_new_tokens=NEW, eos_token_id=[], **kw))[0, PROMPT:].tolist()
serve(run)
prefill = best(lambda: model.generate(long.astype("int32"), max_new_tokens=1, do_sample=False))
report(tokens=last["tokens"], prefill_512_s=prefill)
"""

SAVED_MODEL = TF_THREADS + """
signature = tf.saved_model.load(os.path.join(WORK, "saved_model_{mode}", "1")).signatures["generate_xla"]
x = tf.constant(ids.astype("int32"))
request = dict(input_ids=x, attention_mask=tf.ones_like(x), max_new_tokens=tf.constant(NEW),
               temperature=tf.constant(0.0), top_k=tf.constant(0), top_p=tf.constant(1.0),
               repetition_penalty=tf.constant(1.0), seed=tf.constant(0, tf.int64), eos_token_id=tf.constant(-1))
def run():
    last["tokens"] = signature(**request)["sequences"].numpy()[0].tolist()
serve(run)
report(tokens=last["tokens"])
"""

PRECISIONS = {"fp32": "f32", "int8": "q8_0", "int4": "q4_0"}  # tfgpt2 precision: llama.cpp type
GGUF_NAMES = {"f32": "F32", "q8_0": "Q8_0", "q4_0": "Q4_0"}
HEAD = 50257 * 768
BLOCKS = 124_439_808 - HEAD - 1024 * 768  # the transformer blocks' parameters
# bytes of weights one decode step reads: fp32 greedy reads the int8-screened head (generation/screen.py)
STEP_BYTES = {"fp32": BLOCKS * 4 + HEAD, "int8": BLOCKS + HEAD, "int4": BLOCKS // 2 + HEAD}


def systems(common):
    out = {}
    for mode, gguf in PRECISIONS.items():
        out[f"tfgpt2 {mode} greedy"] = common + KERAS.format(mode=mode, sample=False)
        out[f"tfgpt2 {mode} top-k 50"] = common + KERAS.format(mode=mode, sample=True)
        if mode != "fp32":
            out[f"SavedModel {mode} generate_xla"] = common + SAVED_MODEL.format(mode=mode)
        out[f"llama.cpp {GGUF_NAMES[gguf]}"] = None
    return out


def ratio(times, a, b):
    """Median over rounds of speed(a) / speed(b) (= seconds(b) / seconds(a)), or None."""
    pairs = [(ta, tb) for ta, tb in zip(times.get(a, []), times.get(b, [])) if ta and tb]
    return statistics.median(tb / ta for ta, tb in pairs) if pairs else None


def fmt(value, suffix="x"):
    return "-" if value is None else f"{value:.2f}{suffix}"


def main():
    parser = decode_arguments(argparse.ArgumentParser(description=__doc__,
                                                      formatter_class=argparse.RawDescriptionHelpFormatter))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tfgpt2-quantized-") as work:
        ckpt = os.path.join(work, "ckpt")
        common = COMMON.format(new=args.new, prompt=args.prompt, threads=args.threads, ckpt=ckpt, work=work)
        prepared = run_system(common, PREPARE, args.threads)
        if "error" in prepared:
            sys.exit(f"prepare failed: {prepared['error']}")
        ggufs = llamacpp.convert(ckpt, os.path.join(work, "gguf"), tuple(PRECISIONS.values()))
        chosen = {}
        for name, code in systems(common).items():
            if code is None:
                kind = next(k for k, v in GGUF_NAMES.items() if name.endswith(v))
                chosen[name] = (common + f"GGUF = {ggufs[kind]!r}\n" + llamacpp.SERVE + llamacpp.PREFILL,
                                llamacpp.build())
            else:
                chosen[name] = (code, sys.executable)
        chosen["bandwidth"] = (common + DECODE_SYSTEMS["bandwidth"], sys.executable)
        times, results = interleaved(chosen, args.rounds, args.threads)
    print(f"\nGPT-2 124M, batch 1, {args.prompt}-token prompt, {args.new} new tokens, {args.threads} threads, "
          f"{args.rounds} interleaved rounds (medians)")
    print(f"{'system':30s} {'tok/s':>7s} {'/ llama.cpp':>11s} {'/ own greedy':>12s} {'prefill 512':>11s} "
          f"{'time / llama.cpp':>16s}")
    bandwidth = results.get("bandwidth", {}).get("gb_s")
    for mode, gguf in PRECISIONS.items():
        peer = f"llama.cpp {GGUF_NAMES[gguf]}"
        greedy = f"tfgpt2 {mode} greedy"
        for name in [n for n in chosen if mode in n or n == peer]:
            seconds = [t for t in times[name] if t]
            if not seconds:
                print(f"{name:30s} failed: {results[name].get('error')}")
                continue
            prefill = results[name].get("prefill_512_s")
            peer_prefill = results.get(peer, {}).get("prefill_512_s")
            print(f"{name:30s} {args.new / statistics.median(seconds):7.1f} "
                  f"{fmt(ratio(times, name, peer) if name != peer else None):>11s} "
                  f"{fmt(ratio(times, name, greedy) if name not in (greedy, peer) else None):>12s} "
                  f"{'-' if prefill is None else f'{prefill * 1000:.0f} ms':>11s} "
                  f"{fmt(prefill / peer_prefill if prefill and peer_prefill and name != peer else None):>16s}")
        if bandwidth:
            print(f"  {mode} bandwidth bound: {bandwidth:.1f} GB/s / {STEP_BYTES[mode] / 1e6:.0f} MB per token = "
                  f"{bandwidth * 1e9 / STEP_BYTES[mode]:.1f} tok/s")
        tokens = {n: results.get(n, {}).get("tokens") for n in (greedy, f"SavedModel {mode} generate_xla")}
        if all(tokens.values()) and mode != "fp32":
            print(f"  greedy tokens, Keras {mode} vs its SavedModel: "
                  f"{'identical' if len({str(t) for t in tokens.values()}) == 1 else 'DIFFER'}")


if __name__ == "__main__":
    main()
