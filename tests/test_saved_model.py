"""The SavedModel, loaded by TF's own loader in a fresh process that never imports tfgpt2."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from helpers import run_python
from tfgpt2 import TFGPT2LMHeadModel
from tfgpt2.export import saved_model

CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np, tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2
    m = tf.saved_model.load(sys.argv[1])
    inputs = np.load(sys.argv[2])
    ids, mask = tf.constant(inputs["ids"]), tf.constant(inputs["mask"])
    out = {}
    out["logits"] = m.signatures["serving_default"](input_ids=ids, attention_mask=mask)["logits"].numpy()
    def gen(t, k, p, seed, eos, name="generate", input_ids=ids):
        return m.signatures[name](input_ids=input_ids, attention_mask=mask, max_new_tokens=tf.constant(12),
            temperature=tf.constant(t), top_k=tf.constant(k), top_p=tf.constant(p),
            repetition_penalty=tf.constant(1.0), seed=tf.constant(seed, tf.int64), eos_token_id=tf.constant(eos))
    for name in ("generate", "generate_xla"):
        out[name + "_greedy"] = gen(0.0, 0, 1.0, 0, -1, name)["sequences"].numpy()
        out[name + "_sampled"] = gen(0.8, 5, 0.9, 7, -1, name)["sequences"].numpy()
        try:
            bad = np.array(inputs["ids"]); bad[0, 0] = 10 ** 6
            gen(0.0, 0, 1.0, 0, -1, name, tf.constant(bad))
            out[name + "_bad_ids_error"] = ""
        except tf.errors.InvalidArgumentError as e:
            out[name + "_bad_ids_error"] = " ".join(e.message.split())[:300]
    rows = m.signatures["generate"](input_ids=ids, attention_mask=mask, **{k: tf.constant(v) for k, v in
                                    json.loads(sys.argv[4]).items() if k != "seed"},
                                    seed=tf.constant(json.loads(sys.argv[4])["seed"], tf.int64))
    out["per_row"], out["per_row_lengths"] = rows["sequences"].numpy(), rows["num_generated"].numpy()
    try:  # two temperatures for three rows
        m.signatures["generate"](input_ids=ids, attention_mask=mask, max_new_tokens=tf.constant(4),
            temperature=tf.constant([0.0, 1.0]), top_k=tf.constant(0), top_p=tf.constant(1.0),
            repetition_penalty=tf.constant(1.0), seed=tf.constant(0, tf.int64), eos_token_id=tf.constant(-1))
        out["bad_rows_error"] = ""
    except tf.errors.InvalidArgumentError as e:
        out["bad_rows_error"] = " ".join(e.message.split())[:300]
    pre = m.signatures["prefill"](input_ids=ids, attention_mask=mask, max_new_tokens=tf.constant(3))
    out["prefill_logits"] = pre["logits"].numpy()
    token = tf.argmax(pre["logits"], -1, output_type=tf.int32)
    dec = m.signatures["decode"](token_ids=token, key_values=pre["key_values"], cache_mask=pre["cache_mask"],
                                 cache_index=pre["cache_index"])
    out["decode_logits"] = dec["logits"].numpy()
    try:
        bad = np.array(inputs["ids"]); bad[0, 0] = 10 ** 6
        m.signatures["serving_default"](input_ids=tf.constant(bad), attention_mask=mask)
        out["bad_ids_error"] = ""
    except tf.errors.InvalidArgumentError as e:
        out["bad_ids_error"] = " ".join(e.message.split())[:3000]
    warm = 0
    for record in tf.data.TFRecordDataset(sys.argv[1] + "/assets.extra/tf_serving_warmup_requests"):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        feeds = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        m.signatures[request.model_spec.signature_name](**feeds)
        warm += 1
    out["warmup_records"] = warm
    assert "tfgpt2" not in sys.modules
    np.savez(sys.argv[3], **{k: np.asarray(v) for k, v in out.items()})
""")


# The model server's loader: a TF1 session over the MetaGraph, signatures run by tensor name.
TF1_CHILD = textwrap.dedent("""
    import sys, threading, time
    import numpy as np, tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2
    tf1 = tf.compat.v1
    tf1.disable_eager_execution()
    inputs = np.load(sys.argv[2])
    ids, mask = inputs["ids"], inputs["mask"]
    sess = tf1.Session(graph=tf.Graph())
    meta = tf1.saved_model.loader.load(sess, ["serve"], sys.argv[1])
    def run(name, **feeds):
        sig = meta.signature_def[name]
        fetch = {k: v.name for k, v in sig.outputs.items()}
        return sess.run(fetch, {sig.inputs[k].name: v for k, v in feeds.items()})
    out = {"signatures": np.array(sorted(meta.signature_def))}
    out["logits"] = run("serving_default", input_ids=ids, attention_mask=mask)["logits"]
    def gen(t, k, p, seed, name="generate"):
        return run(name, input_ids=ids, attention_mask=mask, max_new_tokens=np.int32(12),
                   temperature=np.float32(t), top_k=np.int32(k), top_p=np.float32(p),
                   repetition_penalty=np.float32(1.0), seed=np.int64(seed), eos_token_id=np.int32(-1))
    for name in ("generate", "generate_xla"):
        out[name + "_greedy"] = gen(0.0, 0, 1.0, 0, name)["sequences"]
        out[name + "_sampled"] = gen(0.8, 5, 0.9, 7, name)["sequences"]
    pre = run("prefill", input_ids=ids, attention_mask=mask, max_new_tokens=np.int32(3))
    out["prefill_logits"] = pre["logits"]
    dec = run("decode", token_ids=np.argmax(pre["logits"], -1).astype(np.int32), key_values=pre["key_values"],
              cache_mask=pre["cache_mask"], cache_index=pre["cache_index"])
    out["decode_logits"] = dec["logits"]
    warm = 0
    for record in tf1.io.tf_record_iterator(sys.argv[1] + "/assets.extra/tf_serving_warmup_requests"):
        request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
        run(request.model_spec.signature_name, **{k: tf.make_ndarray(v) for k, v in request.inputs.items()})
        warm += 1
    out["warmup_records"] = warm
    results, errors = [], []
    def client(i):  # 8 threads on one session for a bounded time, alternating greedy and sampled requests
        end = time.time() + 2.0
        while time.time() < end:
            try:
                results.append(("generate_greedy", gen(0.0, 0, 1.0, 0)["sequences"]) if i % 2 else
                               ("generate_sampled", gen(0.8, 5, 0.9, 7)["sequences"]))
            except Exception as e:
                errors.append(repr(e))
    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    out["concurrent_calls"] = len(results)
    out["concurrent_mismatches"] = sum(not np.array_equal(r, out[kind]) for kind, r in results)
    out["concurrent_errors"] = np.array(errors[:3] or [""])
    assert "tfgpt2" not in sys.modules
    np.savez(sys.argv[3], **out)
""")


@pytest.fixture(scope="module")
def exported(hf_checkpoints, tmp_path_factory):
    _, path = hf_checkpoints["wide-gelu-inv_idx"]
    model = TFGPT2LMHeadModel.from_pretrained(path)
    root = tmp_path_factory.mktemp("sm")
    # what `tfgpt2 export` writes: traced from a stand-in, the checkpoint rewritten in shards (many here)
    saved_model.build_from_checkpoint(path, str(root / "saved_model" / "1"), group_bytes=64 << 10,
                                      max_new_tokens_cap=32)
    assert len([n for n in os.listdir(root / "saved_model" / "1" / "variables") if ".data-" in n]) > 3
    rng = np.random.default_rng(0)
    ids = rng.integers(1, model.config.vocab_size, (3, 6)).astype("int32")
    mask = np.ones_like(ids)
    mask[1, :2] = 0  # left padding
    np.savez(root / "in.npz", ids=ids, mask=mask)
    (root / "child.py").write_text(CHILD)
    (root / "tf1_child.py").write_text(TF1_CHILD)
    children = []  # both loaders at once: independent processes
    for child, result in (("child.py", "out.npz"), ("tf1_child.py", "tf1.npz")):
        argv = [str(root / "saved_model" / "1"), str(root / "in.npz"), str(root / result), json.dumps(PER_ROW)]
        code = f"import runpy, sys; sys.argv = ['child', *{argv!r}]; runpy.run_path({str(root / child)!r})"
        children.append(subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")))
    for proc in children:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    return model, ids, mask, dict(np.load(root / "out.npz")), dict(np.load(root / "tf1.npz"))


# one value per row, the form TF Serving's batcher merges: greedy, sampled, sampled with a stop id
PER_ROW = dict(max_new_tokens=[12, 5, 8], temperature=[0.0, 0.8, 1.0], top_k=[0, 5, 3], top_p=[1.0, 0.9, 1.0],
               repetition_penalty=[1.0, 1.0, 1.3], seed=[0, 7, 3], eos_token_id=[-1, -1, 11])


def _positions(mask):
    return np.maximum(np.cumsum(mask, 1) - 1, 0)  # the signatures count real tokens, as generate does


def test_serving_default_logits_match_keras(exported):
    model, ids, mask, out, _ = exported
    ref = model(ids, attention_mask=mask, position_ids=_positions(mask)).logits.numpy()
    real = mask.astype(bool)
    assert np.abs(out["logits"][real] - ref[real]).max() <= 1e-4


def test_generate_signatures_greedy_and_sampled_tokens_identical(exported):
    """generate (plain graph) and generate_xla (the int8-screened greedy head at this batch size) both."""
    model, ids, mask, out, _ = exported
    assert_generate_signatures_equal_model_generate(out, model, ids, mask)
    for name in ("generate", "generate_xla"):
        assert "input_ids must be <" in str(out[name + "_bad_ids_error"]), name


def assert_generate_signatures_equal_model_generate(out, model, ids, mask):
    """The greedy and sampled tokens of both generate signatures (a child's `out`) == model.generate's."""
    greedy = model.generate(ids, attention_mask=mask, max_new_tokens=12).numpy()[:, ids.shape[1]:]
    sampled = model.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=True, temperature=0.8,
                             top_k=5, top_p=0.9, seed=7).numpy()[:, ids.shape[1]:]
    for name in ("generate", "generate_xla"):
        assert out[name + "_greedy"].tolist() == greedy.tolist(), name
        assert out[name + "_sampled"].tolist() == sampled.tolist(), name


def test_generate_settings_per_row_equal_model_generate_row_by_row(exported):
    """Each row of a request with per-row settings (as merged by TF Serving's batcher) equals model.generate
    of that row alone with its own settings; its tokens stop at its own max_new_tokens or stop id."""
    model, ids, mask, out, _ = exported
    for b in range(len(ids)):
        kw = {k: v[b] for k, v in PER_ROW.items()}
        sampled = kw["temperature"] > 0
        ref = model.generate(ids[b:b + 1], attention_mask=mask[b:b + 1], max_new_tokens=kw["max_new_tokens"],
                             do_sample=sampled, temperature=kw["temperature"] if sampled else 1.0,
                             top_k=kw["top_k"], top_p=kw["top_p"], repetition_penalty=kw["repetition_penalty"],
                             seed=kw["seed"], eos_token_id=kw["eos_token_id"] if kw["eos_token_id"] >= 0 else [],
                             pad_token_id=max(kw["eos_token_id"], 0), jit_compile=False).numpy()[0, ids.shape[1]:]
        row = out["per_row"][b]
        assert row[:len(ref)].tolist() == ref.tolist(), b
        assert set(row[len(ref):].tolist()) <= {max(kw["eos_token_id"], 0)}, b
        assert int(out["per_row_lengths"][b]) <= kw["max_new_tokens"]
    assert "temperature must be a scalar or one value per row" in str(out["bad_rows_error"])


def test_prefill_decode_signatures_match_keras(exported):
    model, ids, mask, out, _ = exported
    full = model(ids, attention_mask=mask, position_ids=_positions(mask)).logits.numpy()
    assert np.abs(out["prefill_logits"] - full[:, -1]).max() <= 1e-4
    nxt = np.argmax(out["prefill_logits"], -1)[:, None].astype("int32")
    longer = np.concatenate([mask, np.ones_like(nxt)], 1)
    ref = model(np.concatenate([ids, nxt], 1), attention_mask=longer, position_ids=_positions(longer))
    assert np.abs(out["decode_logits"] - ref.logits.numpy()[:, -1]).max() <= 1e-4


def test_warmup_records_parse_and_run_and_bad_ids_fail(exported):
    _, _, _, out, _ = exported
    assert int(out["warmup_records"]) == 4
    assert "input_ids must be <" in str(out["bad_ids_error"])


def test_tf1_session_loader_runs_every_signature_like_keras(exported):
    """TF Serving's loader (tf.compat.v1 loader.load + signature_def by tensor name) gives the numbers the
    TF2 loader gives, which the tests above check against Keras; its warm-up replay and 8 concurrent
    clients too."""
    _, _, _, out, tf1 = exported
    assert set(tf1["signatures"]) - {"__saved_model_init_op"} == {"serving_default", "generate", "generate_xla",
                                                                 "prefill", "decode"}
    for key in ("logits", "prefill_logits", "decode_logits"):
        assert np.abs(tf1[key] - out[key]).max() <= 1e-5, key
    for key in ("generate_greedy", "generate_sampled", "generate_xla_greedy", "generate_xla_sampled"):
        assert tf1[key].tolist() == out[key].tolist(), key
    assert int(tf1["warmup_records"]) == int(out["warmup_records"]) == 4
    print(f"8 clients, 2 s: {int(tf1['concurrent_calls'])} generate calls")
    assert int(tf1["concurrent_calls"]) >= 8 and int(tf1["concurrent_mismatches"]) == 0
    assert tf1["concurrent_errors"].tolist() == [""]


TEXT_CHILD = textwrap.dedent("""
    import json, sys
    import tensorflow as tf, tensorflow_text  # registers RegexSplitWithOffsets; nothing from tfgpt2
    m = tf.saved_model.load(sys.argv[1])
    out = m.signatures["generate_text"](text=tf.constant(json.loads(sys.argv[2])), max_new_tokens=tf.constant(10),
                                        temperature=tf.constant(0.0), top_k=tf.constant(0), top_p=tf.constant(1.0),
                                        seed=tf.constant(0, tf.int64))
    assert "tfgpt2" not in sys.modules
    print(json.dumps([t.decode("utf-8", "replace") for t in out["text"].numpy().tolist()]))
""")


@pytest.mark.slow
def test_text_signature_in_a_fresh_process_equals_python_tokenizer_and_generate(tmp_path):
    """saved_model_text/1: text in -> greedy continuation out, == GPT2Tokenizer + generate per prompt."""
    from helpers import reference_model
    from tfgpt2 import GPT2Tokenizer
    from tfgpt2.export import text_serving

    model, _, _ = reference_model()
    path = tmp_path / "saved_model_text" / "1"
    text_serving.build(model, str(path), max_new_tokens_cap=16)
    prompts = ["The for statement", "A class definition defines", "x"]
    got = json.loads(run_python(TEXT_CHILD.replace("sys.argv[1]", repr(str(path)))
                                .replace("sys.argv[2]", repr(json.dumps(prompts)))).strip().splitlines()[-1])
    tok = GPT2Tokenizer()
    for prompt, text in zip(prompts, got):
        ids = np.array([tok.encode(prompt)], np.int32)
        new = model.generate(ids, max_new_tokens=10, eos_token_id=tok.eos_token_id).numpy()[0, ids.shape[1]:]
        expected = tok.decode([t for t in new.tolist() if t != tok.eos_token_id])
        assert text == expected, (prompt, text, expected)
    print("generate_text:", got)


@pytest.mark.slow
def test_quantized_recipe_is_served_by_the_tf1_loader(hf_checkpoints, tmp_path):
    """`--quantize saved_model:int4`: saved_model_int4/1 beside the fp32 one, what TF Serving's loader runs
    equals the model.quantize("int4")d Keras model (logits, greedy and sampled tokens), fidelity reported."""
    from tfgpt2.export import pipeline, verify

    _, path = hf_checkpoints["small-gelu_new"]
    model = TFGPT2LMHeadModel.from_pretrained(path)
    held_out = np.random.default_rng(1).integers(0, model.config.vocab_size, (2, 12)).astype("int32")
    report = pipeline.export(path, str(tmp_path / "e"), formats=["saved_model"], quantize=["saved_model:int4"],
                             held_out=held_out, log=lambda *_: None)
    contract = json.loads((tmp_path / "e" / "model.json").read_text())
    assert {k: v["recipe"] for k, v in contract["saved_model"].items()} == {"saved_model": "fp32",
                                                                             "saved_model_int4": "int4"}
    assert contract["saved_model"]["saved_model_int4"]["signatures"] == sorted(saved_model.SIGNATURES)
    assert 0.5 < report["files"]["saved_model_int4"]["fidelity"]["top1_agreement"] <= 1.0
    verify.verify_dir(str(tmp_path / "e"), log=lambda *_: None)
    model.quantize("int4")
    ids = np.random.default_rng(0).integers(1, model.config.vocab_size, (3, 6)).astype("int32")
    mask = np.ones_like(ids)
    mask[1, :2] = 0
    np.savez(tmp_path / "in.npz", ids=ids, mask=mask)
    argv = [str(tmp_path / "e" / "saved_model_int4" / "1"), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")]
    run_python(f"import sys; sys.argv = ['child', *{argv!r}]\n" + TF1_CHILD)
    out = dict(np.load(tmp_path / "out.npz"))
    ref = model(ids, attention_mask=mask, position_ids=_positions(mask)).logits.numpy()
    assert np.abs(out["logits"][mask.astype(bool)] - ref[mask.astype(bool)]).max() <= 1e-4
    assert_generate_signatures_equal_model_generate(out, model, ids, mask)
    assert out["concurrent_errors"].tolist() == [""] and out["concurrent_mismatches"] == 0
