"""Bad configs, inputs and checkpoints give one clear error that names the fix."""

import json
import os

import numpy as np
import pytest

from helpers import build_hf
from tfgpt2 import (
    CheckpointError,
    GPT2Config,
    GPT2ConfigError,
    GPT2InputError,
    KVCache,
    TFGPT2DoubleHeadsModel,
    TFGPT2LMHeadModel,
)

CFG = GPT2Config(vocab_size=50, n_positions=16, n_embd=32, n_layer=1, n_head=4)


@pytest.fixture(scope="module")
def model():
    return TFGPT2LMHeadModel(CFG)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_embd=30, n_head=4), "not divisible by n_head"),
    (dict(activation_function="gelu_newest"), "activation_function"),
    (dict(n_layer=0), "positive int"),
    (dict(attn_pdrop=1.5), r"\[0, 1\)"),
    (dict(add_cross_attention=True), "cross_attention"),
])
def test_inconsistent_config(kwargs, match):
    with pytest.raises(GPT2ConfigError, match=match):
        GPT2Config(**kwargs)


def test_unknown_config_field_suggests_name():
    with pytest.raises(GPT2ConfigError, match="Did you mean 'n_head'"):
        GPT2Config.from_dict({"n_heads": 4})
    with pytest.raises(GPT2ConfigError, match="model_type='llama'"):
        GPT2Config.from_dict({"model_type": "llama"})


def test_config_round_trip_with_transformers(tmp_path):
    import transformers

    hf = transformers.GPT2Config(n_embd=48, n_head=3, n_layer=2, activation_function="relu", n_inner=64,
                                 scale_attn_by_inverse_layer_idx=True)
    hf.save_pretrained(tmp_path)
    ours = GPT2Config.from_pretrained(str(tmp_path))
    for name in GPT2Config.field_names():
        if hasattr(hf, name):
            assert getattr(ours, name) == getattr(hf, name), name
    ours.to_json(tmp_path / "config.json")
    back = transformers.GPT2Config.from_pretrained(str(tmp_path))
    assert (back.n_embd, back.n_head, back.n_inner, back.activation_function) == (48, 3, 64, "relu")


@pytest.mark.parametrize("preset, shape", [("gpt2", (768, 12, 12)), ("gpt2-medium", (1024, 24, 16)),
                                           ("gpt2-large", (1280, 36, 20)), ("gpt2-xl", (1600, 48, 25)),
                                           ("distilgpt2", (768, 6, 12))])
def test_presets(preset, shape):
    cfg = GPT2Config.from_preset(preset)
    assert (cfg.n_embd, cfg.n_layer, cfg.n_head, cfg.vocab_size, cfg.n_positions) == (*shape, 50257, 1024)


@pytest.mark.parametrize("ids, kwargs, match", [
    (np.array([[1, 50]]), {}, r"id 50 outside \[0, 50\)"),
    (np.array([[-1, 2]]), {}, r"id -1 outside"),
    (np.ones((1, 17), "int32"), {}, "longer than n_positions=16"),
    (np.zeros((1, 0), "int32"), {}, "empty"),
    (np.array([[1.0, 2.0]]), {}, "integer token ids"),
    (np.array([1, 2]), {}, r"shape \(batch, seq_len\)"),
    (np.array([[1, 2, 3]]), {"attention_mask": np.ones((1, 2))}, "attention_mask has shape"),
    (np.array([[1, 2, 3]]), {"attention_mask": np.ones((2, 3))}, "attention_mask has shape"),
    ([[1, 2], [3]], {}, "different lengths"),
    (np.array([["a"]]), {}, "GPT2Tokenizer|integer"),
    (None, {}, "input_ids is required"),
])
def test_bad_inputs_raise_before_graph(model, ids, kwargs, match):
    with pytest.raises(GPT2InputError, match=match):
        model(ids, **kwargs)


def test_full_cache_grows_and_wrong_past(model):
    cache = KVCache.empty(CFG, 1, capacity=4)
    out = model(np.array([[1, 2, 3]]), past_key_values=cache)
    grown = model(np.array([[4, 5]]), past_key_values=out.past_key_values)  # like HF's growing cache
    assert grown.past_key_values.mask.shape == (1, 5)
    np.testing.assert_allclose(grown.logits, model(np.array([[1, 2, 3, 4, 5]])).logits[:, 3:], atol=1e-5)
    with pytest.raises(GPT2InputError, match="past_key_values"):
        model(np.array([[1]]), past_key_values=((1, 2),))
    with pytest.raises(ValueError, match="exceeds n_positions"):
        KVCache.empty(CFG, 1, capacity=17)


def test_double_heads_rank(model):
    with pytest.raises(GPT2InputError, match="num_choices"):
        TFGPT2DoubleHeadsModel(CFG)(np.ones((2, 3), "int32"))


def test_checkpoint_mismatch_lists_every_key(tmp_path):
    hf = build_hf("GPT2LMHeadModel", dict(vocab_size=50, n_positions=16, n_embd=32, n_layer=2, n_head=4))
    hf.save_pretrained(tmp_path)
    wrong = GPT2Config(vocab_size=60, n_positions=16, n_embd=32, n_layer=1, n_head=4)
    with pytest.raises(CheckpointError) as err:
        TFGPT2LMHeadModel.from_pretrained(str(tmp_path), config=wrong)
    message = str(err.value)
    assert "unexpected (12)" in message and "transformer.h.1.ln_1.weight" in message
    assert "mis-shaped (1)" in message and "transformer.wte.weight: checkpoint (50, 32) vs model (60, 32)" in message


def test_missing_weights_and_offline_hub(tmp_path):
    os.makedirs(tmp_path / "empty")
    CFG.to_json(tmp_path / "empty" / "config.json")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        TFGPT2LMHeadModel.from_pretrained(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="local directory"):
        TFGPT2LMHeadModel.from_pretrained("gpt2-not-cached-anywhere")
    with pytest.raises(FileNotFoundError, match="not a checkpoint directory"):
        TFGPT2LMHeadModel.from_pretrained(str(tmp_path / "nope"))


def test_corrupt_config_json(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(GPT2ConfigError, match="not valid JSON"):
        GPT2Config.from_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"n_embd": 10, "n_head": 3}))
    with pytest.raises(GPT2ConfigError, match="divisible"):
        GPT2Config.from_pretrained(str(tmp_path))
