"""model.quantize("int8" / "int4"): Keras' quantize API on tfgpt2's models.

Against references nobody here wrote: transformers PyTorch loads what save_pretrained writes from a
quantized model, the float model's own logits bound the quantized ones, Keras' .keras loader restores
them; fidelity on the trained reference model (tests/fixtures/reference) against its float logits.
"""

import keras
import numpy as np
import pytest

from helpers import reference_model
from tfgpt2 import GPT2Config, TFGPT2DoubleHeadsModel, TFGPT2ForSequenceClassification, TFGPT2LMHeadModel, TFGPT2Model
from tfgpt2.errors import GPT2InputError
from tfgpt2.export import fidelity

CONFIG = dict(n_embd=64, n_layer=2, n_head=4, vocab_size=300, n_positions=64, pad_token_id=0)
IDS = np.random.default_rng(0).integers(1, 300, (2, 10)).astype("int32")
MODES = ("int8", "int4")
KERNEL_DTYPE = {"int8": "int8", "int4": "int32"}  # int4: eight values per int32 word


def quantized(mode, cls=TFGPT2LMHeadModel, seed=0):
    keras.utils.set_random_seed(seed)
    model = cls(GPT2Config(**CONFIG))
    reference = cls(GPT2Config(**CONFIG))
    reference.set_weights(model.get_weights())
    model.quantize(mode)
    return model, reference


@pytest.mark.parametrize("mode", MODES)
def test_quantize_stores_each_weight_once_in_its_dtype(mode):
    model, reference = quantized(mode)
    t = model.transformer
    conv = t.h[0].mlp.c_fc
    assert {k.dtype for k in conv.kernels} == {KERNEL_DTYPE[mode]}
    assert t.wte._embeddings.dtype == "int8" and t.wpe._embeddings.dtype == "int8"
    assert model.quantization == {"mode": mode, "layers": [layer.path for layer in model.quantizable_layers()]}
    float_bytes = sum(np.prod(w.shape) * 4 for w in reference.weights)
    ours = sum(np.prod(w.shape) * np.dtype(w.dtype).itemsize for w in model.weights)
    assert ours < float_bytes * (0.3 if mode == "int8" else 0.25), (ours, float_bytes)  # no float copy left
    assert not [w for w in model.weights if w.dtype == "float32" and len(w.shape) == 2 and w.shape[0] > 64]
    logits, ref = model(IDS).logits.numpy(), reference(IDS).logits.numpy()
    assert np.abs(logits - ref).max() < (0.02 if mode == "int8" else 0.15) * np.abs(ref).max()
    assert not np.array_equal(logits, ref)


@pytest.mark.parametrize("mode", ["int8", pytest.param("int4", marks=pytest.mark.slow)])
def test_keras_file_round_trip_keeps_the_quantized_weights(mode, tmp_path):
    model, _ = quantized(mode)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.quantization == model.quantization
    assert loaded.transformer.h[1].attn.c_proj.kernels[0].dtype == KERNEL_DTYPE[mode]
    np.testing.assert_array_equal(loaded(IDS).logits.numpy(), model(IDS).logits.numpy())


@pytest.mark.parametrize("mode", ["int8", pytest.param("int4", marks=pytest.mark.slow)])
def test_save_pretrained_writes_dequantized_weights_transformers_loads(mode, tmp_path):
    import torch
    import transformers

    model, _ = quantized(mode)
    model.save_pretrained(tmp_path)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        theirs = hf(torch.tensor(IDS, dtype=torch.long)).logits.numpy()
    np.testing.assert_allclose(theirs, model(IDS).logits.numpy(), atol=1e-4)


@pytest.mark.parametrize("mode", [pytest.param("int8", marks=pytest.mark.slow), "int4"])
def test_token_by_token_with_cache_equals_full_pass(mode):
    model, _ = quantized(mode)
    full = model(IDS).logits.numpy()
    out = model(IDS[:, :4], use_cache=True)
    steps = [out.logits.numpy()]
    past = out.past_key_values
    for i in range(4, IDS.shape[1]):
        out = model(IDS[:, i:i + 1], past_key_values=past, use_cache=True)
        past = out.past_key_values
        steps.append(out.logits.numpy())
    np.testing.assert_allclose(np.concatenate(steps, 1), full, atol=1e-4)


@pytest.mark.parametrize("mode, batch", [("int4", 1), *(pytest.param(m, b, marks=pytest.mark.slow)
                                                        for m, b in [("int4", 2), ("int8", 1), ("int8", 2)])])
def test_generate_is_the_quantized_models_own_argmax(mode, batch):
    """Greedy generate (XLA loop, int8 head) == argmax of the quantized model's full pass."""
    model, _ = quantized(mode)
    for ids in (IDS[:batch],):
        tokens = model.generate(ids, max_new_tokens=8, do_sample=False).numpy()
        logits = model(tokens[:, :-1]).logits.numpy()[:, ids.shape[1] - 1:]
        np.testing.assert_array_equal(tokens[:, ids.shape[1]:], logits.argmax(-1))


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_sampling_runs_on_quantized_models(mode):
    model, _ = quantized(mode)
    sampled = model.generate(IDS, max_new_tokens=8, do_sample=True, top_k=5, seed=3).numpy()
    assert sampled.shape == (2, 18) and sampled.max() < CONFIG["vocab_size"]


@pytest.mark.parametrize("cls, mode", [
    (TFGPT2LMHeadModel, "int8"),
    *(pytest.param(c, m, marks=pytest.mark.slow) for c, m in [
        (TFGPT2Model, "int8"), (TFGPT2Model, "int4"), (TFGPT2LMHeadModel, "int4"), (TFGPT2DoubleHeadsModel, "int8"),
        (TFGPT2DoubleHeadsModel, "int4"),
        (TFGPT2ForSequenceClassification, "int8"), (TFGPT2ForSequenceClassification, "int4")])])
def test_fit_and_predict_run_on_every_class(cls, mode):
    model, reference = quantized(mode, cls)
    x = IDS[:, None] if cls is TFGPT2DoubleHeadsModel else IDS
    name = "last_hidden_state" if cls is TFGPT2Model else "logits"
    predicted = model.predict(x, verbose=0)[name]
    np.testing.assert_allclose(predicted, model(x)[name].numpy(), atol=1e-5)
    if cls is TFGPT2Model:
        return
    before = [w.numpy().copy() for w in model.transformer.h[0].mlp.c_fc.kernels]
    labels = {"labels": IDS} if cls in (TFGPT2LMHeadModel, TFGPT2DoubleHeadsModel) else {"labels": IDS[:, 0] % 2}
    if cls is TFGPT2DoubleHeadsModel:
        labels = {"labels": IDS[:, None], "mc_labels": np.zeros(2, "int32")}
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit({"input_ids": x, **labels}, epochs=2, batch_size=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert history.history["loss"][1] < history.history["loss"][0]  # biases, norms and heads still train
    for b, w in zip(before, model.transformer.h[0].mlp.c_fc.kernels):
        np.testing.assert_array_equal(b, w.numpy())  # quantized weights are frozen


def test_quantize_refuses_what_it_cannot_do():
    model, _ = quantized("int8")
    with pytest.raises(GPT2InputError, match="already quantized"):
        model.quantize("int4")
    with pytest.raises(GPT2InputError, match="quantized"):
        model.resize_token_embeddings(310)
    with pytest.raises(GPT2InputError, match="before model.quantize"):
        model.transformer.h[0].attn.c_attn.hf_kernel.assign(np.zeros((64, 192)))
    fresh = TFGPT2LMHeadModel(GPT2Config(**CONFIG))
    with pytest.raises((GPT2InputError, ValueError)):
        fresh.quantize("float8")
    fresh.quantize("int4", filters="c_fc")
    assert fresh.quantization["layers"] == [f"transformer/h.{i}/mlp/c_fc" for i in range(2)]
    assert fresh.transformer.wte.quantization_mode is None
    assert fresh.transformer.h[0].attn.c_attn.quantization_mode is None


@pytest.fixture(scope="module")
def reference():
    model, held_out, _ = reference_model()
    return model, held_out[:8]


@pytest.mark.parametrize("mode, min_top1, max_ppl_ratio", [("int8", 0.97, 1.02), ("int4", 0.95, 1.05)])
def test_fidelity_on_the_trained_reference_model(reference, mode, min_top1, max_ppl_ratio):
    model, held_out = reference
    candidate = TFGPT2LMHeadModel(model.config)
    candidate.set_weights(model.get_weights())
    candidate.quantize(mode)
    fid = fidelity.keras_models(model, candidate, held_out)
    print(mode, fid)
    assert fid["top1_agreement"] >= min_top1, fid
    assert fid["perplexity"] <= fid["keras_perplexity"] * max_ppl_ratio, fid
