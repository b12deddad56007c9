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
        kv = entry["signatures"]["decode"]["inputs"]["key_values"]
        cfg = contract["config"]
        head_dim = cfg["n_embd"] // cfg["n_head"]
        assert kv == {"dtype": "float32", "shape": [cfg["n_layer"], 2, 1, cfg["n_head"], 24, head_dim]}
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


def test_failure_mid_way_leaves_no_partial_dir(hf_checkpoints, tmp_path, monkeypatch):
    _, path = hf_checkpoints["small-gelu_new"]
    from tfgpt2.export import tflite

    def boom(*args, **kwargs):
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(tflite, "convert", boom)
    with pytest.raises(RuntimeError):
        pipeline.export(path, str(tmp_path / "out"), max_seq_len=24, prefill_len=8, log=lambda *_: None)
    assert os.listdir(tmp_path) == []


def test_cli_export(hf_checkpoints, tmp_path):
    _, path = hf_checkpoints["small-gelu_new"]
    from test_cli import run_cli

    run = lambda *a: run_cli("export", *a)  # noqa: E731
    ok = run("--model", path, "--out", str(tmp_path / "e"), "--quantize", "fp16", "--max-seq-len", "16",
             "--prefill-len", "4")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "[1/3] SavedModel" in ok.stdout and os.path.exists(tmp_path / "e" / "gpt2_fp16.tflite")
    bad = run("--model", path, "--out", str(tmp_path / "e"))
    assert bad.returncode == 2 and "--overwrite" in bad.stderr


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
