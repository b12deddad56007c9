"""Writes tests/golden/: the files the Kotlin core tests read, each with a format version.

    tokenizer.json      text -> ids on the real GPT-2 vocabulary, from tiktoken over the ranks in
                        tests/fixtures/gpt2.tiktoken (>= 1,000 strings of the stress corpus)
    replay_<recipe>.json  LiteRT greedy tokens of a tiny exported GPT-2 and every logits row they
                        came from (fp32 and int8); the Kotlin Generator must pick the same tokens
    model.json          that export's contract

    python tools/write_goldens.py

The Python tests compare the committed files with tiktoken and with a fresh export run in LiteRT,
so a change that would alter them fails until this script is run again.
"""

import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
GOLDEN = os.path.join(ROOT, "tests", "golden")
FORMAT_VERSION = 1
REPLAY_PROMPT = [5, 17, 42, 8, 63]


def tokenizer_cases():
    """>= 1,000 corpus strings (and some with lone surrogates) with tiktoken's ids."""
    import numpy as np

    from corpus import build_corpus, invalid_strings
    from helpers import reference_tiktoken

    corpus = build_corpus()
    picks = sorted(np.random.default_rng(0).choice(len(corpus), 1100, replace=False).tolist())
    texts = [corpus[i] for i in picks if len(corpus[i]) < 400] + invalid_strings()[:20]
    enc = reference_tiktoken()
    return [{"text": t, "ids": enc.encode(t, allowed_special="all")} for t in texts]


def replay_export(directory, held_out=None):
    """The tiny model the replays come from (large random weights, so greedy text doesn't collapse
    into one id), exported to `directory`/export with fp32 + int8: (Keras model, export report).
    `held_out` (N, T) ids add fidelity numbers to the report."""
    from helpers import CONFIGS, build_hf
    from tfgpt2 import TFGPT2LMHeadModel
    from tfgpt2.export import pipeline

    hf = build_hf("GPT2LMHeadModel", CONFIGS["small-gelu_new"], seed=3, initializer_range=0.5)
    hf.save_pretrained(os.path.join(directory, "hf"))
    model = TFGPT2LMHeadModel.from_pretrained(os.path.join(directory, "hf"))
    report = pipeline.export(model, os.path.join(directory, "export"), quantize=["fp32", "int8"], max_seq_len=24,
                             prefill_len=8, held_out=held_out, log=lambda *_: None)
    return model, report


def replay(path, prompt=REPLAY_PROMPT):
    """(tokens, logits rows) of greedy decoding in LiteRT until every cache slot is written."""
    import numpy as np

    from tfgpt2.export import verify

    session = verify.lite_session(path)
    rows, tokens = [session.prefill(prompt)], []
    while True:
        tokens.append(int(np.argmax(rows[-1])))
        if session.capacity_left == 0:  # every slot written: the app must stop here
            break
        rows.append(session.decode(tokens[-1]))
    return tokens, np.asarray(rows, np.float32)


def main():
    import shutil

    os.makedirs(GOLDEN, exist_ok=True)
    with open(os.path.join(GOLDEN, "tokenizer.json"), "w", encoding="ascii") as f:  # lone surrogates stay escapes
        json.dump({"format_version": FORMAT_VERSION, "written_by": "tools/write_goldens.py",
                   "source": "tiktoken over tests/fixtures/gpt2.tiktoken", "cases": tokenizer_cases()}, f, indent=0)
    with tempfile.TemporaryDirectory() as tmp:
        replay_export(tmp)
        export = os.path.join(tmp, "export")
        with open(os.path.join(export, "model.json"), encoding="utf-8") as f:
            contract = json.load(f)
        for name, entry in contract["models"].items():
            tokens, rows = replay(os.path.join(export, name))
            record = {"format_version": FORMAT_VERSION, "written_by": "tools/write_goldens.py", "model": name,
                      "recipe": entry["recipe"], "prompt": REPLAY_PROMPT, "tokens": tokens,
                      "capacity_after_prefill": contract["max_seq_len"] - contract["prefill_len"],
                      "logits": [[float(x) for x in row] for row in rows]}
            with open(os.path.join(GOLDEN, f"replay_{entry['recipe']}.json"), "w", encoding="ascii") as f:
                json.dump(record, f)
        shutil.copy(os.path.join(export, "model.json"), os.path.join(GOLDEN, "model.json"))
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()
