"""LiteRT-LM: the exported .litertlm run by LiteRT-LM's own Python API (litert-lm-api) against model.generate."""

import json
import os

import numpy as np
import pytest

from helpers import FIXTURES, build_hf
from tfgpt2 import GPT2Tokenizer, TFGPT2LMHeadModel
from tfgpt2.export import litertlm_run, pipeline

SLOTS, PREFILL = 64, 16
SHORT = "The list type in Python is"  # 6 tokens: under the prefill length
LONG = ("Python's built-in functions are always available: abs, all, any, ascii, bin, bool, breakpoint, bytearray, "
        "bytes, callable")  # 30+ tokens: prefilled in chunks of PREFILL


def _export(source, out, recipes):
    return pipeline.export(source, str(out), formats=["litertlm"], quantize=recipes, max_seq_len=SLOTS,
                           prefill_len=PREFILL, log=lambda *_: None)


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    """A small-width GPT-2 with the real vocabulary (eos 50256) as fp32 .litertlm, converted in this process
    with the steps the conversion children take (tiny_export covers the export around them)."""
    from tfgpt2.export import worker

    hf = build_hf("GPT2LMHeadModel", dict(vocab_size=50257, n_positions=128, n_embd=64, n_layer=2, n_head=4))
    hf.config.eos_token_id = hf.config.bos_token_id = 50256
    path, out = str(tmp_path_factory.mktemp("lm-ckpt")), tmp_path_factory.mktemp("lm-export")
    hf.save_pretrained(path)
    model = TFGPT2LMHeadModel.from_pretrained(path)
    worker.write_archives(path, str(out), SLOTS, PREFILL, ["lm-bound-float"])
    worker.convert(str(out), "fp32", str(out / "gpt2_fp32.litertlm"), "litertlm", path)
    with litertlm_run.engine(str(out / "gpt2_fp32.litertlm")) as lm:
        yield model, lm


def _expected(model, prompt, new):
    tokenizer = GPT2Tokenizer()
    ids = tokenizer.encode(prompt)
    out = model.generate(np.array([ids], np.int32), max_new_tokens=new).numpy()[0, len(ids):].tolist()
    return tokenizer.decode(out), len(ids)


@pytest.mark.parametrize("prompt", [SHORT, LONG], ids=["shorter-than-prefill", "longer-than-prefill"])
def test_litertlm_greedy_text_equals_model_generate(random_model, prompt):
    model, lm = random_model
    expected, prompt_tokens = _expected(model, prompt, 20)
    assert (prompt_tokens < PREFILL) == (prompt is SHORT)
    assert lm.tokenize(prompt) == GPT2Tokenizer().encode(prompt)
    text, why = litertlm_run.generate(lm, prompt, 20, SLOTS)
    assert text == expected and why == "max_new_tokens"


def test_litertlm_stops_at_the_cache_capacity_with_a_reason(random_model):
    model, lm = random_model
    prompt = " ".join(["word"] * 50)  # 50 tokens: 14 slots left of 64
    expected, _ = _expected(model, prompt, SLOTS - 50)
    text, why = litertlm_run.generate(lm, prompt, 40, SLOTS)
    assert text == expected and why.startswith("cache full")
    with pytest.raises(ValueError, match="the prompt has 70 tokens; the .litertlm holds 64"):
        litertlm_run.generate(lm, " ".join(["word"] * 70), 4, SLOTS)


def test_model_json_lists_the_litertlm_and_verify_runs_it(tiny_export, capsys):
    """tiny_export (tools/write_goldens.py) holds the int8 .litertlm the Android app reads."""
    from helpers import CONFIGS, cli

    _, out, _ = tiny_export
    cfg = CONFIGS["small-gelu_new"]
    written = json.loads((out / "model.json").read_text())
    entry = written["litertlm"]["gpt2_int8.litertlm"]
    assert entry["recipe"] == "int8" and entry["max_num_tokens"] == 24
    assert set(entry["signatures"]) == {"prefill_8", "decode"}
    decode = entry["signatures"]["decode"]
    head_dim = cfg["n_embd"] // cfg["n_head"]
    assert decode["inputs"]["kv_cache_v_0"]["shape"] == [1, cfg["n_head"], head_dim, 24]  # values transposed
    assert decode["outputs"]["logits"]["shape"] == [1, 1, cfg["vocab_size"]] and "kv_cache_k_1" in decode["outputs"]
    artifact = next(a for a in written["artifacts"] if a["path"] == "gpt2_int8.litertlm")
    assert artifact["format"] == "litertlm" and artifact["bytes"] == os.path.getsize(out / "gpt2_int8.litertlm")
    code, stdout, _ = cli(capsys, "verify", str(out))
    assert code == 0 and "gpt2_int8.litertlm: signatures match model.json, LiteRT-LM generated" in stdout


def _builtin_only(path, tmp):
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(litertlm_run.inner_tflite(path, tmp))
    customs = [c.customCode for c in model.operatorCodes if c.customCode]
    assert not customs, customs


@pytest.mark.slow
def test_trained_reference_model_every_recipe(tmp_path):
    """The trained reference model in every recipe: builtin-only; fp32 gives model.generate's text, the
    quantized files generate in LiteRT-LM (their fidelity is the .tflite recipes', docs/export.md)."""
    model = TFGPT2LMHeadModel.from_pretrained(os.path.join(FIXTURES, "reference"))
    _export(os.path.join(FIXTURES, "reference"), tmp_path / "e", ["fp32", "int8", "int4"])
    for recipe in ("fp32", "int8", "int4"):
        path = str(tmp_path / "e" / f"gpt2_{recipe}.litertlm")
        (tmp_path / recipe).mkdir()
        _builtin_only(path, str(tmp_path / recipe))
        with litertlm_run.engine(path) as lm:
            for prompt in (SHORT, LONG):
                text, why = litertlm_run.generate(lm, prompt, 20, SLOTS)
                if recipe == "fp32":
                    assert text == _expected(model, prompt, 20)[0], (recipe, prompt)
                assert why == "max_new_tokens" and text, (recipe, prompt, text, why)


@pytest.mark.slow
def test_int8_file_at_124m_shape_is_a_quarter_of_fp32(tmp_path):
    """At GPT-2 124M shape (random weights) the int8 .litertlm is <= 0.27x the fp32 one: the tied embedding
    is stored once (the tokenizer inside is the same in both, and small beside the weights)."""
    from tfgpt2 import GPT2Config

    model = TFGPT2LMHeadModel(GPT2Config.from_preset("gpt2"))
    model(np.zeros((1, 2), np.int32))
    model.save_pretrained(str(tmp_path / "ckpt"))
    _export(str(tmp_path / "ckpt"), tmp_path / "e", ["fp32", "int8"])
    sizes = {r: os.path.getsize(tmp_path / "e" / f"gpt2_{r}.litertlm") for r in ("fp32", "int8")}
    print(f"124M .litertlm bytes {sizes}, int8 / fp32 = {sizes['int8'] / sizes['fp32']:.3f}")
    assert sizes["int8"] <= 0.27 * sizes["fp32"], sizes
