"""TFLite export, run in the LiteRT interpreter (ai_edge_litert): builtin ops only, parity with Keras."""

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from tfgpt2 import TFGPT2LMHeadModel
from tfgpt2.export import tflite

PREFILL, SLOTS = 8, 48


@pytest.fixture(scope="module")
def model(hf_checkpoints):
    _, path = hf_checkpoints["wide-gelu-inv_idx"]
    return TFGPT2LMHeadModel.from_pretrained(path)


@pytest.fixture(scope="module")
def fp32(model):
    return tflite.convert(model, max_seq_len=SLOTS, prefill_len=PREFILL)


def op_names(flat):
    return {d["op_name"] for d in Interpreter(model_content=flat)._get_ops_details()}


def lite_greedy(flat, prompt, n):
    """Greedy tokens from the .tflite: left-pad the prompt to PREFILL, then decode n - 1 times."""
    it = Interpreter(model_content=flat)
    ids = np.zeros((1, PREFILL), np.int32)
    mask = np.zeros((1, PREFILL), np.int32)
    ids[0, PREFILL - len(prompt):], mask[0, PREFILL - len(prompt):] = prompt, 1
    out = it.get_signature_runner("prefill")(input_ids=ids, attention_mask=mask)
    decode = it.get_signature_runner("decode")
    tokens, logits = [], [out["logits"]]
    for _ in range(n):
        tokens.append(int(np.argmax(out["logits"])))
        if len(tokens) == n:
            break
        out = decode(token_id=np.array([tokens[-1]], np.int32), key_values=out["key_values"],
                     cache_mask=out["cache_mask"], cache_index=out["cache_index"])
        logits.append(out["logits"])
    return tokens, np.concatenate(logits)


def test_builtin_ops_only(fp32):
    ops = op_names(fp32)
    assert not [op for op in ops if op.startswith("Flex") or op in ("CUSTOM", "DELEGATE")], ops
    assert {"DYNAMIC_UPDATE_SLICE", "FULLY_CONNECTED", "SOFTMAX"} <= ops
    assert "VAR_HANDLE" not in ops  # every weight is a constant


def test_signatures(fp32):
    sigs = Interpreter(model_content=fp32).get_signature_list()
    assert sorted(sigs["prefill"]["inputs"]) == ["attention_mask", "input_ids"]
    assert sorted(sigs["decode"]["inputs"]) == ["cache_index", "cache_mask", "key_values", "token_id"]
    assert sorted(sigs["decode"]["outputs"]) == ["cache_index", "cache_mask", "key_values", "logits"]


def test_fp32_logits_and_32_greedy_tokens_equal_keras(model, fp32):
    prompt = np.random.default_rng(0).integers(1, model.config.vocab_size, 5).astype(np.int32)
    tokens, logits = lite_greedy(fp32, prompt, 32)
    keras_tokens = model.generate(prompt[None], max_new_tokens=32).numpy()[0, 5:].tolist()
    assert tokens == keras_tokens
    seq = np.concatenate([prompt, tokens[:-1]])[None]
    ref = model(seq).logits.numpy()[0, 4:]  # logits that chose each of the 32 tokens
    print(f"fp32 .tflite vs Keras: max |logit diff| {np.abs(logits - ref).max():.2e} over 32 steps")
    assert np.abs(logits - ref).max() <= 1e-4


@pytest.mark.parametrize("recipe", ["fp16", "int8"])
def test_quantized_recipes_convert_and_run(model, fp32, recipe):
    kwargs = dict(optimizations=[tf.lite.Optimize.DEFAULT])
    if recipe == "fp16":
        kwargs["target_types"] = [tf.float16]
    flat = tflite.convert(model, max_seq_len=SLOTS, prefill_len=PREFILL, **kwargs)
    assert not [op for op in op_names(flat) if op.startswith("Flex") or op == "CUSTOM"]
    prompt = np.random.default_rng(1).integers(1, model.config.vocab_size, 6).astype(np.int32)
    tokens, logits = lite_greedy(flat, prompt, 8)
    assert len(tokens) == 8 and np.isfinite(logits).all()
    print(f"{recipe}: {len(flat) / len(fp32):.2f}x the fp32 file")
    assert len(flat) < 0.7 * len(fp32)


def test_bad_export_shapes(model):
    with pytest.raises(ValueError, match="prefill_len"):
        tflite.convert(model, max_seq_len=8, prefill_len=8)
    with pytest.raises(ValueError, match="n_positions"):
        tflite.convert(model, max_seq_len=model.config.n_positions + 1, prefill_len=8)
