"""model.json: the one file apps and `tfgpt2 verify` read about an export, and the sha256 of its files."""

import hashlib
import json
import os

from tfgpt2.config import read_json

FORMAT_VERSION = 1
CACHE_DESIGN = {
    "design": "caller-owned tensors; decode returns only the new entries",
    "tensors": {"k_{i}": "(1, n_head, max_seq_len, head_dim) float32, i < n_layer",
                "vt_{i}": "(1, n_head, head_dim, max_seq_len) float32 (values, transposed)",
                "cache_mask": "(1, max_seq_len) int32, 1 = real token"},
    "after_prefill": "the next free slot is prefill_len",
    "after_decode": "write new_k[i] into k_i[0, :, slot, :] and new_v[i] into vt_i[0, :, :, slot], "
                    "set cache_mask[0, slot] = 1, slot += 1; stop when slot == max_seq_len",
    "reset": "run prefill again", "padding": "left-pad the prompt to prefill_len, mask 0 on pads"}


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def special_tokens(config):
    """(ids the export uses, ids it drops): a special id outside [0, vocab_size) — e.g. GPT-2's 50256 in a
    smaller vocabulary — is never fed to the model or used as a stop token; it is null in the first
    dict and listed with its value in the second."""
    pad = config.pad_token_id if config.pad_token_id is not None else config.eos_token_id
    ids = {"eos_token_id": config.eos_token_id, "bos_token_id": config.bos_token_id, "pad_token_id": pad}
    valid = {k: v is not None and 0 <= v < config.vocab_size for k, v in ids.items()}
    return ({k: (v if valid[k] else None) for k, v in ids.items()},
            {k: v for k, v in ids.items() if v is not None and not valid[k]})


def write(directory, config, files, max_seq_len, prefill_len):
    """DIR/model.json for the export in DIR (`files`: .tflite name -> entry with recipe, signatures)."""
    tokenizer_files = sorted(os.listdir(os.path.join(directory, "tokenizer")))
    used, outside = special_tokens(config)
    contract = {
        "format_version": FORMAT_VERSION,
        "config": {k: v for k, v in config.to_dict().items() if k != "extra"},
        "max_seq_len": max_seq_len,
        "prefill_len": prefill_len,
        "cache": CACHE_DESIGN,
        "special_tokens": used,
        "special_tokens_outside_vocab": outside,
        "tokenizer": {"files": [f"tokenizer/{n}" for n in tokenizer_files], "type": "gpt2-byte-level-bpe"},
        "models": {name: {"recipe": e["recipe"], "signatures": e["signatures"]} for name, e in files.items()},
        "sha256": {},
    }
    for root, _, names in os.walk(directory):
        for n in names:
            path = os.path.join(root, n)
            contract["sha256"][os.path.relpath(path, directory)] = sha256(path)
    with open(os.path.join(directory, "model.json"), "w", encoding="utf-8") as f:
        json.dump(contract, f, indent=2, sort_keys=True)
    return contract


def read(directory):
    path = os.path.join(directory, "model.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{directory} has no model.json; pass a directory written by `tfgpt2 export`.")
    written = read_json(path, ValueError)
    if not isinstance(written, dict) or "sha256" not in written:
        raise ValueError(f"{path} is not a tfgpt2 model.json (no sha256 table); re-run `tfgpt2 export`.")
    return written


def changed_files(directory, contract):
    """One problem line per file that is missing or whose sha256 differs from model.json."""
    problems = []
    for rel, digest in contract["sha256"].items():
        file = os.path.join(directory, rel)
        if not os.path.exists(file):
            problems.append(f"{rel} is missing")
        elif sha256(file) != digest:
            problems.append(f"{rel} changed since export (sha256 differs)")
    return problems
