"""Encode throughput on >= 1 MB of text: tfgpt2.GPT2Tokenizer vs tiktoken vs HF tokenizers, one run.

    python benchmarks/tokenizer.py [--mb 4]

The text is Python's own documentation (pydoc topics + stdlib docstrings), the same on every machine.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def corpus(megabytes):
    import argparse as ap
    import collections  # noqa: E401
    import email
    import inspect
    import json
    import pydoc_data.topics
    import textwrap
    import typing

    parts = list(pydoc_data.topics.topics.values())
    for module in (collections, json, textwrap, ap, typing, email, inspect):
        parts.append(inspect.getsource(module))
    text = "\n".join(parts)
    while len(text.encode()) < megabytes * 1e6:
        text += "\n" + text
    return text[: int(megabytes * 1e6)]


def best_of(fn, repeats=5):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=float, default=4.0)
    args = parser.parse_args()
    import tiktoken
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    from tfgpt2 import GPT2Tokenizer
    from tfgpt2.tokenizer import ASSETS

    text = corpus(args.mb)
    docs = text.split("\n\n")
    nbytes = len(text.encode())
    ours = GPT2Tokenizer()
    tk = ours._engine.enc  # the bundled ranks; a second Encoding is the independent peer
    ref = tiktoken.Encoding("ref", pat_str=tk._pat_str, mergeable_ranks=tk._mergeable_ranks,
                            special_tokens=tk._special_tokens)
    hf = Tokenizer(models.BPE.from_file(os.path.join(ASSETS, "vocab.json"), os.path.join(ASSETS, "merges.txt")))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    rows = {
        "tfgpt2 encode (1 string)": lambda: ours.encode(text),
        "tiktoken encode (1 string)": lambda: ref.encode(text, allowed_special="all"),
        "HF tokenizers encode (1 string)": lambda: hf.encode(text),
        "tfgpt2 encode_batch (docs)": lambda: ours.encode_batch(docs),
        "tiktoken encode_batch (docs)": lambda: ref.encode_batch(docs, allowed_special="all"),
        "HF tokenizers encode_batch (docs)": lambda: hf.encode_batch(docs),
    }
    assert ours.encode(text) == ref.encode(text, allowed_special="all") == hf.encode(text).ids
    results = {name: nbytes / best_of(fn) / 1e6 for name, fn in rows.items()}
    print(f"{nbytes / 1e6:.1f} MB of text, {len(docs)} documents, best of 5, {os.cpu_count()} cores")
    for name, mbps in results.items():
        print(f"  {name:36s} {mbps:8.2f} MB/s")
    single = results["tfgpt2 encode (1 string)"] / results["tiktoken encode (1 string)"]
    batch = results["tfgpt2 encode_batch (docs)"] / results["tiktoken encode_batch (docs)"]
    print(f"tfgpt2 / tiktoken: {single:.2f}x (one string), {batch:.2f}x (batch); "
          f"tiktoken / HF tokenizers: "
          f"{results['tiktoken encode (1 string)'] / results['HF tokenizers encode (1 string)']:.2f}x (one string), "
          f"{results['tiktoken encode_batch (docs)'] / results['HF tokenizers encode_batch (docs)']:.2f}x (batch)")


if __name__ == "__main__":
    main()
