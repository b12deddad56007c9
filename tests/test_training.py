"""Keras training: internal loss == PyTorch's, fit/evaluate/predict, .keras, distribution, bf16."""

import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import CONFIGS, build_hf, run_python, torch_run
from tfgpt2 import (
    GPT2Config,
    GPT2Tokenizer,
    TFGPT2DoubleHeadsModel,
    TFGPT2ForSequenceClassification,
    TFGPT2LMHeadModel,
    TFGPT2Model,
    training,
)

TINY = dict(n_embd=32, n_layer=2, n_head=4, n_positions=64)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_lm_loss_equals_pytorch(name, hf_checkpoints):
    hf, path = hf_checkpoints[name]
    model = TFGPT2LMHeadModel.from_pretrained(path)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, CONFIGS[name]["vocab_size"], (3, 10)).astype("int32")
    labels = ids.astype("int64")
    labels[0, :4] = -100
    labels[2, 7:] = -100
    ref = float(torch_run(hf, ids, labels=labels).loss)
    assert abs(float(model(ids, labels=labels).loss) - ref) <= 1e-5


def test_double_heads_losses_equal_pytorch(tmp_path):
    cfg = CONFIGS["small-gelu_new"]
    hf = build_hf("GPT2DoubleHeadsModel", cfg, seed=1)
    hf.save_pretrained(tmp_path)
    model = TFGPT2DoubleHeadsModel.from_pretrained(str(tmp_path))
    ids = np.random.default_rng(1).integers(0, cfg["vocab_size"], (2, 3, 7)).astype("int32")
    mc_labels = np.array([2, 0], "int64")
    ref = torch_run(hf, ids, labels=ids.astype("int64"), mc_labels=mc_labels)
    out = model(ids, labels=ids, mc_labels=mc_labels)
    assert abs(float(out.loss) - float(ref.loss)) <= 1e-5
    assert abs(float(out.mc_loss) - float(ref.mc_loss)) <= 1e-5


@pytest.fixture(scope="module")
def pydoc_blocks():
    return training.pack_ids(training.builtin_texts()[:60], GPT2Tokenizer(), seq_len=32)


@pytest.mark.slow
def test_fit_50_steps_reduces_loss_30_percent(pydoc_blocks):
    keras.utils.set_random_seed(0)
    model = TFGPT2LMHeadModel(GPT2Config(vocab_size=50257, **TINY))
    model.compile(optimizer=keras.optimizers.AdamW(3e-3))
    ds = training.lm_dataset(pydoc_blocks[:400], batch_size=8)
    before = model.evaluate(ds, verbose=0)
    history = model.fit(ds.repeat(), steps_per_epoch=50, epochs=1, verbose=0)
    after = model.evaluate(ds, verbose=0)
    print(f"loss before {before:.3f} after 50 steps {after:.3f} ({100 * (1 - after / before):.1f}% lower)")
    assert after <= 0.7 * before
    assert np.isfinite(history.history["loss"][0])
    preds = model.predict(pydoc_blocks[:5], batch_size=2, verbose=0)
    assert preds["logits"].shape == (5, 32, 50257)


def test_internal_loss_is_mean_over_real_tokens():
    model = TFGPT2LMHeadModel(GPT2Config(vocab_size=60, **TINY))
    ids = np.random.default_rng(2).integers(0, 60, (2, 9)).astype("int32")
    mask = np.ones_like(ids)
    mask[1, :4] = 0  # left padding must not count
    model.compile(optimizer="adamw")
    got = model.evaluate({"input_ids": ids, "attention_mask": mask}, verbose=0, batch_size=2)
    labels = np.where(mask == 1, ids, -100)
    assert abs(got - float(model(ids, attention_mask=mask, labels=labels).loss)) <= 1e-5


@pytest.mark.slow
def test_double_heads_and_classifier_fit():
    cfg = GPT2Config(vocab_size=50, pad_token_id=0, num_labels=3, **TINY)
    rng = np.random.default_rng(3)
    dh = TFGPT2DoubleHeadsModel(cfg)
    dh.compile(optimizer="adamw")
    x = {"input_ids": rng.integers(1, 50, (8, 2, 6)).astype("int32"), "mc_labels": rng.integers(0, 2, 8)}
    h = dh.fit(x, batch_size=4, epochs=2, verbose=0)
    assert h.history["loss"][1] < h.history["loss"][0]
    clf = TFGPT2ForSequenceClassification(cfg)
    clf.compile(optimizer=keras.optimizers.AdamW(1e-2))
    ids = rng.integers(1, 50, (16, 6)).astype("int32")
    h = clf.fit(ids, ids[:, 0] % 3, batch_size=8, epochs=3, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]


def test_compile_with_user_loss_uses_logits():
    model = TFGPT2ForSequenceClassification(GPT2Config(vocab_size=50, num_labels=2, **TINY))
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ids = np.random.default_rng(4).integers(0, 50, (4, 5)).astype("int32")
    loss = model.evaluate(ids, np.array([0, 1, 1, 0]), verbose=0)
    assert abs(loss - float(model(ids, labels=np.array([0, 1, 1, 0])).loss)) <= 1e-5


@pytest.mark.parametrize("cls", [TFGPT2Model, TFGPT2LMHeadModel, TFGPT2DoubleHeadsModel,
                                 TFGPT2ForSequenceClassification])
def test_keras_file_round_trip(cls, tmp_path):
    cfg = GPT2Config(vocab_size=40, activation_function="gelu", n_inner=48, pad_token_id=0, **TINY)
    model = cls(cfg)
    shape = (2, 2, 5) if cls is TFGPT2DoubleHeadsModel else (2, 5)
    ids = np.random.default_rng(5).integers(1, 40, shape).astype("int32")
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded) is cls and loaded.config == model.config
    first, second = model(ids), loaded(ids)
    for key in first:
        if key != "past_key_values":
            np.testing.assert_array_equal(first[key], second[key])
    clone = cls.from_config(model.get_config())
    assert clone.config == model.config and len(clone.weights) == len(model.weights)


@pytest.mark.slow
def test_mixed_bfloat16_attention_scaling():
    cfg = GPT2Config(vocab_size=80, **TINY)
    ref = TFGPT2LMHeadModel(cfg)
    ids = np.random.default_rng(6).integers(0, 80, (2, 12)).astype("int32")
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = TFGPT2LMHeadModel(cfg)
        mixed.set_weights(ref.get_weights())
        out = mixed(ids, output_attentions=True)
        mixed.compile(optimizer="adamw")
        loss = mixed.fit(ids, epochs=1, verbose=0).history["loss"][0]
    finally:
        keras.mixed_precision.set_global_policy("float32")
    probs_ref = ref(ids, output_attentions=True).attentions[0].numpy()
    assert out.logits.dtype == tf.float32 and np.isfinite(loss)
    np.testing.assert_allclose(out.attentions[0].numpy(), probs_ref, atol=2e-2)
    np.testing.assert_allclose(out.logits.numpy(), ref(ids).logits.numpy(), atol=0.1)
    assert np.argmax(out.logits, -1).tolist() == np.argmax(ref(ids).logits, -1).tolist()


@pytest.mark.slow
def test_mirrored_strategy_step_losses_match_single_device():
    """Per-step loss ("step_loss", averaged over the replicas) over 2 epochs of a repeated dataset."""
    code = textwrap.dedent("""
        import numpy as np, tensorflow as tf, keras
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from tfgpt2 import GPT2Config, TFGPT2LMHeadModel
        cfg = GPT2Config(vocab_size=70, n_embd=32, n_layer=2, n_head=4, n_positions=32,
                         resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        ids = np.random.default_rng(0).integers(0, 70, (32, 16)).astype("int32")
        ds = tf.data.Dataset.from_tensor_slices({"input_ids": ids}).batch(8).repeat()
        class Steps(keras.callbacks.Callback):
            losses = []
            def on_train_batch_end(self, batch, logs=None):
                self.losses.append(float(logs["step_loss"]))
        def step_losses(strategy):
            keras.utils.set_random_seed(0)
            Steps.losses = []
            with strategy.scope():
                model = TFGPT2LMHeadModel(cfg)
                model.compile(optimizer="adamw")
                model.fit(ds, epochs=2, steps_per_epoch=2, verbose=0, callbacks=[Steps()])
            return list(Steps.losses)
        mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        print(mirrored.num_replicas_in_sync, step_losses(tf.distribute.get_strategy()), step_losses(mirrored),
              sep="|")
    """)
    replicas, single, mirrored = run_python(code).strip().splitlines()[-1].split("|")
    single, mirrored = eval(single), eval(mirrored)
    print(f"per-step loss: single device {single}, MirroredStrategy x{replicas} {mirrored}")
    assert int(replicas) == 2 and len(single) == len(mirrored) == 4
    assert max(abs(a - b) for a, b in zip(single, mirrored)) <= 1e-5, (single, mirrored)


def test_random_init_draws_every_weight_independently():
    """Training from scratch needs distinct q/k/v and c_fc blocks (identical blocks get identical
    gradients and never diverge), and wpe must not be a copy of wte's first rows; HF's init draws
    every tensor independently with std initializer_range (c_proj scaled by 1/sqrt(2 n_layer))."""
    cfg = GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=100, n_positions=16)
    model = TFGPT2LMHeadModel(cfg)
    model(np.zeros((1, 2), np.int32))
    t = model.transformer
    tensors = [t.wte.embeddings.numpy()[:16], t.wpe.embeddings.numpy()]
    for block in t.h:
        for conv in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
            tensors += [k.numpy() for k in conv.kernels]
    firsts = [x.ravel()[:64] for x in tensors]
    for i in range(len(firsts)):
        for j in range(i):
            assert not np.allclose(firsts[i], firsts[j]), (i, j)
    c_fc = t.h[0].mlp.c_fc.hf_kernel.numpy()  # (in, out)
    assert c_fc.shape == (32, 128) and abs(c_fc.std() - cfg.initializer_range) < 0.2 * cfg.initializer_range
