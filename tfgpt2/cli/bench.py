"""`tfgpt2 bench`: greedy decode speed of a model (XLA generate) and of an export's .tflite files.

For peer comparisons in one run (keras-hub, HF PyTorch, ONNX Runtime, HF TF 4.57) use
benchmarks/decode.py and benchmarks/export.py; this command measures what you have in hand and
can draw it (`--chart tok_s.png`).
"""

import json
import os
import time

import numpy as np

HELP = "decode tokens/s of a model and its .tflite files (+ chart)"


def add_arguments(p):
    p.add_argument("--model", required=True,
                   help="HF-format directory, or a preset name (gpt2, gpt2-medium, …) for random weights")
    p.add_argument("--export-dir", help="a `tfgpt2 export` directory: also time each .tflite in LiteRT")
    p.add_argument("--prompt", type=int, default=32, help="prompt tokens")
    p.add_argument("--new", type=int, default=64, help="generated tokens")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--chart", help="write a tokens/s bar chart to this PNG")
    p.add_argument("--json", action="store_true", help="print the results as JSON")


def check(args):
    if args.prompt < 1 or args.new < 1:
        raise ValueError(f"--prompt and --new must be >= 1, got {args.prompt} and {args.new}")
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.chart:
        parent = os.path.dirname(os.path.abspath(args.chart))
        if not os.path.isdir(parent):
            raise FileNotFoundError(f"cannot write --chart {args.chart}: {parent} does not exist")
    if args.export_dir and not os.path.exists(os.path.join(args.export_dir, "model.json")):
        raise FileNotFoundError(f"{args.export_dir} has no model.json; pass a directory written by `tfgpt2 export`")


def load(src):
    from tfgpt2 import GPT2Config, TFGPT2LMHeadModel
    from tfgpt2.config import PRESETS

    if src in PRESETS:
        model = TFGPT2LMHeadModel(GPT2Config.from_preset(src))
        model(np.zeros((1, 2), np.int32))
        return model
    return TFGPT2LMHeadModel.from_pretrained(src)


def run(args):
    check(args)
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    except RuntimeError:  # TF already running in this process (bench called from Python): its pools stay
        pass
    model = load(args.model)
    cfg = model.config
    if args.prompt + args.new > cfg.n_positions:
        raise ValueError(f"--prompt + --new = {args.prompt + args.new} exceeds n_positions {cfg.n_positions}")
    ids = np.random.default_rng(0).integers(0, cfg.vocab_size, (1, args.prompt)).astype(np.int32)
    model.generate(ids, max_new_tokens=args.new, eos_token_id=[])  # compile
    start = time.perf_counter()
    model.generate(ids, max_new_tokens=args.new, eos_token_id=[])
    results = {"tfgpt2 XLA generate": args.new / (time.perf_counter() - start)}
    if args.export_dir:
        from tfgpt2.export import contract, verify

        for name in contract.read(args.export_dir)["models"]:
            rate = verify.decode_speed(os.path.join(args.export_dir, name), steps=args.new, threads=args.threads)
            results[f"LiteRT {name}"] = rate
    if args.json:
        print(json.dumps(results))
    else:
        print(f"{args.model}: {cfg.n_layer} layers, {cfg.n_embd} wide; {args.prompt}-token prompt, "
              f"{args.new} greedy tokens, {args.threads} threads")
        for name, rate in results.items():
            print(f"  {name:36s} {rate:8.1f} tok/s")
    if args.chart:
        chart(results, args.chart, f"{args.model}: greedy decode, {args.threads} threads")
        print(f"chart: {args.chart}")
    return results


def chart(results, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, rates = list(results), [results[n] for n in results]
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(names) + 1.5), dpi=100)
    bars = ax.barh(names, rates, color="#4a7bd0")
    ax.bar_label(bars, fmt="%.1f")
    ax.invert_yaxis()
    ax.set_xlabel("tokens / s")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
