"""generate() argument by argument against transformers PyTorch `generate` on the same checkpoint.

Ragged left-padded batches; every setting resolved as transformers does (generation_config.json of
the checkpoint, then `generation_config=`, then keyword arguments). Sampling is checked by seed
reproducibility and by a chi-square test against the probabilities transformers' own logits
processors give for the same logits.
"""

import json

import numpy as np
import pytest
import tensorflow as tf

from helpers import CONFIGS
from tfgpt2 import GPT2InputError, TFGPT2LMHeadModel
from tfgpt2.generation import GenerationConfig

NAMES = list(CONFIGS)
# two configs (the second with --slow: every case compiles its own loop)
GEN_NAMES = [NAMES[0], pytest.param(NAMES[1], marks=pytest.mark.slow)]


@pytest.fixture(scope="module", params=GEN_NAMES)
def pair(request, hf_checkpoints):
    hf, path = hf_checkpoints[request.param]  # eos = bos = 0 in config.json and generation_config.json
    return CONFIGS[request.param], hf, TFGPT2LMHeadModel.from_pretrained(path), path


def ragged(cfg, seed=0):
    """A left-padded batch of prompts of 7, 4 and 2 tokens (pad id 0 = eos, masked)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, cfg["vocab_size"], (3, 7)).astype("int32")
    mask = np.ones_like(ids)
    mask[1, :3] = mask[2, :5] = 0
    ids[mask == 0] = 0
    return ids, mask


def torch_generate(hf, ids, mask, **kwargs):
    import torch

    with torch.no_grad():
        out = hf.generate(torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask, dtype=torch.long),
                          **kwargs)
    return out


SLOW = pytest.mark.slow  # the default run keeps one case per processor family; --slow runs them all
CASES = [
    dict(),  # transformers' defaults: 20 new tokens, eos/pad from the checkpoint
    pytest.param(dict(max_new_tokens=12), marks=SLOW),
    dict(max_length=16),
    dict(min_length=15, max_length=18),
    pytest.param(dict(min_new_tokens=9, max_new_tokens=12), marks=SLOW),
    pytest.param(dict(repetition_penalty=1.6, max_new_tokens=12), marks=SLOW),
    dict(no_repeat_ngram_size=2, max_new_tokens=24),
    dict(bad_words_ids=[[5], [7, 9], [11, 12, 13], [0]], max_new_tokens=16),
    pytest.param(dict(eos_token_id=[3, 5], max_new_tokens=16), marks=SLOW),
    dict(eos_token_id=4, pad_token_id=2, max_new_tokens=16),
    pytest.param(dict(num_beams=3, max_new_tokens=10), marks=SLOW),
    pytest.param(dict(num_beams=3, length_penalty=0.3, early_stopping=True, max_new_tokens=10), marks=SLOW),
    pytest.param(dict(num_beams=2, early_stopping="never", length_penalty=2.0, max_new_tokens=10), marks=SLOW),
    dict(num_beams=3, num_return_sequences=2, max_new_tokens=10),
    dict(num_beams=2, no_repeat_ngram_size=2, bad_words_ids=[[7]], repetition_penalty=1.3, min_new_tokens=3,
         max_new_tokens=12),
]


@pytest.mark.parametrize("kwargs", CASES, ids=lambda k: ",".join(k) or "defaults")
def test_greedy_and_beam_equal_transformers(pair, kwargs):
    cfg, hf, model, _ = pair
    ids, mask = ragged(cfg)
    ref = torch_generate(hf, ids, mask, do_sample=False, **kwargs).numpy()
    out = model.generate(ids, attention_mask=mask, **kwargs).numpy()
    assert out.tolist() == ref.tolist()


def test_generation_config_forms_equal_transformers(pair, tmp_path):
    import transformers

    cfg, hf, model, _ = pair
    ids, mask = ragged(cfg, seed=1)
    settings = dict(num_beams=2, max_new_tokens=9, no_repeat_ngram_size=2)
    ref = torch_generate(hf, ids, mask, generation_config=transformers.GenerationConfig(**settings)).numpy()
    (tmp_path / "generation_config.json").write_text(json.dumps(settings))
    for form in (GenerationConfig(**settings), transformers.GenerationConfig(**settings), settings,
                 str(tmp_path / "generation_config.json"), str(tmp_path)):
        assert model.generate(ids, attention_mask=mask, generation_config=form).numpy().tolist() == ref.tolist()
    # keyword arguments override the object, as in transformers
    ref = torch_generate(hf, ids, mask, generation_config=transformers.GenerationConfig(**settings),
                         max_new_tokens=5).numpy()
    out = model.generate(ids, attention_mask=mask, generation_config=GenerationConfig(**settings), max_new_tokens=5)
    assert out.numpy().tolist() == ref.tolist()


def test_checkpoint_generation_config_is_the_default(pair, tmp_path):
    cfg, hf, _, _ = pair
    hf.generation_config.update(num_beams=2, max_new_tokens=7, repetition_penalty=1.4, eos_token_id=[3, 0])
    try:
        hf.save_pretrained(tmp_path)
        ids, mask = ragged(cfg, seed=2)
        ref = torch_generate(hf, ids, mask).numpy()
    finally:
        hf.generation_config.update(num_beams=None, max_new_tokens=None, repetition_penalty=None, eos_token_id=0)
    model = TFGPT2LMHeadModel.from_pretrained(str(tmp_path))
    assert model.generate(ids, attention_mask=mask).numpy().tolist() == ref.tolist()
    model.generation_config.num_beams = 1  # users edit it as in transformers
    assert model.generate(ids, attention_mask=mask).numpy()[:, 7:].shape[1] <= 7
    model.save_pretrained(tmp_path / "again")
    saved = json.loads((tmp_path / "again" / "generation_config.json").read_text())
    assert saved["num_beams"] == 1 and saved["eos_token_id"] == [3, 0]


def test_scores_equal_transformers(pair):
    cfg, hf, model, _ = pair
    ids, mask = ragged(cfg, seed=3)
    kwargs = dict(max_new_tokens=6, repetition_penalty=1.3, no_repeat_ngram_size=2, output_scores=True,
                  return_dict_in_generate=True)
    ref = torch_generate(hf, ids, mask, **kwargs)
    out = model.generate(ids, attention_mask=mask, **kwargs)
    assert out.sequences.numpy().tolist() == ref.sequences.numpy().tolist()
    assert len(out.scores) == len(ref.scores)
    for mine, theirs in zip(out.scores, ref.scores):
        theirs = theirs.numpy()
        finite = np.isfinite(theirs)
        assert np.abs(mine.numpy()[finite] - theirs[finite]).max() <= 1e-4
        assert (mine.numpy()[~finite] <= -1e8).all()  # transformers' -inf is tfgpt2's -1e9


XLA_CASES = [dict(max_new_tokens=10),
             pytest.param(dict(do_sample=True, top_k=8, top_p=0.9, seed=11, max_new_tokens=10), marks=pytest.mark.slow),
             pytest.param(dict(num_beams=2, max_new_tokens=8), marks=pytest.mark.slow),
             pytest.param(dict(no_repeat_ngram_size=2, bad_words_ids=[[5, 6]], max_new_tokens=10),
                          marks=pytest.mark.slow)]


@pytest.mark.parametrize("kwargs", XLA_CASES, ids=lambda k: ",".join(k))
def test_xla_wrapped_generate_equals_eager(pair, kwargs):
    cfg, _, model, _ = pair
    ids, mask = ragged(cfg, seed=4)
    xla = tf.function(model.generate, jit_compile=True)
    eager = model.generate(ids, attention_mask=mask, **kwargs).numpy()
    traced = xla(input_ids=tf.constant(ids), attention_mask=tf.constant(mask), **kwargs).numpy()
    pad = np.full((len(ids), traced.shape[1] - eager.shape[1]), 0, "int32")  # pad = eos = 0
    assert traced.tolist() == np.concatenate([eager, pad], 1).tolist()


def test_streamer_put_end_equals_transformers(pair):
    from transformers.generation.streamers import BaseStreamer

    cfg, hf, model, _ = pair

    class Recorder(BaseStreamer):
        def __init__(self):
            self.calls = []

        def put(self, value):
            self.calls.append(np.asarray(value).tolist())

        def end(self):
            self.calls.append("end")

    ids = ragged(cfg, seed=5)[0][:1]
    theirs, mine = Recorder(), Recorder()
    ref = torch_generate(hf, ids, np.ones_like(ids), max_new_tokens=8, streamer=theirs).numpy()
    out = model.generate(ids, max_new_tokens=8, streamer=mine).numpy()
    assert out.tolist() == ref.tolist()
    assert mine.calls == theirs.calls


def test_sampling_is_seeded(pair):
    cfg, _, model, _ = pair
    ids, mask = ragged(cfg, seed=6)
    kwargs = dict(do_sample=True, max_new_tokens=12, attention_mask=mask)
    a = model.generate(ids, seed=1, **kwargs).numpy()
    assert a.tolist() == model.generate(ids, seed=1, **kwargs).numpy().tolist()
    assert a.tolist() != model.generate(ids, seed=2, **kwargs).numpy().tolist()
    b = model.generate(ids, seed=[42, 0], num_return_sequences=3, **kwargs).numpy()
    assert b.shape[0] == 9 and len({tuple(r) for r in b[:3, 7:].tolist()}) > 1  # copies sample apart


@pytest.fixture(scope="module")
def sharp(pair, tmp_path_factory):
    """The pair's shape with wte x 5: logits peaked enough that a wrong processor shows in 4,000 draws
    (the random checkpoint's are nearly uniform)."""
    import torch

    from helpers import build_hf

    cfg = pair[0]
    hf = build_hf("GPT2LMHeadModel", cfg, seed=3)
    with torch.no_grad():
        hf.transformer.wte.weight.mul_(5.0)
    path = tmp_path_factory.mktemp("sharp")
    hf.save_pretrained(path)
    return cfg, hf, TFGPT2LMHeadModel.from_pretrained(str(path))


SAMPLERS = [dict(temperature=0.7, top_k=12, top_p=0.9), dict(typical_p=0.8),
            pytest.param(dict(temperature=1.3), marks=pytest.mark.slow),
            pytest.param(dict(repetition_penalty=1.8, top_k=0), marks=pytest.mark.slow)]


@pytest.mark.parametrize("settings", SAMPLERS, ids=lambda k: ",".join(k))
def test_sampled_distribution_matches_transformers_processors(sharp, settings):
    import torch
    from scipy.stats import chisquare
    from transformers.generation import logits_process as lp

    cfg, hf, model = sharp
    ids = np.random.default_rng(7).integers(1, cfg["vocab_size"], (1, 6)).astype("int32")
    draws = np.concatenate([model.generate(ids, do_sample=True, max_new_tokens=1, num_return_sequences=1000,
                                           seed=seed, **settings).numpy()[:, -1] for seed in range(4)])
    full = {**dict(temperature=1.0, top_k=50, top_p=1.0, typical_p=1.0, repetition_penalty=1.0), **settings}
    processors = lp.LogitsProcessorList()  # transformers' order
    if full["repetition_penalty"] != 1.0:
        processors.append(lp.RepetitionPenaltyLogitsProcessor(full["repetition_penalty"]))
    if full["temperature"] != 1.0:
        processors.append(lp.TemperatureLogitsWarper(full["temperature"]))
    if full["top_k"]:
        processors.append(lp.TopKLogitsWarper(full["top_k"]))
    if full["top_p"] < 1.0:
        processors.append(lp.TopPLogitsWarper(full["top_p"]))
    if full["typical_p"] < 1.0:
        processors.append(lp.TypicalLogitsWarper(full["typical_p"]))
    with torch.no_grad():
        logits = hf(torch.tensor(ids, dtype=torch.long)).logits[:, -1]
        probs = torch.softmax(processors(torch.tensor(ids, dtype=torch.long), logits), -1)[0].double().numpy()
    counts = np.bincount(draws, minlength=cfg["vocab_size"])
    assert counts[probs == 0].sum() == 0  # nothing outside what transformers keeps
    expected = probs * len(draws)
    big = expected >= 5  # chi-square bins: tokens expected >= 5 times, the rest pooled
    observed = np.append(counts[big], counts[~big].sum())
    wanted = np.append(expected[big], expected[~big].sum())
    keep = wanted > 0
    p = chisquare(observed[keep], wanted[keep] * observed[keep].sum() / wanted[keep].sum()).pvalue
    print(f"{settings}: chi-square p = {p:.3f} over {len(draws)} draws, {int(big.sum())} bins + pooled rest")
    assert p > 1e-3, (p, settings)


def test_bad_generate_settings(pair):
    cfg, _, model, _ = pair
    ids = np.array([[1, 2, 3]])
    with pytest.raises(GPT2InputError, match="unknown generate.. argument max_new_token .did you mean max_new_tokens"):
        model.generate(ids, max_new_token=4)
    with pytest.raises(GPT2InputError, match="min_p=0.1 is not supported"):
        model.generate(ids, min_p=0.1)
    with pytest.raises(GPT2InputError, match="num_return_sequences > 1 needs do_sample"):
        model.generate(ids, num_return_sequences=2)
    with pytest.raises(GPT2InputError, match="max_length=3"):
        model.generate(ids, max_length=3)
    with pytest.raises(GPT2InputError, match="num_return_sequences=3 must be <= num_beams=2"):
        model.generate(ids, num_beams=2, num_return_sequences=3)
