"""generate(): cache vs recompute, ragged batches, eos per row, samplers, traces, bad input.

Argument-by-argument equality with transformers is in test_hf_generate.py."""

import numpy as np
import pytest
import tensorflow as tf

from helpers import CONFIGS, hf_generate
from tfgpt2 import GPT2InputError, TFGPT2LMHeadModel
from tfgpt2.cache import MASKED, KVCache
from tfgpt2.generation import decoder_of as _decoder

NAMES = list(CONFIGS)
# every generation test compiles its own loops per config: one config by default, all three with --slow
# (the parity tests compare every config's logits with transformers in the default run)
GEN_NAMES = [NAMES[0], *(pytest.param(n, marks=pytest.mark.slow) for n in NAMES[1:])]


@pytest.fixture(scope="module", params=GEN_NAMES)
def pair(request, hf_checkpoints):
    hf, path = hf_checkpoints[request.param]
    return CONFIGS[request.param], hf, TFGPT2LMHeadModel.from_pretrained(path)


def test_greedy_xla_eager_and_pytorch_agree(pair):
    cfg, hf, model = pair
    ids = np.random.default_rng(0).integers(0, cfg["vocab_size"], (1, 6)).astype("int32")
    xla = model.generate(ids, max_new_tokens=16).numpy()
    eager = model.generate(ids, max_new_tokens=16, jit_compile=False).numpy()
    ref = hf_generate(hf, ids, max_new_tokens=16, eos_token_id=None)
    assert xla.tolist() == eager.tolist() == ref.tolist()


def test_ragged_batch_left_padded_equals_each_prompt_alone(pair):
    cfg, hf, model = pair
    rng = np.random.default_rng(1)
    lengths = [3, 7, 5, 1]
    ids = np.zeros((4, 7), "int32")
    mask = np.zeros((4, 7), "int32")
    for row, n in enumerate(lengths):
        ids[row, 7 - n:] = rng.integers(1, cfg["vocab_size"], n)
        mask[row, 7 - n:] = 1
    batch = model.generate(ids, attention_mask=mask, max_new_tokens=10).numpy()
    ref = hf_generate(hf, ids, mask, max_new_tokens=10, eos_token_id=None)
    assert batch.tolist() == ref.tolist()
    for row, n in enumerate(lengths):
        alone = model.generate(ids[row:row + 1, 7 - n:], max_new_tokens=10).numpy()[0]
        assert batch[row, 7:].tolist() == alone[n:].tolist()


@pytest.mark.parametrize("name", GEN_NAMES)
def test_cached_decode_equals_recompute_for_64_steps(name):
    from tfgpt2 import GPT2Config

    cfg = dict(CONFIGS[name], n_positions=80)
    model = TFGPT2LMHeadModel(GPT2Config(**cfg))
    n_steps = 64
    ids = np.random.default_rng(2).integers(0, cfg["vocab_size"], (2, 4)).astype("int32")
    decoder = _decoder(model)
    cache = decoder.empty_cache(2, 4 + n_steps)
    logits, cache = decoder.prefill(ids, np.ones_like(ids), cache)
    seq = ids
    worst = 0.0
    for _ in range(n_steps):
        full = model(seq).logits.numpy()[:, -1]
        worst = max(worst, float(np.abs(full - logits.numpy()).max()))
        nxt = np.argmax(full, -1).astype("int32")
        seq = np.concatenate([seq, nxt[:, None]], 1)
        logits, cache = decoder.step(nxt, cache)
    print(f"{n_steps} steps: max |cached - recompute| = {worst:.2e}")
    assert worst <= 1e-4


def test_eos_min_new_tokens_and_per_row_finishing(pair):
    cfg, hf, model = pair
    ids = np.random.default_rng(4).integers(1, cfg["vocab_size"], (3, 4)).astype("int32")
    free = model.generate(ids, max_new_tokens=12).numpy()
    eos = int(free[1, 6])  # a token row 1 emits at its 3rd step
    ours = model.generate(ids, max_new_tokens=12, eos_token_id=eos, pad_token_id=0).numpy()
    ref = hf_generate(hf, ids, max_new_tokens=12, eos_token_id=eos)
    assert ours.tolist() == ref.tolist()
    assert eos in ours[1, 4:].tolist()
    ours = model.generate(ids, max_new_tokens=12, min_new_tokens=8, eos_token_id=eos).numpy()
    ref = hf_generate(hf, ids, max_new_tokens=12, min_new_tokens=8, eos_token_id=eos, pad_token_id=eos)
    assert ours.tolist() == ref.tolist()
    assert eos not in ours[:, 4:12].tolist()


@pytest.mark.slow  # the default run checks seeding in test_hf_generate.py
def test_sampling_seeds_top_k_1_and_eager_equals_xla(pair):
    cfg, _, model = pair
    ids = np.random.default_rng(6).integers(1, cfg["vocab_size"], (2, 5)).astype("int32")
    greedy = model.generate(ids, max_new_tokens=10).numpy()
    assert model.generate(ids, max_new_tokens=10, do_sample=True, top_k=1, seed=1).numpy().tolist() == greedy.tolist()
    kwargs = dict(max_new_tokens=10, do_sample=True, temperature=1.5, top_p=0.95, top_k=40)
    a = model.generate(ids, seed=11, **kwargs).numpy()
    b = model.generate(ids, seed=11, **kwargs).numpy()
    c = model.generate(ids, seed=12, **kwargs).numpy()
    eager = model.generate(ids, seed=11, jit_compile=False, **kwargs).numpy()
    assert a.tolist() == b.tolist() == eager.tolist()
    assert a.tolist() != c.tolist()


def test_top_p_keeps_smallest_nucleus():
    import tensorflow as tf

    from tfgpt2.generation.sampling import top_k_top_p

    logits = tf.math.log(tf.constant([[0.5, 0.3, 0.15, 0.05]]))
    kept = top_k_top_p(logits, tf.constant(0), tf.constant(0.7), False, True).numpy()[0] > MASKED
    assert kept.tolist() == [True, True, False, False]
    kept = top_k_top_p(logits, tf.constant(3), tf.constant(1.0), True, False).numpy()[0] > MASKED
    assert kept.tolist() == [True, True, True, False]


@pytest.mark.slow  # the streamer is checked against transformers by default (test_hf_generate.py)
def test_streamer_and_scores(pair):
    cfg, _, model = pair
    ids = np.random.default_rng(7).integers(1, cfg["vocab_size"], (2, 5)).astype("int32")
    seen = []
    streamed = model.generate(ids, max_new_tokens=6, streamer=lambda t: seen.append(t.tolist())).numpy()
    assert streamed.tolist() == model.generate(ids, max_new_tokens=6).numpy().tolist()
    assert np.array(seen).T.tolist() == streamed[:, 5:].tolist()
    out = model.generate(ids, max_new_tokens=6, output_scores=True, return_dict_in_generate=True)
    assert len(out.scores) == 6 and out.scores[0].shape == (2, cfg["vocab_size"])  # one (B, V) per step, as HF
    assert np.argmax(np.stack(out.scores, 1), -1).tolist() == out.sequences.numpy()[:, 5:].tolist()


def test_no_retrace_within_a_bucket(pair):
    cfg, _, model = pair
    decoder = _decoder(model)
    rng = np.random.default_rng(8)
    model.generate(rng.integers(1, cfg["vocab_size"], (1, 2)).astype("int32"), max_new_tokens=5)
    before = decoder.traces
    for length in (3, 5, 9, 13, 17):
        model.generate(rng.integers(1, cfg["vocab_size"], (1, length)).astype("int32"), max_new_tokens=3 + length)
    print(f"traces for 5 prompt lengths in one bucket: {decoder.traces - before}")
    assert decoder.traces == before


@pytest.mark.parametrize("kwargs, match", [
    (dict(max_new_tokens=100), "exceeds n_positions"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(do_sample=True, top_p=0.0), "top_p"),
    (dict(do_sample=True, top_p=1.5), "top_p"),
    (dict(do_sample=True, temperature=0.0), "temperature"),
    (dict(num_beams=0), "num_beams"),
    (dict(top_k=-1), "top_k"),
    (dict(min_new_tokens=30, max_new_tokens=5), "min_new_tokens"),
    (dict(num_beams=2, streamer=print), "streamer"),
])
def test_bad_generate_arguments(pair, kwargs, match):
    cfg, _, model = pair
    with pytest.raises(GPT2InputError, match=match):
        model.generate(np.array([[1, 2, 3]]), **kwargs)


def test_bad_generate_ids(pair):
    cfg, _, model = pair
    with pytest.raises(GPT2InputError, match="outside"):
        model.generate(np.array([[cfg["vocab_size"]]]))
    with pytest.raises(GPT2InputError, match="left padding"):
        model.generate(np.array([[1, 2, 0]]), attention_mask=np.array([[1, 1, 0]]))


def test_generate_uses_the_public_cache_type(pair):
    cfg, _, model = pair
    cache = _decoder(model).empty_cache(1, 8)
    assert isinstance(cache, KVCache)


@pytest.mark.parametrize("top_k, top_p", [(5, 1.0), (50, 0.9), *(pytest.param(k, p, marks=pytest.mark.slow)
                                                                   for k, p in [(1, 1.0), (256, 0.5)])])
def test_top_k_sampling_over_the_top_logits_draws_the_full_rows_token(top_k, top_p):
    """sampling.sample_top_k (noise only at the kept ids) == sample(top_k_top_p(logits / T)) over all of V."""
    from tfgpt2.generation import sampling

    rng = np.random.default_rng(0)
    logits = tf.constant(rng.normal(0, 3, (3, 5000)).astype("float32"))
    params = {"temperature": tf.constant(0.7), "top_k": tf.constant(top_k), "top_p": tf.constant(top_p),
              "seed": tf.constant(11, tf.int64)}
    for step in range(20):
        warped = sampling.top_k_top_p(logits / 0.7, params["top_k"], params["top_p"], True, top_p < 1.0)
        dense = sampling.sample(warped, params["seed"], tf.constant(step))
        sparse = sampling.sample_top_k(logits, params, tf.constant(step), top_p < 1.0)
        assert sparse.numpy().tolist() == dense.numpy().tolist(), step
