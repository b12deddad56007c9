"""The trained reference model the quantization tests measure fidelity on, and its committed fixture.

Random weights say nothing about quantization error (their logits are nearly flat), so fidelity
numbers (top-1 agreement, perplexity) come from a small GPT-2 trained with the project's one
training recipe (tfgpt2.training.TrainingRecipe: 2 layers x 128, the real 50,257-token vocabulary)
on Python's pydoc topics. Training depends on the Python version's pydoc text and on float
rounding of the CPU, so the tests read the committed copy in tests/fixtures/reference/ (weights
stored as float16, read as float32: the model *is* those values), never a fresh training.

    python tools/reference_model.py write            # train with the recipe, write the fixture
    python tools/reference_model.py spread --seeds 0 1 2 3   # fidelity of each recipe over trainings
"""

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "reference")
SEQ_LEN = 64


def held_out_blocks():
    """The held-out (N, 64) blocks of the recipe's split (the fixture stores them too)."""
    with open(os.path.join(FIXTURE, "held_out.json"), encoding="utf-8") as f:
        return json.load(f)["blocks"]


def train(seed=0):
    """(model, train blocks, held-out blocks) trained with the default TrainingRecipe."""
    from tfgpt2 import GPT2Tokenizer, training

    recipe = training.TrainingRecipe(seed=seed, seq_len=SEQ_LEN)
    tok = GPT2Tokenizer()
    train_blocks, held_out = recipe.split(training.builtin_texts(), tok)
    model = recipe.new_model(tok.vocab_size)
    recipe.fit(model, train_blocks, verbose=0)
    return model, train_blocks, held_out


def write(directory=FIXTURE):
    """Trains seed 0 and writes config.json, model.safetensors (float16) and held_out/calibration ids."""
    import numpy as np
    from safetensors.numpy import save_file

    from tfgpt2 import weights

    model, train_blocks, held_out = train(0)
    os.makedirs(directory, exist_ok=True)
    model.config.to_json(os.path.join(directory, "config.json"))
    state = {k: v.astype(np.float16) for k, v in weights.state_dict(model).items()}
    save_file(state, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(directory, "held_out.json"), "w", encoding="utf-8") as f:
        json.dump({"format_version": 1, "written_by": "tools/reference_model.py",
                   "blocks": np.asarray(held_out[:8]).tolist(), "calibration": np.asarray(train_blocks[:16]).tolist()},
                  f)
    print(f"wrote {directory}")


def trained(seed, cache_dir=None):
    """(model, held-out blocks) of `train(seed)`; with `cache_dir`, saved there and reused."""
    from tfgpt2 import TFGPT2LMHeadModel

    path = cache_dir and os.path.join(cache_dir, f"reference-seed{seed}")
    if path and os.path.exists(os.path.join(path, "config.json")):
        with open(os.path.join(path, "held_out.json"), encoding="utf-8") as f:
            return TFGPT2LMHeadModel.from_pretrained(path), json.load(f)
    model, _, held_out = train(seed)
    held_out = [list(map(int, b)) for b in held_out[:8]]
    if path:
        model.save_pretrained(path)
        with open(os.path.join(path, "held_out.json"), "w", encoding="utf-8") as f:
            json.dump(held_out, f)
    return model, held_out


def spread(seeds, cache_dir=None):
    """Each recipe's fidelity on freshly trained models, one line per seed (the margin of the bounds)."""
    import tempfile

    import numpy as np

    from tfgpt2.export import pipeline

    for seed in seeds:
        model, held_out = trained(seed, cache_dir)
        with tempfile.TemporaryDirectory() as tmp:
            report = pipeline.export(model, os.path.join(tmp, "e"), formats=["tflite"],
                                     quantize=["fp16", "int8", "int4"], max_seq_len=96, prefill_len=32,
                                     held_out=np.asarray(held_out), log=lambda *_: None)
        row = {name: round(100 * r["fidelity"]["top1_agreement"], 2) for name, r in report["files"].items()}
        ppl = {name: round(r["fidelity"]["perplexity"] / r["fidelity"]["keras_perplexity"], 4)
               for name, r in report["files"].items()}
        print(json.dumps({"seed": seed, "top1_%": row, "ppl_ratio": ppl}), flush=True)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("write")
    s = sub.add_parser("spread")
    s.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    s.add_argument("--cache", default=None, help="keep the trained models here and reuse them")
    args = parser.parse_args(argv)
    if args.command == "write":
        write()
    else:
        spread(args.seeds, args.cache)


if __name__ == "__main__":
    main(sys.argv[1:])
