"""tfgpt2 vs transformers PyTorch on the same saved weights: logits, states, attentions."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from helpers import CONFIGS, FIXTURES, build_hf, max_diff, torch_run
from tfgpt2 import TFGPT2DoubleHeadsModel, TFGPT2ForSequenceClassification, TFGPT2LMHeadModel, TFGPT2Model
from tfgpt2.cache import KVCache

ATOL = 1e-4
NAMES = list(CONFIGS)


def ids_for(cfg, batch, length, seed=1):
    return np.random.default_rng(seed).integers(0, cfg["vocab_size"], (batch, length)).astype("int32")


@pytest.fixture(scope="module", params=NAMES)
def pair(request, hf_checkpoints):
    hf, path = hf_checkpoints[request.param]
    return CONFIGS[request.param], hf, TFGPT2LMHeadModel.from_pretrained(path), path


def test_full_pass_logits_hidden_states_attentions(pair):
    cfg, hf, model, _ = pair
    ids = ids_for(cfg, 2, 11)
    ref = torch_run(hf, ids, output_hidden_states=True, output_attentions=True)
    out = model(ids, output_hidden_states=True, output_attentions=True)
    assert max_diff(out.logits, ref.logits) <= ATOL
    assert len(out.hidden_states) == len(ref.hidden_states) == cfg["n_layer"] + 1
    for ours, theirs in zip(out.hidden_states, ref.hidden_states):
        assert max_diff(ours, theirs) <= ATOL
    for ours, theirs in zip(out.attentions, ref.attentions):
        assert max_diff(ours, theirs) <= ATOL


def test_token_by_token_with_past_equals_full_pass(pair):
    cfg, hf, model, _ = pair
    ids = ids_for(cfg, 2, 9, seed=2)
    full = model(ids).logits.numpy()
    ref = torch_run(hf, ids).logits.numpy()
    out = model(ids[:, :1], use_cache=True)
    steps = [out.logits.numpy()[:, 0]]
    for t in range(1, ids.shape[1]):
        out = model(ids[:, t:t + 1], attention_mask=np.ones((2, t + 1), "int32"),
                    past_key_values=out.past_key_values)
        steps.append(out.logits.numpy()[:, 0])
    stepped = np.stack(steps, axis=1)
    assert max_diff(stepped, full) <= ATOL
    assert max_diff(stepped, ref) <= ATOL
    assert int(out.past_key_values.index) == ids.shape[1]


def test_chunked_prefill_into_explicit_cache(pair):
    cfg, hf, model, _ = pair
    ids = ids_for(cfg, 1, 12, seed=3)
    cache = KVCache.empty(model.config, 1, capacity=16)
    first = model(ids[:, :5], past_key_values=cache)
    second = model(ids[:, 5:], past_key_values=first.past_key_values)
    ref = torch_run(hf, ids).logits.numpy()
    assert max_diff(np.concatenate([first.logits, second.logits], 1), ref) <= ATOL


def _hf_positions(mask):
    pos = np.cumsum(mask, axis=1) - 1
    return np.where(mask == 0, 1, pos)


def test_left_padded_batch_with_attention_mask(pair):
    cfg, hf, model, _ = pair
    ids = ids_for(cfg, 3, 8, seed=4)
    mask = np.ones_like(ids)
    mask[0, :3] = 0
    mask[1, :1] = 0
    ref = torch_run(hf, ids, attention_mask=mask, position_ids=_hf_positions(mask),
                    output_hidden_states=True)
    out = model(ids, attention_mask=mask, position_ids=_hf_positions(mask), output_hidden_states=True)
    real = mask.astype(bool)
    assert max_diff(out.logits.numpy()[real], ref.logits.numpy()[real]) <= ATOL
    assert max_diff(out.hidden_states[-1].numpy()[real], ref.hidden_states[-1].numpy()[real]) <= ATOL
    for row in range(3):  # each row equals its prompt run alone
        alone = model(ids[row:row + 1, mask[row] == 1]).logits.numpy()[0]
        assert max_diff(out.logits.numpy()[row][mask[row] == 1], alone) <= ATOL
    plain = torch_run(hf, ids, attention_mask=mask)  # no position_ids: both count from 0, pads included
    assert max_diff(model(ids, attention_mask=mask).logits.numpy()[real], plain.logits.numpy()[real]) <= ATOL


def test_explicit_position_ids_and_token_type_ids(pair):
    cfg, hf, model, _ = pair
    ids = ids_for(cfg, 2, 7, seed=5)
    positions = np.array([[3, 4, 5, 6, 7, 8, 9], [0, 2, 4, 6, 8, 10, 12]], "int32")
    types = ids_for(cfg, 2, 7, seed=6)
    ref = torch_run(hf, ids, position_ids=positions, token_type_ids=types)
    out = model(ids, position_ids=positions, token_type_ids=types)
    assert max_diff(out.logits, ref.logits) <= ATOL


def test_base_model_last_hidden_state(pair):
    cfg, hf, _, path = pair
    base = TFGPT2Model.from_pretrained(path)
    ids = ids_for(cfg, 2, 6, seed=7)
    ref = torch_run(hf.transformer, ids)
    assert max_diff(base(ids).last_hidden_state, ref.last_hidden_state) <= ATOL


@pytest.mark.parametrize("name", NAMES)
def test_double_heads_mc_logits(name, tmp_path):
    cfg = CONFIGS[name]
    hf = build_hf("GPT2DoubleHeadsModel", cfg, seed=3)
    hf.save_pretrained(tmp_path)
    model = TFGPT2DoubleHeadsModel.from_pretrained(str(tmp_path))
    ids = np.random.default_rng(8).integers(0, cfg["vocab_size"], (2, 3, 6)).astype("int32")
    mc_ids = np.array([[5, 3, 4], [2, 5, 1]], "int32")
    ref = torch_run(hf, ids, mc_token_ids=mc_ids)
    out = model(ids, mc_token_ids=mc_ids)
    assert max_diff(out.logits, ref.logits) <= ATOL
    assert max_diff(out.mc_logits, ref.mc_logits) <= ATOL
    default = model(ids)  # default: last token
    assert max_diff(default.mc_logits, torch_run(hf, ids).mc_logits) <= ATOL


@pytest.mark.parametrize("name", NAMES)
def test_sequence_classification_logits(name, tmp_path):
    cfg = CONFIGS[name]
    hf = build_hf("GPT2ForSequenceClassification", cfg, seed=4, num_labels=3, pad_token_id=1)
    hf.save_pretrained(tmp_path)
    model = TFGPT2ForSequenceClassification.from_pretrained(str(tmp_path))
    ids = np.random.default_rng(9).integers(2, cfg["vocab_size"], (3, 6)).astype("int32")
    ids[0, 4:] = 1
    ids[1, 2:] = 1
    mask = (ids != 1).astype("int32")
    ref = torch_run(hf, ids, attention_mask=mask)
    out = model(ids, attention_mask=mask)
    assert max_diff(out.logits, ref.logits) <= ATOL


@pytest.mark.parametrize("name", NAMES[:2])
def test_pytorch_bin_checkpoint(name, tmp_path):
    hf = build_hf("GPT2LMHeadModel", CONFIGS[name], seed=5)
    hf.save_pretrained(tmp_path, safe_serialization=False) if _accepts_bin(hf) else _save_bin(hf, tmp_path)
    assert (tmp_path / "pytorch_model.bin").exists()
    model = TFGPT2LMHeadModel.from_pretrained(str(tmp_path))
    ids = ids_for(CONFIGS[name], 2, 6, seed=10)
    assert max_diff(model(ids).logits, torch_run(hf, ids).logits) <= ATOL


def _accepts_bin(hf):
    import inspect

    return "safe_serialization" in inspect.signature(hf.save_pretrained).parameters


def _save_bin(hf, path):
    """transformers 5 writes only safetensors; torch.save the same state dict (HF's .bin format)."""
    import torch

    hf.config.save_pretrained(path)
    torch.save(hf.state_dict(), path / "pytorch_model.bin")


@pytest.mark.parametrize("kind", ["GPT2LMHeadModel", "GPT2DoubleHeadsModel"])
def test_hf_tf_h5_checkpoint(kind):
    """tf_model.h5 written by transformers 4.57.6's own TF port from a PyTorch GPT-2, against that
    PyTorch model's logits (tests/fixtures/hf_tf_h5, written by tools/write_tf_h5.py)."""
    directory = os.path.join(FIXTURES, "hf_tf_h5", kind)
    files = set(os.listdir(directory))
    assert {"config.json", "expected.json", "tf_model.h5"} <= files and not files & {"model.safetensors",
                                                                                      "pytorch_model.bin"}
    with open(os.path.join(directory, "expected.json"), encoding="utf-8") as f:
        expected = json.load(f)
    assert expected["format_version"] == 1 and expected["transformers"] == "4.57.6"
    cls = TFGPT2LMHeadModel if kind == "GPT2LMHeadModel" else TFGPT2DoubleHeadsModel
    model = cls.from_pretrained(directory)
    out = model(np.asarray(expected["input_ids"], "int32"))
    assert max_diff(out.logits, expected["pytorch_logits"]) <= ATOL
    if kind == "GPT2DoubleHeadsModel":
        assert max_diff(out.mc_logits, expected["pytorch_mc_logits"]) <= ATOL


def test_save_pretrained_loads_in_pytorch(pair, tmp_path):
    import transformers

    cfg, _, model, _ = pair
    model.save_pretrained(str(tmp_path))
    reloaded = transformers.GPT2LMHeadModel.from_pretrained(str(tmp_path), attn_implementation="eager").eval()
    ids = ids_for(cfg, 2, 10, seed=12)
    assert max_diff(model(ids).logits, torch_run(reloaded, ids).logits) <= 1e-5


def test_xla_compiled_call_matches(pair):
    cfg, hf, model, _ = pair
    ids = ids_for(cfg, 2, 5, seed=13)
    compiled = tf.function(lambda x: model(x).logits, jit_compile=True)
    assert max_diff(compiled(tf.constant(ids)), torch_run(hf, ids).logits) <= ATOL
