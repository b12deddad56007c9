"""Every HF call form: each combination of tensor inputs x output flags, for all four classes, agrees
with the plain call where the values must agree; the same forms under tf.function, predict and fit."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from helpers import max_diff
from tfgpt2 import (
    GPT2Config,
    GPT2InputError,
    KVCache,
    TFGPT2DoubleHeadsModel,
    TFGPT2ForSequenceClassification,
    TFGPT2LMHeadModel,
    TFGPT2Model,
)

CFG = dict(vocab_size=50, n_positions=32, n_embd=16, n_layer=2, n_head=2)
TENSORS = ("past_key_values", "position_ids", "token_type_ids", "attention_mask", "inputs_embeds")
FLAGS = ("use_cache", "output_attentions", "output_hidden_states", "return_dict")
CLASSES = [TFGPT2Model, TFGPT2LMHeadModel, TFGPT2DoubleHeadsModel, TFGPT2ForSequenceClassification]
PREFIX, NEW = 4, 2
MAIN = {"TFGPT2Model": ("last_hidden_state",), "TFGPT2LMHeadModel": ("logits",),
        "TFGPT2DoubleHeadsModel": ("logits", "mc_logits"), "TFGPT2ForSequenceClassification": ("logits",)}


# the base and LM head models by default; the two heads on top of them run with --slow (time budget)
@pytest.fixture(scope="module", params=[c if c in (TFGPT2Model, TFGPT2LMHeadModel) else
                                        pytest.param(c, marks=pytest.mark.slow) for c in CLASSES],
                ids=lambda c: c.__name__)
def case(request):
    cls = request.param
    model = cls(GPT2Config(**CFG, pad_token_id=None))
    rng = np.random.default_rng(0)
    shape = (2, 2, PREFIX + NEW) if cls is TFGPT2DoubleHeadsModel else (2, PREFIX + NEW)
    ids = rng.integers(0, CFG["vocab_size"], shape).astype("int32")
    mask = np.ones_like(ids)
    mask[0, ..., :1] = 0  # a left-padded row
    data = dict(input_ids=ids, attention_mask=mask, token_type_ids=rng.integers(0, 5, shape).astype("int32"),
                position_ids=np.broadcast_to(np.arange(shape[-1]), shape).astype("int32"),
                inputs_embeds=model.get_input_embeddings()(ids).numpy())
    plain = {}
    for given in itertools.product((False, True), repeat=2):  # the reference: mask and token types only
        extra = {k: data[k] for k, on in zip(("attention_mask", "token_type_ids"), given) if on}
        out = model(ids, use_cache=False, **extra)
        plain[given] = {k: out[k].numpy() for k in MAIN[cls.__name__]}
    return model, data, plain


def _new_part(name, value):
    if name == "attention_mask":
        return value  # covers past + new
    return value[..., PREFIX:, :] if name == "inputs_embeds" else value[..., PREFIX:]


def _call(model, data, tensors, flags):
    kwargs = {k: data[k] for k in tensors if k != "past_key_values"}
    if "inputs_embeds" not in tensors:
        kwargs["input_ids"] = data["input_ids"]
    if "past_key_values" in tensors:
        first = {k: (v[..., :PREFIX, :] if k == "inputs_embeds" else v[..., :PREFIX]) for k, v in kwargs.items()}
        kwargs = {k: _new_part(k, v) for k, v in kwargs.items()}
        kwargs["past_key_values"] = model(**first, use_cache=True).past_key_values
    return model(**kwargs, **flags)


def _check(model, data, plain, tensors, flags):
    name = type(model).__name__
    out = _call(model, data, tensors, flags)
    past = "past_key_values" in tensors
    new_len = NEW if past else PREFIX + NEW
    if not flags["return_dict"]:
        assert isinstance(out, tuple)
        values = list(out)
        named = dict(zip(MAIN[name], values[:len(MAIN[name])]))
        rest = values[len(MAIN[name]):]
    else:
        named = {k: out[k] for k in MAIN[name]}
        rest = [out[k] for k in ("past_key_values", "hidden_states", "attentions") if k in out]
        assert list(out.keys())[:len(MAIN[name])] == list(MAIN[name])
        assert ("past_key_values" in out) == flags["use_cache"]
        assert ("attentions" in out) == flags["output_attentions"]
        assert ("hidden_states" in out) == flags["output_hidden_states"]
        assert out.to_tuple() == tuple(out.values()) and len(out) == len(MAIN[name]) + len(rest)
    assert len(rest) == sum(flags[f] for f in FLAGS[:3])
    ref = plain["attention_mask" in tensors, "token_type_ids" in tensors]
    for key, value in named.items():
        want = ref[key]
        if key in ("logits", "last_hidden_state") and name != "TFGPT2ForSequenceClassification":
            want = want[..., -new_len:, :]
        assert max_diff(value, want) <= 1e-5, (key, tensors, flags)
    if flags["use_cache"]:
        cache = rest[0]
        assert isinstance(cache, KVCache) and int(cache.index) == PREFIX + NEW
    if flags["output_hidden_states"]:
        states = rest[int(flags["use_cache"])]
        assert len(states) == CFG["n_layer"] + 1
        if name == "TFGPT2Model":
            assert max_diff(states[-1], named["last_hidden_state"]) == 0.0
    if flags["output_attentions"]:
        attentions = rest[-1]
        assert len(attentions) == CFG["n_layer"] and attentions[0].shape[1:3] == (CFG["n_head"], new_len)


SUBSETS = [c for n in range(6) for c in itertools.combinations(TENSORS, n)]


def test_every_input_combination_with_all_flags_on_or_off(case):
    """The default run: each input subset once, flags all on or all off in turn (--slow: every flag mix)."""
    model, data, plain = case
    for n, tensors in enumerate(SUBSETS):
        _check(model, data, plain, tensors, dict.fromkeys(FLAGS, n % 2 == 0))


@pytest.mark.slow
@pytest.mark.parametrize("tensors", SUBSETS, ids=lambda c: "+".join(c) or "ids")
def test_every_input_and_flag_combination(case, tensors):
    model, data, plain = case
    for values in itertools.product((False, True), repeat=len(FLAGS)):
        _check(model, data, plain, tensors, dict(zip(FLAGS, values)))


def test_positional_list_and_dict_forms(case):
    model, data, _ = case
    ref = model(data["input_ids"], attention_mask=data["attention_mask"], token_type_ids=data["token_type_ids"])
    key = MAIN[type(model).__name__][0]
    as_list = model([data["input_ids"], None, data["attention_mask"], data["token_type_ids"]])
    as_dict = model({"input_ids": tf.constant(data["input_ids"]), "attention_mask": data["attention_mask"],
                     "token_type_ids": data["token_type_ids"]}, use_cache=False)
    positional = model(data["input_ids"], None, data["attention_mask"], data["token_type_ids"])
    for out in (as_list, as_dict, positional):
        assert max_diff(out[key], ref[key]) == 0.0
    assert max_diff(model(data["input_ids"].tolist())[key], model(data["input_ids"])[key]) == 0.0
    with pytest.raises(GPT2InputError, match="unknown argument.*it takes input_ids, past_key_values"):
        model(data["input_ids"], encoder_hidden_states=data["inputs_embeds"])


def test_call_forms_under_tf_function(case):
    model, data, _ = case
    key = MAIN[type(model).__name__][0]
    prefix = {k: data[k][..., :PREFIX] for k in ("input_ids", "token_type_ids")}
    past = model(**prefix, use_cache=True).past_key_values

    @tf.function
    def step(ids, types, mask, positions, past):
        return model(ids, past_key_values=past, token_type_ids=types, attention_mask=mask, position_ids=positions,
                     use_cache=True, output_hidden_states=True, output_attentions=True)

    args = (data["input_ids"][..., PREFIX:], data["token_type_ids"][..., PREFIX:], data["attention_mask"],
            data["position_ids"][..., PREFIX:])
    eager = model(args[0], past_key_values=past, token_type_ids=args[1], attention_mask=args[2],
                  position_ids=args[3])
    graph = step(*(tf.constant(a) for a in args), past)
    assert max_diff(graph[key], eager[key]) <= 1e-5
    assert int(graph["past_key_values"].index) == PREFIX + NEW


def test_predict_and_fit_with_hf_inputs(case):
    model, data, _ = case
    name = type(model).__name__
    x = {k: data[k] for k in ("input_ids", "attention_mask", "token_type_ids", "position_ids")}
    predicted = model.predict(x, batch_size=2, verbose=0)
    assert "past_key_values" not in predicted
    key = MAIN[name][0]
    assert max_diff(predicted[key], model(**x, use_cache=False)[key]) <= 1e-5
    # fit on these inputs: test_fit_with_hf_inputs (--slow)


def _fit(model, x):
    model.compile(optimizer="adam")
    history = model.fit(x, batch_size=2, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.slow
@pytest.mark.parametrize("cls", [TFGPT2LMHeadModel, TFGPT2DoubleHeadsModel, TFGPT2ForSequenceClassification],
                         ids=lambda c: c.__name__)
def test_fit_with_hf_inputs(cls):
    model = cls(GPT2Config(**CFG))
    shape = (2, 2, 6) if cls is TFGPT2DoubleHeadsModel else (2, 6)
    rng = np.random.default_rng(1)
    x = dict(input_ids=rng.integers(0, CFG["vocab_size"], shape), attention_mask=np.ones(shape, "int32"),
             token_type_ids=rng.integers(0, 5, shape), position_ids=np.broadcast_to(np.arange(6), shape))
    if cls is not TFGPT2LMHeadModel:
        x["mc_labels" if cls is TFGPT2DoubleHeadsModel else "labels"] = np.array([0, 1])
    _fit(model, x)
