"""How often the int8 screen decides a greedy step by itself, on a trained model.

    tfgpt2 demo --steps 1200 --n-embd 256 --n-layer 4 --n-head 8 --skip-export --out demo
    python benchmarks/greedy_screen.py demo [--prompts 20] [--new 40]

Greedy-decodes prompts from the demo's training texts (pydoc pages), then screens the hidden
state of every generated position: a step the screen can't decide reads the fp32 head as well
(tfgpt2/generation/screen.py). Also checks each decided token against the generated one.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfgpt2 import GPT2Tokenizer, TFGPT2LMHeadModel, training  # noqa: E402
from tfgpt2.generation import screen as greedy_head  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="an HF-format GPT-2 directory, e.g. the output of tfgpt2 demo")
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--new", type=int, default=40)
    args = parser.parse_args()
    model = TFGPT2LMHeadModel.from_pretrained(args.model)
    tok, texts = GPT2Tokenizer(), training.builtin_texts()
    wte = model.transformer.wte.embeddings
    screen = greedy_head.build_screen(wte)
    blocked = tf.zeros([wte.shape[0]], tf.bool)
    screened = tf.function(lambda h: greedy_head.screened_argmax(h, wte, screen, blocked), jit_compile=True)
    decided = total = agree = 0
    for t in np.random.default_rng(0).choice(len(texts), args.prompts, replace=False):
        ids = tok.encode(texts[t])[:24]
        out = model.generate(np.array([ids], np.int32), max_new_tokens=args.new).numpy()[0]
        hidden = model.transformer(out[None].astype(np.int32))[0][0]  # (T, C): the states generate saw
        for pos in range(len(ids) - 1, len(out) - 1):
            tokens, proven = screened(hidden[pos:pos + 1])
            total += 1
            decided += bool(proven)
            agree += bool(proven) and int(tokens[0]) == int(out[pos + 1])
    print(f"{args.model}: {model.count_params() / 1e6:.1f}M parameters, vocab {wte.shape[0]}; the screen decided "
          f"{decided}/{total} greedy steps ({100 * decided / total:.1f} %); decided tokens == generated: "
          f"{agree}/{decided}")


if __name__ == "__main__":
    main()
