"""transformers' TF GPT-2 model tester (tests/models/gpt2/test_modeling_tf_gpt2.py), check by check.

Each check of TFGPT2ModelTester / TFGPT2ModelTest is rewritten against tfgpt2, with the tester's
shapes (batch 13, seq 7, vocab 99, 5 layers, 4 heads, pad = eos = bos = 98), and every number
is compared with transformers PyTorch on the same weights (saved with save_pretrained).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import build_hf, max_diff, torch_run
from tfgpt2 import GPT2Config, TFGPT2DoubleHeadsModel, TFGPT2ForSequenceClassification, TFGPT2LMHeadModel, TFGPT2Model

B, T, V, TYPES, CHOICES, LABELS = 13, 7, 99, 16, 4, 3
TESTER = dict(vocab_size=V, n_embd=32, n_layer=5, n_head=4, n_positions=512)
ATOL = 1e-4
CLASSES = {"GPT2Model": TFGPT2Model, "GPT2LMHeadModel": TFGPT2LMHeadModel,
           "GPT2DoubleHeadsModel": TFGPT2DoubleHeadsModel, "GPT2ForSequenceClassification":
           TFGPT2ForSequenceClassification}


def ids_tensor(shape, vocab, rng):
    return rng.integers(0, vocab, shape).astype("int32")


def random_attention_mask(shape, rng):
    mask = ids_tensor(shape, 2, rng)
    mask[:, -1] = 1  # the tester: at least one token attended per row
    return mask


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    return dict(input_ids=ids_tensor((B, T), V, rng), input_mask=random_attention_mask((B, T), rng),
                token_type_ids=ids_tensor((B, T), TYPES, rng), mc_token_ids=ids_tensor((B, CHOICES), T, rng),
                sequence_labels=ids_tensor((B,), 2, rng), rng=rng)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{HF class name: (PyTorch model, tfgpt2 model loaded from its save_pretrained)}."""
    out = {}
    for name, cls in CLASSES.items():
        extra = dict(num_labels=LABELS) if name == "GPT2ForSequenceClassification" else {}
        hf = build_hf(name, TESTER, seed=len(out), **extra)
        hf.config.pad_token_id = hf.config.eos_token_id = hf.config.bos_token_id = V - 1
        path = tmp_path_factory.mktemp(name)
        hf.save_pretrained(path)
        out[name] = (hf, cls.from_pretrained(str(path)))
    return out


def _real(mask):
    return mask.astype(bool)


def test_gpt2_model(models, inputs):
    hf, model = models["GPT2Model"]
    ids, mask, types = inputs["input_ids"], inputs["input_mask"], inputs["token_type_ids"]
    ref = torch_run(hf, ids, attention_mask=mask, token_type_ids=types).last_hidden_state.numpy()
    result = model({"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
    assert max_diff(result.last_hidden_state.numpy()[_real(mask)], ref[_real(mask)]) <= ATOL
    result = model([ids, None, mask])  # None is the input for 'past'
    ref = torch_run(hf, ids, attention_mask=mask).last_hidden_state.numpy()
    assert max_diff(result.last_hidden_state.numpy()[_real(mask)], ref[_real(mask)]) <= ATOL
    result = model(ids)
    assert result.last_hidden_state.shape == (B, T, 32)
    assert max_diff(result.last_hidden_state, torch_run(hf, ids).last_hidden_state) <= ATOL


def test_gpt2_model_past(models, inputs):
    hf, model = models["GPT2Model"]
    ids, types, rng = inputs["input_ids"], inputs["token_type_ids"], inputs["rng"]
    outputs = model(ids, token_type_ids=types, use_cache=True)
    outputs_use_cache_conf = model(ids, token_type_ids=types)
    outputs_no_past = model(ids, token_type_ids=types, use_cache=False)
    assert len(outputs) == len(outputs_use_cache_conf)
    assert len(outputs) == len(outputs_no_past) + 1
    output, past = outputs.to_tuple()
    next_tokens, next_types = ids_tensor((B, 1), V, rng), ids_tensor((B, 1), TYPES, rng)
    next_ids, next_type_ids = np.concatenate([ids, next_tokens], -1), np.concatenate([types, next_types], -1)
    no_past = model(next_ids, token_type_ids=next_type_ids)["last_hidden_state"].numpy()
    from_past = model(next_tokens, token_type_ids=next_types, past=past)["last_hidden_state"].numpy()
    np.testing.assert_allclose(from_past[:, 0], no_past[:, -1], rtol=1e-5, atol=1e-6)
    ref = torch_run(hf, next_ids, token_type_ids=next_type_ids).last_hidden_state.numpy()
    assert max_diff(from_past[:, 0], ref[:, -1]) <= ATOL
    assert max_diff(output, ref[:, :-1]) <= ATOL


def test_gpt2_model_att_mask_past(models, inputs):
    hf, model = models["GPT2Model"]
    ids, rng = inputs["input_ids"].copy(), inputs["rng"]
    half = T // 2
    attn_mask = np.concatenate([np.ones((B, half), "int32"), np.zeros((B, T - half), "int32")], 1)
    output, past = model(ids, attention_mask=attn_mask).to_tuple()
    next_tokens = ids_tensor((B, 1), V, rng)
    change = T - (int(rng.integers(0, half)) + 1)  # a masked position gets other tokens
    ids[:, change] = ids_tensor((B,), V, rng)
    next_ids = np.concatenate([ids, next_tokens], -1)
    attn_mask = np.concatenate([attn_mask, np.ones((B, 1), "int32")], 1)
    no_past = model(next_ids, attention_mask=attn_mask)["last_hidden_state"].numpy()
    from_past = model(next_tokens, past=past, attention_mask=attn_mask)["last_hidden_state"].numpy()
    np.testing.assert_allclose(from_past[:, 0], no_past[:, -1], rtol=1e-5, atol=1e-6)
    ref = torch_run(hf, next_ids, attention_mask=attn_mask).last_hidden_state.numpy()
    assert max_diff(from_past[:, 0], ref[:, -1]) <= ATOL


def test_gpt2_model_past_large_inputs(models, inputs):
    hf, model = models["GPT2Model"]
    rng = inputs["rng"]
    ids, mask, types = inputs["input_ids"][:1], inputs["input_mask"][:1], inputs["token_type_ids"][:1]
    output, past = model(ids, attention_mask=mask, token_type_ids=types, use_cache=True).to_tuple()
    next_tokens, next_mask = ids_tensor((1, 3), V, rng), ids_tensor((1, 3), 2, rng)
    next_types = ids_tensor((1, 3), TYPES, rng)
    next_ids = np.concatenate([ids, next_tokens], -1)
    next_attention_mask = np.concatenate([mask, next_mask], -1)
    next_type_ids = np.concatenate([types, next_types], -1)
    no_past = model(next_ids, token_type_ids=next_type_ids, attention_mask=next_attention_mask)["last_hidden_state"]
    from_past = model(next_tokens, token_type_ids=next_types, attention_mask=next_attention_mask,
                      past=past)["last_hidden_state"]
    assert from_past.shape[1] == next_tokens.shape[1]
    np.testing.assert_allclose(from_past.numpy(), no_past.numpy()[:, -3:], rtol=1e-3, atol=1e-5)
    ref = torch_run(hf, next_ids, token_type_ids=next_type_ids, attention_mask=next_attention_mask)
    real = _real(next_attention_mask[:, -3:])
    assert max_diff(from_past.numpy()[real], ref.last_hidden_state.numpy()[:, -3:][real]) <= ATOL


def test_gpt2_lm_head(models, inputs):
    hf, model = models["GPT2LMHeadModel"]
    ids, mask, types = inputs["input_ids"], inputs["input_mask"], inputs["token_type_ids"]
    result = model({"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
    assert result.logits.shape == (B, T, V)
    ref = torch_run(hf, ids, attention_mask=mask, token_type_ids=types, labels=ids)
    assert max_diff(result.logits.numpy()[_real(mask)], ref.logits.numpy()[_real(mask)]) <= ATOL
    loss = model(ids, attention_mask=np.ones_like(ids), labels=ids).loss  # transformers' shifted LM loss
    assert max_diff(loss, torch_run(hf, ids, labels=ids).loss) <= ATOL


def test_gpt2_double_head(models, inputs):
    hf, model = models["GPT2DoubleHeadsModel"]
    tile = lambda x: np.tile(x[:, None], (1, CHOICES, 1))  # noqa: E731
    mc = {"input_ids": tile(inputs["input_ids"]), "mc_token_ids": inputs["mc_token_ids"],
          "attention_mask": tile(inputs["input_mask"]), "token_type_ids": tile(inputs["token_type_ids"])}
    result = model(mc)
    assert result.logits.shape == (B, CHOICES, T, V)
    assert result.mc_logits.shape == (B, CHOICES)
    ref = torch_run(hf, mc["input_ids"], **{k: v for k, v in mc.items() if k != "input_ids"})
    real = _real(mc["attention_mask"])
    assert max_diff(result.logits.numpy()[real], ref.logits.numpy()[real]) <= ATOL
    # mc_logits read the hidden state at mc_token_ids: compare where that token is attended
    picked = np.take_along_axis(mc["attention_mask"], inputs["mc_token_ids"][..., None], -1)[..., 0] == 1
    assert max_diff(result.mc_logits.numpy()[picked], ref.mc_logits.numpy()[picked]) <= ATOL


def test_gpt2_sequence_classification_model(models, inputs):
    hf, model = models["GPT2ForSequenceClassification"]
    ids, mask, types, labels = (inputs[k] for k in ("input_ids", "input_mask", "token_type_ids", "sequence_labels"))
    assert model.config.num_labels == LABELS
    result = model({"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": labels})
    assert result.logits.shape == (B, LABELS)
    ref = torch_run(hf, ids, attention_mask=mask, token_type_ids=types, labels=labels)
    pooled_real = np.array([mask[b, np.max(np.where(ids[b] != V - 1, np.arange(T), 0))] == 1 for b in range(B)])
    assert max_diff(result.logits.numpy()[pooled_real], ref.logits.numpy()[pooled_real]) <= ATOL
    if pooled_real.all():
        assert max_diff(result.loss, ref.loss) <= ATOL


def test_head_mask_equals_transformers_with_those_heads_scaled(models, inputs):
    """head_mask scales each head's attention output; transformers' PyTorch GPT-2 has no head_mask any
    more, so the reference is its model with those heads' rows of attn.c_proj scaled the same way."""
    import copy

    import torch

    hf, model = models["GPT2LMHeadModel"]
    rng, ids = inputs["rng"], inputs["input_ids"][:3]
    head_mask = rng.choice([0.0, 0.5, 1.0], (TESTER["n_layer"], TESTER["n_head"])).astype("float32")
    scaled = copy.deepcopy(hf)
    dim = TESTER["n_embd"] // TESTER["n_head"]
    with torch.no_grad():
        for layer, row in zip(scaled.transformer.h, head_mask):
            layer.attn.c_proj.weight.mul_(torch.tensor(np.repeat(row, dim))[:, None])  # Conv1D: (in, out)
    ref = torch_run(scaled, ids).logits
    assert max_diff(model(ids, head_mask=head_mask).logits, ref) <= ATOL
    one_for_all = model(ids, head_mask=head_mask[0]).logits  # (n_head,): the same mask in every layer
    assert max_diff(one_for_all, model(ids, head_mask=np.tile(head_mask[:1], (TESTER["n_layer"], 1))).logits) == 0


def test_resized_embeddings_load_in_transformers(models, tmp_path):
    import transformers

    hf, _ = models["GPT2LMHeadModel"]
    hf.save_pretrained(tmp_path / "src")
    model = TFGPT2LMHeadModel.from_pretrained(str(tmp_path / "src"))
    ids = np.array([[1, 5, 9, 97, 3]])
    before = model(ids).logits.numpy()
    layer = model.resize_token_embeddings(V + 6, pad_to_multiple_of=8)  # 105 -> 112
    assert layer is model.get_input_embeddings() and layer.input_dim == 112 == model.config.vocab_size
    after = model(np.array([[1, 5, 9, 97, 110]])).logits.numpy()
    assert after.shape[-1] == 112 and max_diff(after[0, :4, :V], before[0, :4]) <= 1e-5
    model.save_pretrained(tmp_path / "resized")
    reloaded = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "resized", attn_implementation="eager")
    assert max_diff(torch_run(reloaded, [[1, 5, 9, 97, 110]]).logits, after) <= ATOL
    model.resize_token_embeddings(V)  # shrinking keeps the first rows
    assert max_diff(model(ids).logits, before) <= 1e-5


def test_model_common_attributes(models):
    for name, (_, model) in models.items():
        assert isinstance(model.get_input_embeddings(), keras.layers.Layer)
        if name == "GPT2LMHeadModel":  # the tester's all_generative_model_classes
            assert isinstance(model.get_output_embeddings(), keras.layers.Layer)
        else:
            assert model.get_output_embeddings() is None
        assert model.get_bias() is None


def test_num_parameters_and_dummy_inputs(models):
    for name, (hf, model) in models.items():
        assert model.num_parameters() == hf.num_parameters()
        assert model.num_parameters(exclude_embeddings=True) == hf.num_parameters(exclude_embeddings=True)
        if name != "GPT2DoubleHeadsModel":
            model(model.dummy_inputs)


def test_config_common(tmp_path):
    """The ConfigTester checks: common properties, JSON and directory round trips, num_labels."""
    import transformers

    cfg = GPT2Config(n_embd=37, n_head=1)
    for name in ("vocab_size", "hidden_size", "num_attention_heads", "num_hidden_layers"):
        assert getattr(cfg, name) == getattr(transformers.GPT2Config(n_embd=37, n_head=1), name)
    assert GPT2Config.from_json(cfg.to_json(tmp_path / "c.json") and tmp_path / "c.json") == cfg
    transformers.GPT2Config.from_dict(cfg.to_dict()).save_pretrained(tmp_path / "hf")
    assert GPT2Config.from_pretrained(str(tmp_path / "hf")) == cfg
    cfg.num_labels = 5
    assert len(cfg.id2label) == 5 and len(cfg.label2id) == 5
    cfg.num_labels = 3
    assert len(cfg.id2label) == 3 and len(cfg.label2id) == 3
    cfg.id2label = {0: "neg", 1: "pos"}
    assert cfg.num_labels == 2 and cfg.label2id == {"neg": 0, "pos": 1}
    assert transformers.GPT2Config.from_dict(cfg.to_dict()).id2label == {0: "neg", 1: "pos"}


def test_use_cache_and_return_dict_from_config(models, inputs):
    _, model = models["GPT2LMHeadModel"]
    ids = inputs["input_ids"][:2]
    model.config.use_cache = False
    try:
        assert "past_key_values" not in model(ids)
        model.config.return_dict = False
        assert isinstance(model(ids), tuple) and len(model(ids)) == 1
    finally:
        model.config.use_cache, model.config.return_dict = True, True
    assert "past_key_values" in model(ids)
    graph = tf.function(lambda x, p: model(x, past_key_values=p, use_cache=True, output_hidden_states=True))
    out = model(ids, use_cache=True)
    step = graph(tf.constant(ids[:, :1]), out.past_key_values)
    assert max_diff(step.logits, model(ids[:, :1], past_key_values=out.past_key_values).logits) <= 1e-5
