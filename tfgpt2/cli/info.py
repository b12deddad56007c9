"""`tfgpt2 info`: config, parameter count and file sizes of a model."""

import os

HELP = "config, parameter count and file sizes of a model"


def add_arguments(p):
    p.add_argument("model")


def parameter_count(c):
    """Weights of a GPT-2 with config `c` (tied LM head), without building it."""
    block = 4 * c.n_embd + 3 * c.n_embd * (c.n_embd + 1) + c.n_embd * (c.n_embd + 1) \
        + 2 * c.n_embd * c.inner_dim + c.inner_dim + c.n_embd
    return c.vocab_size * c.n_embd + c.n_positions * c.n_embd + 2 * c.n_embd + c.n_layer * block


def run(args):
    from tfgpt2 import GPT2Config
    from tfgpt2.hub import WEIGHT_FILES

    cfg = GPT2Config.from_pretrained(args.model)
    print(f"{args.model}: GPT-2, {parameter_count(cfg) / 1e6:.1f}M parameters (tied LM head)")
    for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "activation_function"):
        print(f"  {name:24s} {getattr(cfg, name)}")
    if os.path.isdir(args.model):
        for name in sorted(os.listdir(args.model)):
            if name in WEIGHT_FILES or name.endswith((".json", ".txt")):
                print(f"  {name:24s} {os.path.getsize(os.path.join(args.model, name)) / 1e6:.2f} MB")
