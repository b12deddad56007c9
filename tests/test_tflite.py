"""TFLite export, run in the LiteRT interpreter (ai_edge_litert): builtin ops only, parity with Keras."""

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from helpers import keras_logits
from tfgpt2 import TFGPT2LMHeadModel
from tfgpt2.export import tflite
from tfgpt2.export.lite_session import lite_session

PREFILL, SLOTS = 8, 48


@pytest.fixture(scope="module")
def model(hf_checkpoints):
    _, path = hf_checkpoints["wide-gelu-inv_idx"]
    return TFGPT2LMHeadModel.from_pretrained(path)


@pytest.fixture(scope="module")
def fp32(model):
    return tflite.convert(model, max_seq_len=SLOTS, prefill_len=PREFILL)


def op_names(flat):
    """Op names of the first subgraph (`decode`)."""
    return {d["op_name"] for d in Interpreter(model_content=flat)._get_ops_details()}


def lite_greedy(flat, prompt, n):
    """Greedy tokens from the .tflite, driven as the app drives it (caller-owned cache)."""
    session = lite_session(flat)
    logits = [session.prefill(prompt)]
    tokens = []
    for _ in range(n):
        tokens.append(int(np.argmax(logits[-1])))
        if len(tokens) == n:
            break
        logits.append(session.decode(tokens[-1]))
    return tokens, np.stack(logits)


def test_builtin_ops_only(fp32):
    ops = op_names(fp32)
    assert not [op for op in ops if op.startswith("Flex") or op in ("CUSTOM", "DELEGATE")], ops
    assert "FULLY_CONNECTED" in ops
    # the ops of subgraph 0, `decode`: attention is MUL + SUM, because XNNPACK re-packs a
    # BATCH_MATMUL's non-constant operand (the cache) on every call
    assert "BATCH_MATMUL" not in ops and {"MUL", "SUM", "EXP"} <= ops
    # and no STRIDED_SLICE: LiteRT runs it with a per-element reference kernel outside XNNPACK
    assert "STRIDED_SLICE" not in ops
    assert "VAR_HANDLE" not in ops  # every weight is a constant


def test_signatures(fp32):
    sigs = Interpreter(model_content=fp32).get_signature_list()
    assert sorted(sigs["prefill"]["inputs"]) == ["attention_mask", "input_ids"]
    layers = range(3)  # wide-gelu-inv_idx has 3 layers
    caches = [f"k_{i}" for i in layers] + [f"vt_{i}" for i in layers]
    assert sorted(sigs["prefill"]["outputs"]) == sorted(["cache_mask", "logits", *caches])
    assert sorted(sigs["decode"]["inputs"]) == sorted(["cache_mask", "token_id", *caches])
    assert sorted(sigs["decode"]["outputs"]) == ["logits", "new_k", "new_v"]


def test_decode_never_copies_the_cache(fp32):
    """decode returns only the new entries; the cache tensors are inputs it reads in place."""
    it = Interpreter(model_content=fp32)
    runner = it.get_signature_runner("decode")
    assert runner.get_output_details()["new_k"]["shape"].tolist() == [3, 3, 16]


def test_session_cache_is_what_litert_reads_and_is_freed_with_it(fp32, tmp_path):
    """The session's cache arrays are the decode buffers LiteRT reads (an edit changes the next logits), and
    dropping the session frees the compiled model at once (its packed weights are not left to gc)."""
    import weakref

    path = tmp_path / "m.tflite"
    path.write_bytes(fp32)
    prompt = np.array([3, 1, 4], np.int32)
    sessions = [lite_session(str(path)) for _ in range(2)]
    for session in sessions:
        session.prefill(prompt)
    sessions[1].vt[0][...] *= -3.0
    plain, edited = (session.decode(5) for session in sessions)
    assert np.abs(plain - edited).max() > 1e-3
    from_bytes = lite_session(fp32)
    from_bytes.prefill(prompt)
    assert np.array_equal(from_bytes.decode(5), plain)
    gone = weakref.ref(sessions[0].model)
    del sessions, session, from_bytes
    assert gone() is None


def test_fp32_logits_and_32_greedy_tokens_equal_keras(model, fp32):
    prompt = np.random.default_rng(0).integers(1, model.config.vocab_size, 5).astype(np.int32)
    tokens, logits = lite_greedy(fp32, prompt, 32)
    assert logits.shape == (32, model.config.vocab_size)
    keras_tokens = model.generate(prompt[None], max_new_tokens=32).numpy()[0, 5:].tolist()
    assert tokens == keras_tokens
    ref = keras_logits(model, prompt, tokens)
    print(f"fp32 .tflite vs Keras: max |logit diff| {np.abs(logits - ref).max():.2e} over 32 steps")
    assert np.abs(logits - ref).max() <= 1e-4


def test_integer_attention_graph_equals_keras(model):
    """int8-full's decode graph (BATCH_MATMUL + SOFTMAX attention), unquantized, against Keras."""
    flat = tflite.convert(model, max_seq_len=SLOTS, prefill_len=PREFILL, integer_attention=True)
    assert "BATCH_MATMUL" in op_names(flat)
    prompt = np.random.default_rng(1).integers(1, model.config.vocab_size, 6).astype(np.int32)
    tokens, logits = lite_greedy(flat, prompt, 12)
    assert np.abs(logits - keras_logits(model, prompt, tokens)).max() <= 1e-4


@pytest.mark.parametrize("recipe", [pytest.param("fp16", marks=pytest.mark.slow), "int8"])
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
