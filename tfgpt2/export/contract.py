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


def artifact_format(rel):
    """The format a file of the export belongs to, from where it sits."""
    top = rel.split("/", 1)[0]
    if rel.endswith(".tflite"):
        return "tflite"
    if rel.endswith(".litertlm"):
        return "litertlm"
    if top.startswith("saved_model") and "/" in rel:
        return "saved_model"
    return {"onnx": "onnx", "tokenizer": "tokenizer"}.get(top, "report" if top.startswith("report.") else "other")


def artifacts(directory, files):
    """One entry per file of the export (model.json aside): format, recipe, path, bytes, sha256, and for
    each model file (a .tflite or .litertlm, an onnx/<recipe>/model.onnx) its signatures."""
    entries = []
    for root, _, names in os.walk(directory):
        for n in sorted(names):
            path = os.path.join(root, n)
            rel = os.path.relpath(path, directory).replace(os.sep, "/")
            if rel == "model.json":
                continue
            top = rel.split("/", 1)[0]
            owner = rel if rel in files else top if top in files else os.path.dirname(rel)
            entry = {"format": artifact_format(rel), "recipe": files[owner]["recipe"] if owner in files else None,
                     "path": rel, "bytes": os.path.getsize(path), "sha256": sha256(path)}
            if owner in files and (rel == owner or n in ("model.onnx", "saved_model.pb")):
                entry["signatures"] = files[owner]["signatures"]
                if "graph" in files[owner]:
                    entry["graph"] = files[owner]["graph"]
            if entry["format"] == "saved_model" and entry["recipe"] is None:
                entry["recipe"] = "fp32"  # saved_model_text
            entries.append(entry)
    return sorted(entries, key=lambda e: e["path"])


def write(directory, config, files, max_seq_len, prefill_len):
    """DIR/model.json for the export in DIR (`files`: a .tflite name or onnx/<recipe> dir -> entry with
    format, recipe, signatures). `models` lists the .tflite files (what the Android app reads)."""
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
        "models": {name: {"recipe": e["recipe"], "signatures": e["signatures"]} for name, e in files.items()
                   if e["format"] == "tflite"},
        "litertlm": {name: {"recipe": e["recipe"], "signatures": e["signatures"], "max_num_tokens": max_seq_len}
                     for name, e in files.items() if e["format"] == "litertlm"},
        "saved_model": {name: {"recipe": e["recipe"], "signatures": e["signatures"]}
                        for name, e in files.items() if e["format"] == "saved_model"},
        "onnx": {name: {"recipe": e["recipe"], "graph": e["graph"], "signatures": e["signatures"],
                        "genai": os.path.exists(os.path.join(directory, name, "genai_config.json"))}
                 for name, e in files.items() if e["format"] == "onnx"},
        "artifacts": artifacts(directory, files),
    }
    contract["sha256"] = {a["path"]: a["sha256"] for a in contract["artifacts"]}
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
