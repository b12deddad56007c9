"""Fidelity of an exported model against Keras: max |logit diff|, top-1 agreement, perplexity of both."""

import numpy as np


def nll(logits, targets):
    """Summed negative log-likelihood of `targets` (N,) under `logits` (N, V)."""
    shifted = logits - logits.max(-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return -float(logp[np.arange(len(targets)), targets].sum())


def compare(pairs):
    """`pairs`: (exported logits (N, V), Keras logits (N, V), targets (N,)) per block -> the fidelity dict
    (perplexity = exp of the mean nll, nats)."""
    worst, agree, total, nll_ours, nll_keras = 0.0, 0, 0, 0.0, 0.0
    for ours, ref, targets in pairs:
        worst = max(worst, float(np.abs(ours - ref).max()))
        agree += int((ours.argmax(-1) == ref.argmax(-1)).sum())
        total += len(targets)
        nll_ours += nll(ours, targets)
        nll_keras += nll(ref, targets)
    return {"max_abs_logit_diff": worst, "top1_agreement": agree / total,
            "perplexity": float(np.exp(nll_ours / total)), "keras_perplexity": float(np.exp(nll_keras / total))}


def keras_models(reference, candidate, held_out, batch=4):
    """The fidelity dict of `candidate` (e.g. a model.quantize()d copy) against the float `reference` on
    held-out blocks (N, T) of ids: full-pass logits of each block, targets the next ids."""
    pairs = []
    for start in range(0, len(held_out), batch):
        ids = np.asarray(held_out[start:start + batch], np.int32)
        ours = np.asarray(candidate(ids).logits)  # (b, T, V)
        ref = np.asarray(reference(ids).logits)
        pairs += [(o[:-1], r[:-1], row[1:]) for o, r, row in zip(ours, ref, ids)]
    return compare(pairs)
