"""Derives tfgpt2/assets/vocab.json + merges.txt from the GPT-2 tiktoken ranks, then checks them.

    python tools/make_vocab.py [--ranks tests/fixtures/gpt2.tiktoken]

The merge for the token of rank r is the split that BPE with ranks < r gives it.
The check: HF `tokenizers` built from the written files and `tiktoken` built from
the ranks give identical ids on a sample text, and vocab ids equal the ranks.
"""

import argparse
import base64
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from tfgpt2.tokenizer import EOT, PATTERN, bytes_to_unicode  # noqa: E402

ASSETS = os.path.join(ROOT, "tfgpt2", "assets")


def read_ranks(path):
    ranks = {}
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
    return ranks


def bpe_split(token, ranks, max_rank):
    """BPE of `token` using only merges of rank < max_rank (tiktoken's algorithm)."""
    parts = [bytes([b]) for b in token]
    while True:
        best = None
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < max_rank and (best is None or rank < best[0]):
                best = (rank, i)
        if best is None:
            return parts
        i = best[1]
        parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2:]


def derive(ranks):
    enc = bytes_to_unicode()
    to_str = lambda b: "".join(enc[x] for x in b)  # noqa: E731
    vocab = {to_str(token): rank for token, rank in ranks.items()}
    vocab[EOT] = len(ranks)
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) < 2:
            continue
        parts = bpe_split(token, ranks, rank)
        if len(parts) != 2:
            raise SystemExit(f"rank {rank} ({token!r}) is not a single merge: {parts}")
        merges.append(f"{to_str(parts[0])} {to_str(parts[1])}")
    return vocab, merges


def check(ranks_path, vocab_path, merges_path):
    import tiktoken
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    ranks = read_ranks(ranks_path)
    tk = tiktoken.Encoding("gpt2", pat_str=PATTERN, mergeable_ranks=ranks, special_tokens={EOT: len(ranks)})
    hf = Tokenizer(models.BPE.from_file(vocab_path, merges_path))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    with open(__file__, encoding="utf-8") as f:
        sample = f.read() * 3 + " Héllo wörld! 你好，世界 🤖🎉 \t\n  spaces   1234567 don't"
    a, b = tk.encode_ordinary(sample), hf.encode(sample).ids
    if a != b:
        raise SystemExit("bundled vocab/merges disagree with tiktoken on the sample text")
    print(f"ok: {len(a)} ids identical (tiktoken vs tokenizers on the bundled files)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", default=os.path.join(ROOT, "tests", "fixtures", "gpt2.tiktoken"))
    parser.add_argument("--out", default=ASSETS)
    args = parser.parse_args()
    vocab, merges = derive(read_ranks(args.ranks))
    os.makedirs(args.out, exist_ok=True)
    vocab_path, merges_path = os.path.join(args.out, "vocab.json"), os.path.join(args.out, "merges.txt")
    with open(vocab_path, "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False, separators=(",", ":"))
    with open(merges_path, "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    print(f"wrote {len(vocab)} tokens, {len(merges)} merges to {args.out}")
    check(args.ranks, vocab_path, merges_path)


if __name__ == "__main__":
    sys.exit(main())
