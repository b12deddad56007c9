"""The int8 screen (generation/screen.py): its greedy choice equals the argmax of the logits (float64)."""

import numpy as np
import pytest
import tensorflow as tf
import torch

from helpers import CONFIGS, hf_generate
from tfgpt2 import TFGPT2LMHeadModel
from tfgpt2.generation import DecodeConfig, heads
from tfgpt2.generation import screen as greedy_head
from tfgpt2.generation.heads import SCREEN_MAX_MISSES, SCREEN_MIN_TOKENS


def _wte(vocab, width, seed=0, outliers=()):
    rng = np.random.default_rng(seed)
    wte = rng.normal(0, 0.02, (vocab, width))
    for col in outliers:  # GPT-2-like: a few embedding dims much larger than the rest
        wte[:, col] *= 20
    return wte.astype(np.float32)


def _hidden(n, width, seed=1, massive=()):
    rng = np.random.default_rng(seed)
    h = rng.normal(0, 1, (n, width))
    for col in massive:  # and a few hidden dims with massive activations
        h[:, col] *= 30
    return h.astype(np.float32)


@tf.function(jit_compile=True)
def _xla_screen(h, w, b):
    """(tokens, proven, chosen) under XLA; one compiled function, retraced only per shape."""
    return greedy_head.screened_argmax(h, w, greedy_head.build_screen(w), b) + \
        (greedy_head.greedy_tokens(h, w, greedy_head.build_screen(w), b)[0],)


def _run(hidden, wte, blocked=None):
    blocked = np.zeros(len(wte), bool) if blocked is None else blocked
    args = (tf.constant(hidden), tf.constant(wte))
    screen = greedy_head.build_screen(args[1])
    eager = greedy_head.greedy_tokens(*args, screen, tf.constant(blocked))[0].numpy()
    tokens, proven, chosen = (t.numpy() for t in _xla_screen(*args, tf.constant(blocked)))
    assert eager.tolist() == chosen.tolist()  # eager == XLA
    return tokens, bool(proven), chosen


def _reference(hidden, wte, blocked=None):
    logits = hidden.astype(np.float64) @ wte.astype(np.float64).T  # (B, V)
    if blocked is not None:
        logits[:, blocked] = -np.inf
    return np.argmax(logits, axis=-1)


@pytest.mark.parametrize("outliers", [(), (3, 17, 40)], ids=["gaussian", "outlier-dims"])
def test_screen_picks_the_float64_argmax_and_usually_proves_it(outliers):
    wte = _wte(5000, 64, outliers=outliers)
    proven = 0
    for seed in range(40):
        hidden = _hidden(2, 64, seed=seed, massive=outliers[:1])
        tokens, ok, chosen = _run(hidden, wte)
        ref = _reference(hidden, wte)
        assert chosen.tolist() == ref.tolist()
        if ok:
            assert tokens.tolist() == ref.tolist()
        proven += ok
    assert proven >= 30, f"the screen proved only {proven}/40 steps: it would rarely save anything"


def test_loose_bound_falls_back_to_the_full_logits():
    # rows that differ by far less than one int8 step: the screen can't separate them
    base = _wte(1, 32)[0]
    wte = np.stack([base + 1e-6 * np.random.default_rng(i).normal(size=32) for i in range(400)]).astype(np.float32)
    hidden = _hidden(3, 32)
    tokens, proven, chosen = _run(hidden, wte)
    assert not proven
    assert chosen.tolist() == _reference(hidden, wte).tolist()


def test_rows_closer_than_the_int8_error_still_give_the_float64_argmax():
    # 1000 rows that differ by about a quarter of an int8 step: the int8 ranking is often wrong near the top,
    # so a bound that is too tight would accept a wrong candidate set
    rng = np.random.default_rng(7)
    wte = (rng.normal(0, 0.02, 32) + rng.normal(0, 1e-4, (1000, 32))).astype(np.float32)
    for seed in range(30):
        hidden = _hidden(2, 32, seed=seed)
        assert _run(hidden, wte)[2].tolist() == _reference(hidden, wte).tolist()


def test_blocked_rows_and_ties():
    wte = _wte(300, 32)
    hidden = _hidden(4, 32)
    best = _reference(hidden, wte)
    blocked = np.zeros(300, bool)
    blocked[best] = True  # the eos-before-min_new_tokens case: the winners are not allowed
    assert _run(hidden, wte, blocked)[2].tolist() == _reference(hidden, wte, blocked).tolist()
    blocked[:] = True
    blocked[[5, 77, 250]] = False  # fewer open rows than candidates: blocked ones get picked too
    assert _run(hidden, wte, blocked)[2].tolist() == _reference(hidden, wte, blocked).tolist()
    tied = wte.copy()
    tied[-1] = tied[best[0]]  # an exact copy of row 0's winner after it: argmax takes the lowest id
    assert _run(hidden[:1], tied)[2].tolist() == [best[0]]


@pytest.fixture(scope="module")
def pair(hf_checkpoints):
    name = "wide-gelu-inv_idx"
    hf, path = hf_checkpoints[name]
    return CONFIGS[name], hf, TFGPT2LMHeadModel.from_pretrained(path)


def test_screened_generate_proves_steps_of_a_real_model(pair):
    cfg, hf, model = pair
    ids = np.random.default_rng(3).integers(0, cfg["vocab_size"], (4, 9)).astype("int32")
    hidden = model.transformer(ids)[0][:, -1]  # (B, C) last hidden states: what the decode step screens
    wte = model.transformer.wte.embeddings.numpy()
    tokens, proven, chosen = _run(hidden.numpy(), wte)
    assert proven and chosen.tolist() == _reference(hidden.numpy(), wte).tolist()


@pytest.mark.parametrize("change", [pytest.param("permuted rows", marks=pytest.mark.slow),
                                    pytest.param("rows closer than an int8 step", marks=pytest.mark.slow)])
def test_generate_after_changing_weights_matches_transformers(pair, change):
    """The screen is rebuilt from wte on every call: new weights never meet a stale int8 copy.

    The second change makes the screen undecidable at every step: the call falls back to the
    fp32 head, then stops screening after SCREEN_MAX_MISSES steps, with the same tokens.
    """
    cfg, hf, model = pair
    ids = np.random.default_rng(4).integers(0, cfg["vocab_size"], (2, 5)).astype("int32")
    n = max(SCREEN_MIN_TOKENS, 12)
    assert model.generate(ids, max_new_tokens=n).numpy().tolist() == \
        hf_generate(hf, ids, max_new_tokens=n, eos_token_id=None).tolist()
    old = model.transformer.wte.embeddings.numpy()
    rng = np.random.default_rng(5)
    new = old[rng.permutation(len(old))] if change == "permuted rows" else \
        (old[0] + rng.normal(0, 1e-4, old.shape)).astype(np.float32)
    model.transformer.wte.embeddings.assign(new)
    hf2 = type(hf)(hf.config).eval()
    hf2.load_state_dict(hf.state_dict())
    with torch.no_grad():
        hf2.transformer.wte.weight.copy_(torch.tensor(new))  # tied: the LM head follows
    try:
        for kwargs in (dict(), dict(jit_compile=False), dict(streamer=lambda t: None)):
            ours = model.generate(ids, max_new_tokens=n, **kwargs).numpy()
            assert ours.tolist() == hf_generate(hf2, ids, max_new_tokens=n, eos_token_id=None).tolist(), kwargs
    finally:
        model.transformer.wte.embeddings.assign(old)


def test_a_call_stops_screening_after_the_miss_budget(pair):
    cfg, hf, model = pair
    head = heads.ScreenedGreedyHead(model.transformer, DecodeConfig(head="screened"))
    wte = model.transformer.wte.embeddings
    old = wte.numpy()
    hidden = tf.constant(_hidden(1, cfg["n_embd"]))
    params = dict(max_new_tokens=tf.constant(SCREEN_MIN_TOKENS), min_new_tokens=tf.constant(0),
                  eos_token_id=tf.constant([-1]))

    def greedy(misses):
        tokens, _, after = head.choose(hidden, head.begin(params), tf.constant(misses), tf.constant(0), None, None,
                                       params)
        assert tokens.numpy().tolist() == _reference(hidden.numpy(), wte.numpy()).tolist()
        return int(after)

    assert greedy(0) == 0  # this model's screen decides: no miss
    wte.assign((old[0] + np.random.default_rng(6).normal(0, 1e-5, old.shape)).astype(np.float32))
    try:
        assert greedy(0) == 1  # rows closer than an int8 step: undecidable, one miss, same token
        assert greedy(SCREEN_MAX_MISSES) == SCREEN_MAX_MISSES  # budget spent: the screen isn't asked
    finally:
        wte.assign(old)


@pytest.mark.parametrize("k", [50, pytest.param(1, marks=pytest.mark.slow), pytest.param(5, marks=pytest.mark.slow)])
def test_screened_top_logits_keep_what_top_k_keeps_of_the_float64_row(k):
    """When proven, the screened logits hold every token of the float64 top-k with its fp32 value."""
    wte = _wte(5000, 64, outliers=(3, 17))
    blocked = np.zeros(5000, bool)
    blocked[[7, 11]] = True
    proven = 0
    for seed in range(20):
        hidden = _hidden(2, 64, seed=seed, massive=(3,))
        logits, ok = greedy_head.screened_top_logits(tf.constant(hidden), tf.constant(wte),
                                                     greedy_head.build_screen(tf.constant(wte)),
                                                     tf.constant(blocked), tf.constant(k))
        if not ok:
            continue
        proven += 1
        ref = hidden.astype(np.float64) @ wte.astype(np.float64).T
        ref[:, blocked] = -np.inf
        top = np.argsort(-ref, axis=-1)[:, :k]
        logits = logits.numpy()
        for b in range(2):
            ours = np.argsort(-logits[b])[:k]
            assert set(ours.tolist()) == set(top[b].tolist())
            np.testing.assert_allclose(logits[b, top[b]], ref[b, top[b]], rtol=1e-5, atol=1e-6)
            assert (logits[b, np.setdiff1d(np.arange(5000), ours)] <= ref[b, top[b]].min()).all()
    assert proven >= 15, proven
    _, ok = greedy_head.screened_top_logits(tf.constant(_hidden(1, 64)), tf.constant(wte),
                                            greedy_head.build_screen(tf.constant(wte)), tf.constant(blocked),
                                            tf.constant(greedy_head.SAMPLE_CANDIDATES + 1))
    assert not ok  # a k beyond the candidates is never "proven"
