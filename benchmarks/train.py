"""Training speed at GPT-2 124M shape (random weights): tfgpt2 `fit` against transformers PyTorch and keras-hub.

    pip install ".[bench]" && python benchmarks/train.py [--batch 8] [--seq 128] [--steps 3] [--rounds 3]
        [--threads 2]

Every system trains the same 124M-shape GPT-2 (dropout 0.1, AdamW lr 1e-4, fp32) on batches of BATCH
rows x SEQ tokens, each in its own process with the same thread count: tfgpt2 `model.fit` with
`jit_compile=True` and with `jit_compile=False` (its internal shifted LM loss), transformers'
GPT2LMHeadModel in a PyTorch loop (`loss = model(ids, labels=ids).loss; loss.backward();
optimizer.step()`), and keras-hub's `GPT2CausalLM.fit` (its GPT2Backbone, SparseCategoricalCrossentropy
on next tokens, jit_compile=True). One timed run is STEPS optimizer steps on the same STEPS batches
(a Keras fit call starts its dataset over, so every system repeats them; "last loss" is each
system's mean loss of its last run); every process is warmed up (compiled) first, then each round
times one run of every system in turn (peers.interleaved).
tokens/s = STEPS x BATCH x SEQ / seconds, the median over rounds; "tfgpt2 XLA /" is the median of
the per-round ratios of tfgpt2 fit (XLA)'s speed to each system's. Peak RSS is each process's ru_maxrss at the end.
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import interleaved  # noqa: E402

COMMON = """
import json, os, resource, sys, time
import numpy as np
BATCH, SEQ, STEPS, THREADS, LR = {batch}, {seq}, {steps}, {threads}, 1e-4
rows = np.random.default_rng(0).integers(0, 50257, (BATCH * STEPS, SEQ + 1)).astype("int32")
def report(**kw):
    kw["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print("RESULT " + json.dumps(kw))
"""

TF_THREADS = """
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(THREADS)
tf.config.threading.set_inter_op_parallelism_threads(THREADS)
import keras
keras.utils.set_random_seed(0)
"""

TFGPT2 = TF_THREADS + """
from tfgpt2 import GPT2Config, TFGPT2LMHeadModel
model = TFGPT2LMHeadModel(GPT2Config.from_preset("gpt2"))
model.compile(optimizer=keras.optimizers.AdamW(LR), jit_compile={jit})
data = tf.data.Dataset.from_tensor_slices({{"input_ids": rows[:, :SEQ]}}).batch(BATCH, drop_remainder=True)
data = data.repeat().prefetch(2)
losses = []
def run():
    losses.append(model.fit(data, steps_per_epoch=STEPS, epochs=1, verbose=0).history["loss"][-1])
serve(run)
report(loss=losses[-1])
"""

KERAS_HUB = TF_THREADS + """
import keras_hub
backbone = keras_hub.models.GPT2Backbone(vocabulary_size=50257, num_layers=12, num_heads=12, hidden_dim=768,
                                         intermediate_dim=3072, max_sequence_length=1024, dropout=0.1)
model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
model.compile(optimizer=keras.optimizers.AdamW(LR),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True)
x = {{"token_ids": rows[:, :SEQ], "padding_mask": np.ones((len(rows), SEQ), bool)}}
data = tf.data.Dataset.from_tensor_slices((x, rows[:, 1:])).batch(BATCH, drop_remainder=True).repeat().prefetch(2)
losses = []
def run():
    losses.append(model.fit(data, steps_per_epoch=STEPS, epochs=1, verbose=0).history["loss"][-1])
serve(run)
report(loss=losses[-1])
"""

TORCH = """
import torch, transformers
torch.set_num_threads(THREADS)
torch.manual_seed(0)
model = transformers.GPT2LMHeadModel(transformers.GPT2Config()).train()
optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
batches = torch.from_numpy(rows[:, :SEQ].astype("int64")).split(BATCH)
state = {{"loss": None}}
def run():  # the first STEPS batches, as each Keras fit call starts the dataset over
    for ids in batches[:STEPS]:
        loss = model(ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state.setdefault("losses", []).append(float(loss))
    state["loss"], state["losses"] = float(np.mean(state["losses"])), []
serve(run)
report(loss=state["loss"])
"""

SYSTEMS = (("tfgpt2 fit (XLA)", TFGPT2.replace("{jit}", "True")),
           ("tfgpt2 fit (no XLA)", TFGPT2.replace("{jit}", "False")),
           ("transformers PyTorch", TORCH),
           ("keras-hub fit", KERAS_HUB))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=6, help="optimizer steps per timed run")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    head = COMMON.format(batch=args.batch, seq=args.seq, steps=args.steps, threads=args.threads)
    systems = {name: (head + code.format(), sys.executable) for name, code in SYSTEMS}
    times, results = interleaved(systems, args.rounds, args.threads)
    tokens = args.steps * args.batch * args.seq
    first = SYSTEMS[0][0]
    print(f"\nGPT-2 124M shape, fp32, batch {args.batch} x {args.seq} tokens, {args.steps} steps per run, "
          f"{args.threads} threads, median of {args.rounds} interleaved rounds")
    print(f"{'system':24s}{'tokens/s':>10s}{'tfgpt2 XLA /':>14s}{'peak RSS GB':>13s}{'last loss':>11s}")
    for name, _ in SYSTEMS:
        seconds = [t for t in times[name] if t]
        result = results[name]
        if not seconds:
            print(f"{name:24s} failed: {result.get('error', 'no result')}")
            continue
        ratios = [b / a for a, b in zip(times[first], times[name]) if a and b]  # tfgpt2's speed / this one's
        print(f"{name:24s}{tokens / statistics.median(seconds):>10.0f}"
              f"{statistics.median(ratios) if ratios else float('nan'):>13.2f}x"
              f"{result.get('peak_rss_gb', float('nan')):>13.2f}{result.get('loss', float('nan')):>11.3f}")


if __name__ == "__main__":
    main()
