"""Verify an export: each .tflite against Keras in the LiteRT interpreter; sizes; decode speed."""

import json
import os
import time

import numpy as np


def lite_runners(path_or_bytes, threads=2):
    from ai_edge_litert.interpreter import Interpreter

    kw = {"model_path": path_or_bytes} if isinstance(path_or_bytes, str) else {"model_content": path_or_bytes}
    it = Interpreter(num_threads=threads, **kw)
    return it, it.get_signature_runner("prefill"), it.get_signature_runner("decode")


def lite_session(path_or_bytes, threads=2):
    """A LiteSession on the .tflite: `.prefill(prompt)`, `.decode(token)`, `.capacity_left`."""
    return LiteSession(path_or_bytes, threads)


class LiteSession:
    """Drives a tfgpt2 .tflite in LiteRT the way an app with persistent buffers would.

    The cache lives in the decode signature's own input tensors (numpy views into the
    interpreter); each step writes only the new token's entries there and invokes, so nothing
    cache-sized is copied per token (passing the cache through the Python signature runner
    measured 102 vs 116 tok/s at 124M int8). Semantics are `tflite.CacheHost`'s.
    """

    def __init__(self, path_or_bytes, threads=2):
        from tfgpt2.export.tflite import CacheHost

        self.interpreter, self._prefill, self._decode = lite_runners(path_or_bytes, threads)
        inputs = self._decode.get_input_details()
        self.n_layer = sum(1 for name in inputs if name.startswith("k_"))
        self.max_seq_len = int(inputs["cache_mask"]["shape"][1])
        self.prefill_len = int(self._prefill.get_input_details()["input_ids"]["shape"][1])
        self.host = CacheHost(self._prefill, self._decode, self.n_layer, self.max_seq_len, self.prefill_len)
        self.slot = None
        zeros = {name: np.zeros(d["shape"], d["dtype"]) for name, d in inputs.items()}
        self._decode(**zeros)  # allocates the decode tensors once; the views below stay valid
        wrapper, sub = self.interpreter._interpreter, self._decode._subgraph_index
        self._invoke = lambda: wrapper.Invoke(sub)
        self._in = {name: wrapper.tensor(wrapper, index, sub) for name, index in self._decode._inputs.items()}
        self._out = {name: (lambda i=index: wrapper.tensor(wrapper, i, sub)) for name, index in self._decode._outputs}

    @property
    def capacity_left(self):
        return 0 if self.slot is None else self.max_seq_len - self.slot

    def prefill(self, prompt):
        out = self._prefill(**self.host.prefill_inputs(prompt))
        for name in ["cache_mask", *(f"{kind}_{i}" for kind in ("k", "vt") for i in range(self.n_layer))]:
            self._in[name][...] = out[name]
        self.slot = self.prefill_len
        return np.array(out["logits"][0])

    def decode(self, token):
        if self.capacity_left <= 0:
            raise ValueError(f"the KV cache is full ({self.max_seq_len} slots); export with a larger --max-seq-len")
        self._in["token_id"][0] = token
        self._invoke()
        new_k, new_v = self._out["new_k"](), self._out["new_v"]()  # (L, nh, hs)
        for i in range(self.n_layer):
            self._in[f"k_{i}"][0, :, self.slot, :] = new_k[i]
            self._in[f"vt_{i}"][0, :, :, self.slot] = new_v[i]
        self._in["cache_mask"][0, self.slot] = 1
        self.slot += 1
        return np.array(self._out["logits"]()[0])


def lite_logits(path, prompt, continuation, prefill_len=None):
    """Logits (N, V) predicting each token of `continuation` after `prompt`, via prefill + decode."""
    session = lite_session(path)
    rows = [session.prefill(prompt)]
    for token in continuation[:-1]:
        rows.append(session.decode(token))
    return np.stack(rows)


def signature_contract(path):
    """Signature names, tensor names, dtypes and shapes as the app's runner sees them."""
    it, _, _ = lite_runners(path)
    contract = {}
    for name in it.get_signature_list():
        runner = it.get_signature_runner(name)
        contract[name] = {
            kind: {k: {"dtype": np.dtype(v["dtype"]).name, "shape": [int(d) for d in v["shape"]]}
                   for k, v in details.items()}
            for kind, details in (("inputs", runner.get_input_details()), ("outputs", runner.get_output_details()))}
    return contract


def decode_speed(path, prefill_len, steps=32, threads=2):
    session = lite_session(path, threads)
    logits = session.prefill(np.ones(prefill_len, np.int32))
    steps = min(steps, session.capacity_left)
    start = time.perf_counter()
    for _ in range(steps):
        logits = session.decode(int(np.argmax(logits)))
    return steps / (time.perf_counter() - start)


def _nll(logits, targets):
    """Summed negative log-likelihood of `targets` (N,) under `logits` (N, V)."""
    shifted = logits - logits.max(-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return -float(logp[np.arange(len(targets)), targets].sum())


def fidelity(model, path, blocks, prefill_len):
    """max |logit diff| vs Keras, top-1 agreement and perplexity (nats -> exp) on held-out blocks."""
    worst, agree, total, nll_lite, nll_keras = 0.0, 0, 0, 0.0, 0.0
    for block in blocks:
        prompt, rest = block[:prefill_len], block[prefill_len:]
        lite = lite_logits(path, prompt, rest, prefill_len)
        ref = model(block[None]).logits.numpy()[0, prefill_len - 1:-1]
        worst = max(worst, float(np.abs(lite - ref).max()))
        agree += int((lite.argmax(-1) == ref.argmax(-1)).sum())
        total += len(rest)
        nll_lite += _nll(lite, rest)
        nll_keras += _nll(ref, rest)
    return {"max_abs_logit_diff": worst, "top1_agreement": agree / total,
            "perplexity": float(np.exp(nll_lite / total)), "keras_perplexity": float(np.exp(nll_keras / total))}


def write_report(out_dir, report):
    with open(os.path.join(out_dir, "report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    lines = ["# tfgpt2 export report", "", "| file | MB | max abs logit diff | top-1 agreement | perplexity "
             "(Keras) | decode tok/s (LiteRT, 2 threads) |", "|---|---:|---:|---:|---:|---:|"]
    for name, r in report["files"].items():
        fid = r.get("fidelity", {})
        lines.append(f"| {name} | {r['bytes'] / 1e6:.2f} | {fid.get('max_abs_logit_diff', float('nan')):.2e} | "
                     f"{100 * fid.get('top1_agreement', float('nan')):.2f} % | {fid.get('perplexity', float('nan')):.2f} "
                     f"({fid.get('keras_perplexity', float('nan')):.2f}) | {r.get('decode_tok_s', float('nan')):.1f} |")
    lines += ["", f"conversion: {report['conversion_seconds']:.1f} s, peak RSS {report['peak_rss_gb']:.2f} GB"]
    with open(os.path.join(out_dir, "report.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def verify_dir(directory, log=print):
    """Re-checks an export: file hashes, each .tflite's signatures against model.json and a
    prefill + decode run, and the SavedModel's serving_default. Raises ValueError on a mismatch."""
    import hashlib

    path = os.path.join(directory, "model.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{directory} has no model.json; pass a directory written by `tfgpt2 export`.")
    with open(path, encoding="utf-8") as f:
        contract = json.load(f)
    problems = []
    for rel, digest in contract["sha256"].items():
        file = os.path.join(directory, rel)
        if not os.path.exists(file):
            problems.append(f"{rel} is missing")
            continue
        with open(file, "rb") as fh:
            if hashlib.sha256(fh.read()).hexdigest() != digest:
                problems.append(f"{rel} changed since export (sha256 differs)")
    for name, entry in contract["models"].items():
        file = os.path.join(directory, name)
        if any(p.startswith(name + " ") for p in problems):
            continue  # missing or altered: not worth loading
        if signature_contract(file) != entry["signatures"]:
            problems.append(f"{name}: signatures differ from model.json")
        else:
            rate = decode_speed(file, contract["prefill_len"], steps=4)
            log(f"{name}: signatures match model.json, prefill + 4 decode steps ran ({rate:.1f} tok/s)")
    saved = os.path.join(directory, "saved_model", "1")
    if os.path.isdir(saved):
        import tensorflow as tf

        fn = tf.saved_model.load(saved).signatures["serving_default"]
        ids = tf.constant([[contract["special_tokens"]["eos_token_id"]] * 2], tf.int32)
        logits = fn(input_ids=ids, attention_mask=tf.ones_like(ids))["logits"]
        log(f"saved_model/1: serving_default ran, logits {tuple(logits.shape)}")
    if problems:
        raise ValueError(f"{directory} failed verification: " + "; ".join(problems))
    log(f"{directory}: ok ({len(contract['sha256'])} files hashed)")
