"""`tfgpt2 export`: layout, model.json against the LiteRT interpreter, atomic writes, bad targets."""

import json
import os

import numpy as np
import pytest

from tfgpt2 import TFGPT2LMHeadModel
from tfgpt2.export import pipeline, verify


@pytest.fixture(scope="module")
def exported(hf_checkpoints, tmp_path_factory):
    _, path = hf_checkpoints["small-gelu_new"]
    out = tmp_path_factory.mktemp("exp") / "gpt2-export"
    model = TFGPT2LMHeadModel.from_pretrained(path)
    held_out = np.random.default_rng(0).integers(0, model.config.vocab_size, (2, 16))
    report = pipeline.export(path, str(out), quantize=["fp32", "int8"], max_seq_len=24, prefill_len=8,
                             held_out=held_out, log=lambda *_: None)
    return model, out, report


def test_layout_and_contract(exported):
    _, out, report = exported
    names = sorted(os.listdir(out))
    assert names == ["gpt2_fp32.tflite", "gpt2_int8.tflite", "model.json", "report.json", "report.md",
                     "saved_model", "tokenizer"]
    assert os.path.exists(out / "saved_model" / "1" / "saved_model.pb")
    assert os.path.exists(out / "saved_model" / "1" / "assets.extra" / "tf_serving_warmup_requests")
    contract = json.loads((out / "model.json").read_text())
    assert contract["max_seq_len"] == 24 and contract["prefill_len"] == 8
    for rel in contract["tokenizer"]["files"]:
        assert os.path.exists(out / rel)
    for rel, digest in contract["sha256"].items():
        assert pipeline.sha256(str(out / rel)) == digest
    assert len(contract["sha256"]) >= 5


def test_every_tflite_matches_model_json_as_the_app_reads_it(exported):
    _, out, _ = exported
    contract = json.loads((out / "model.json").read_text())
    for name, entry in contract["models"].items():
        live = verify.signature_contract(str(out / name))
        assert live == entry["signatures"]
        cfg = contract["config"]
        head_dim = cfg["n_embd"] // cfg["n_head"]
        decode = entry["signatures"]["decode"]
        for i in range(cfg["n_layer"]):
            assert decode["inputs"][f"k_{i}"] == {"dtype": "float32", "shape": [1, cfg["n_head"], 24, head_dim]}
            assert decode["inputs"][f"vt_{i}"] == {"dtype": "float32", "shape": [1, cfg["n_head"], head_dim, 24]}
        assert decode["outputs"]["new_k"] == {"dtype": "float32", "shape": [cfg["n_layer"], cfg["n_head"], head_dim]}
        assert entry["signatures"]["prefill"]["inputs"]["input_ids"] == {"dtype": "int32", "shape": [1, 8]}


def test_report_numbers(exported):
    _, out, report = exported
    fp32 = report["files"]["gpt2_fp32.tflite"]["fidelity"]
    assert fp32["max_abs_logit_diff"] <= 1e-4 and fp32["top1_agreement"] == 1.0
    assert report["files"]["gpt2_int8.tflite"]["bytes"] < report["files"]["gpt2_fp32.tflite"]["bytes"]
    assert "| gpt2_int8.tflite |" in (out / "report.md").read_text()


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(quantize=["int3"]), ValueError, "unknown quantization"),
    (dict(max_seq_len=4096), ValueError, "n_positions"),
    (dict(out_exists=True), FileExistsError, "--overwrite"),
    (dict(out="/proc/forbidden/x"), PermissionError, "writable"),
])
def test_bad_targets_leave_nothing(hf_checkpoints, tmp_path, kwargs, error, match):
    _, path = hf_checkpoints["small-gelu_new"]
    out = kwargs.pop("out", str(tmp_path / "x"))
    if kwargs.pop("out_exists", False):
        os.makedirs(out)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(error, match=match):
        pipeline.export(path, out, **{"max_seq_len": 24, "prefill_len": 8, **kwargs}, log=lambda *_: None)
    assert sorted(os.listdir(tmp_path)) == before


def test_failure_in_the_conversion_child_leaves_no_partial_dir(hf_checkpoints, tmp_path):
    import shutil

    _, path = hf_checkpoints["small-gelu_new"]
    broken = tmp_path / "src"
    shutil.copytree(path, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # config reads fine; the child fails to load weights
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="`archive .*` failed in its child process"):
        pipeline.export(str(broken), str(out), quantize=["int8"], max_seq_len=24, prefill_len=8, log=lambda *_: None)
    assert sorted(os.listdir(tmp_path)) == ["src"]


def test_failure_after_conversion_leaves_no_partial_dir(hf_checkpoints, tmp_path, monkeypatch):
    _, path = hf_checkpoints["small-gelu_new"]
    from tfgpt2.export import saved_model

    def boom(*args, **kwargs):
        raise RuntimeError("SavedModel writer crashed")

    monkeypatch.setattr(saved_model, "build", boom)
    with pytest.raises(RuntimeError, match="crashed"):
        pipeline.export(path, str(tmp_path / "out"), max_seq_len=24, prefill_len=8, log=lambda *_: None)
    assert os.listdir(tmp_path) == []


def test_cli_export(hf_checkpoints, tmp_path):
    _, path = hf_checkpoints["small-gelu_new"]
    from test_cli import run_cli

    run = lambda *a: run_cli("export", *a)  # noqa: E731
    ok = run("--model", path, "--out", str(tmp_path / "e"), "--quantize", "fp16", "--max-seq-len", "16",
             "--prefill-len", "4")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "[2/3] SavedModel" in ok.stdout and os.path.exists(tmp_path / "e" / "gpt2_fp16.tflite")
    bad = run("--model", path, "--out", str(tmp_path / "e"))
    assert bad.returncode == 2 and "--overwrite" in bad.stderr


def test_cli_export_android_fills_the_app_assets(hf_checkpoints, tmp_path):
    """`--android ASSETS`: int8 by default; the app reads only model.json and the files it names."""
    _, path = hf_checkpoints["small-gelu_new"]
    from test_cli import run_cli

    assets = tmp_path / "app" / "src" / "main" / "assets"
    os.makedirs(assets)
    ok = run_cli("export", "--model", path, "--android", str(assets), "--max-seq-len", "16", "--prefill-len", "4")
    assert ok.returncode == 0, ok.stderr[-2000:]
    contract = json.loads((assets / "model.json").read_text())
    assert list(contract["models"]) == ["gpt2_int8.tflite"]
    assert sorted(os.listdir(assets)) == ["gpt2_int8.tflite", "model.json", "tokenizer"]
    for rel in [*contract["tokenizer"]["files"], *contract["models"]]:
        assert pipeline.sha256(str(assets / rel)) == contract["sha256"][rel]
    for name, entry in contract["models"].items():  # the runner's view of the copied file == model.json
        assert verify.signature_contract(str(assets / name)) == entry["signatures"]
    bad = run_cli("export", "--model", path, "--android", str(tmp_path / "missing" / "assets"))
    assert bad.returncode == 2 and "android_demo/app/src/main/assets" in bad.stderr
    neither = run_cli("export", "--model", path)
    assert neither.returncode == 2 and "--android" in neither.stderr


def test_cli_verify_passes_then_catches_tampering(exported, tmp_path):
    import shutil

    from test_cli import run_cli

    _, out, _ = exported
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    ok = run_cli("verify", str(copy))
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "signatures match model.json" in ok.stdout and "ok (" in ok.stdout
    with open(copy / "gpt2_int8.tflite", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    bad = run_cli("verify", str(copy))
    assert bad.returncode == 2 and "gpt2_int8.tflite changed since export" in bad.stderr


GOLDEN = os.path.join(os.path.dirname(__file__), "golden")


def test_write_liteRT_replay_for_kotlin(tmp_path):
    """tests/golden/replay_<recipe>.json: LiteRT greedy tokens and every logits row they came from.

    The Kotlin Generator replays these logits through a CausalLm fake and must pick the same tokens
    and stop when the cache is full, at the same step; model.json is copied for the contract test.
    Large random weights (initializer_range 0.5) so greedy text doesn't collapse into one repeated id.
    """
    import shutil

    from conftest import CONFIGS, build_hf

    hf = build_hf("GPT2LMHeadModel", CONFIGS["small-gelu_new"], seed=3, initializer_range=0.5)
    hf.save_pretrained(tmp_path / "hf")
    out = tmp_path / "export"
    model = TFGPT2LMHeadModel.from_pretrained(str(tmp_path / "hf"))
    pipeline.export(model, str(out), quantize=["fp32", "int8"], max_seq_len=24, prefill_len=8, log=lambda *_: None)
    contract = json.loads((out / "model.json").read_text())
    prompt = [5, 17, 42, 8, 63]
    P, S = contract["prefill_len"], contract["max_seq_len"]
    for name, entry in contract["models"].items():
        session = verify.lite_session(str(out / name))
        rows, tokens = [session.prefill(prompt)], []
        while True:
            tokens.append(int(np.argmax(rows[-1])))
            if session.capacity_left == 0:  # every slot written: the app must stop here
                break
            rows.append(session.decode(tokens[-1]))
        assert len(tokens) == S - P + 1 and len(set(tokens)) >= 4, tokens
        if entry["recipe"] == "fp32":  # the recording itself is checked against Keras
            keras_tokens = model.generate(np.array([prompt], np.int32), max_new_tokens=len(tokens),
                                          eos_token_id=None).numpy()[0, len(prompt):]
            assert keras_tokens.tolist() == tokens
        record = {"model": name, "recipe": entry["recipe"], "prompt": prompt, "tokens": tokens,
                  "capacity_after_prefill": S - P,
                  "logits": [[float(x) for x in row] for row in np.asarray(rows, np.float32)]}
        with open(os.path.join(GOLDEN, f"replay_{entry['recipe']}.json"), "w", encoding="ascii") as f:
            json.dump(record, f)
    shutil.copy(out / "model.json", os.path.join(GOLDEN, "model.json"))


def test_exporting_process_loads_no_tensorflow_before_converting(hf_checkpoints, tmp_path):
    """The converter children run while the exporting process holds no TF runtime and no model:
    checking the targets and the children's work must not import tensorflow in the parent."""
    from conftest import run_python

    _, path = hf_checkpoints["small-gelu_new"]
    out = run_python(None, f"""
import sys
from tfgpt2.export import pipeline, worker
pipeline.check_targets(pipeline.source_config({path!r}), {str(tmp_path / 'x')!r}, ["fp32", "int8"], False, 24, 8)
worker.run_child("archive", {path!r}, {str(tmp_path / 'a')!r}, 24, 8, "float")
r = worker.run_child("convert", {str(tmp_path / 'a')!r}, "int8", {str(tmp_path / 'm.tflite')!r})
print("tensorflow" in sys.modules, r["bytes"] > 0, r["peak_rss_gb"] > 0)
""", cwd=str(tmp_path))
    assert out.split()[-3:] == ["False", "True", "True"], out


def test_conversion_children_import_the_installed_package_from_any_cwd(hf_checkpoints, tmp_path, monkeypatch):
    """A checkout's tfgpt2/ (no export/ inside) in the cwd must not shadow the installed package."""
    from tfgpt2.export import worker

    import shutil

    _, path = hf_checkpoints["small-gelu_new"]
    shutil.copytree(path, tmp_path / "ckpt")
    (tmp_path / "tfgpt2").mkdir()
    (tmp_path / "tfgpt2" / "__init__.py").write_text("")
    monkeypatch.chdir(tmp_path)
    assert worker.run_child("archive", "ckpt", str(tmp_path / "a"), 24, 8, "float")["peak_rss_gb"] > 0  # relative SRC
    assert (tmp_path / "a" / "float" / "saved_model.pb").exists()
