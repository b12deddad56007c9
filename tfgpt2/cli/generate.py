"""`tfgpt2 generate`: stream text from a model directory."""

import sys

from tfgpt2.cli.common import tokenizer_for

HELP = "stream text from a model directory"
DEFAULT_NEW_TOKENS = 40


def add_arguments(p):
    p.add_argument("--model", required=True, help="HF-format directory (config.json + weights) or hub id")
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help=f"default {DEFAULT_NEW_TOKENS}, fewer if the prompt leaves less room in n_positions")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-eos", action="store_true", help="do not stop at <|endoftext|>")


def run(args):
    import numpy as np

    from tfgpt2 import TFGPT2LMHeadModel

    if args.temperature < 0:
        raise ValueError(f"--temperature must be >= 0 (0 = greedy), got {args.temperature}")
    model = TFGPT2LMHeadModel.from_pretrained(args.model)
    tok = tokenizer_for(args.model)
    ids = np.asarray([tok.encode(args.prompt)], np.int32)
    room = model.config.n_positions - ids.shape[1]
    if room < 1:
        raise ValueError(f"the prompt is {ids.shape[1]} tokens; the model reads at most n_positions="
                         f"{model.config.n_positions} including what it generates: shorten the prompt")
    max_new_tokens = min(DEFAULT_NEW_TOKENS, room) if args.max_new_tokens is None else args.max_new_tokens
    sys.stdout.write(args.prompt)
    made = []

    def stream(token_ids):
        made.append(int(token_ids[0]))
        text = tok.decode(made)
        if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
            sys.stdout.write(text[len(stream.shown):])
            stream.shown = text
            sys.stdout.flush()

    stream.shown = ""
    model.generate(ids, max_new_tokens=max_new_tokens, do_sample=args.temperature > 0,
                   temperature=args.temperature or 1.0, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                   eos_token_id=[] if args.no_eos else tok.eos_token_id, streamer=stream)
    sys.stdout.write("\n")
