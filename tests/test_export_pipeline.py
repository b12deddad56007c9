"""`tfgpt2 export`: layout, model.json against the LiteRT interpreter, atomic writes, bad targets."""

import json
import os

import pytest

from helpers import GOLDEN, cli
from tfgpt2.export import contract, pipeline, verify


@pytest.fixture(scope="module")
def exported(tiny_export):
    return tiny_export


def test_layout_and_contract(exported):
    _, out, report = exported
    names = sorted(os.listdir(out))
    assert names == ["gpt2_fp32.tflite", "gpt2_int8.litertlm", "gpt2_int8.tflite", "model.json", "report.json",
                     "report.md", "tokenizer"]
    written = json.loads((out / "model.json").read_text())
    assert written["max_seq_len"] == 24 and written["prefill_len"] == 8
    for rel in written["tokenizer"]["files"]:
        assert os.path.exists(out / rel)
    for rel, digest in written["sha256"].items():
        assert contract.sha256(str(out / rel)) == digest
    assert len(written["sha256"]) >= 5


def test_every_tflite_matches_model_json_as_the_app_reads_it(exported):
    _, out, _ = exported
    written = json.loads((out / "model.json").read_text())
    for name, entry in written["models"].items():
        live = verify.signature_contract(str(out / name))
        assert live == entry["signatures"]
        cfg = written["config"]
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
    (dict(out_exists=True, not_an_export=True, overwrite=True), FileExistsError, "not a tfgpt2 export"),
    (dict(out="/proc/forbidden/x"), PermissionError, "writable"),
])
def test_bad_targets_leave_nothing(hf_checkpoints, tmp_path, kwargs, error, match):
    _, path = hf_checkpoints["small-gelu_new"]
    out = kwargs.pop("out", str(tmp_path / "x"))
    if kwargs.pop("out_exists", False):
        os.makedirs(out)
    if kwargs.pop("not_an_export", False):  # --overwrite must never delete a directory that isn't an export
        open(os.path.join(out, "thesis.tex"), "w").write("years of work")
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(error, match=match):
        pipeline.export(path, out, **{"max_seq_len": 24, "prefill_len": 8, **kwargs}, log=lambda *_: None)
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.slow
def test_saved_model_only_export_verifies(hf_checkpoints, tmp_path, capsys):
    """`--formats saved_model`: no .tflite, no conversion child; model.json and verify still cover it."""
    _, path = hf_checkpoints["small-gelu_new"]
    code, _, err = cli(capsys, "export", "--model", path, "--out", tmp_path / "e", "--formats", "saved_model")
    assert code == 0, err[-2000:]
    assert sorted(os.listdir(tmp_path / "e")) == ["model.json", "report.json", "report.md", "saved_model", "tokenizer"]
    assert json.loads((tmp_path / "e" / "model.json").read_text())["models"] == {}
    code, out, err = cli(capsys, "verify", tmp_path / "e")
    assert code == 0 and "serving_default ran" in out, err[-2000:]


def _export_dir(path, text):
    os.makedirs(path)
    open(os.path.join(path, "model.json"), "w").write(text)


def _dead_pid():
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_overwrite_puts_the_previous_export_back_when_the_rename_fails(tmp_path, monkeypatch):
    out, new = str(tmp_path / "e"), str(tmp_path / f"{pipeline.STAGING}{os.getpid()}-abc")
    _export_dir(out, "previous")
    _export_dir(new, "new")
    rename = os.rename

    def failing(src, dst):
        if src == new:
            raise OSError(18, "Invalid cross-device link")
        return rename(src, dst)

    monkeypatch.setattr(os, "rename", failing)
    with pytest.raises(OSError, match="cross-device"):
        pipeline.replace(new, out)
    assert open(os.path.join(out, "model.json")).read() == "previous"
    assert sorted(os.listdir(tmp_path)) == sorted(["e", os.path.basename(new)])  # the caller removes `new`
    monkeypatch.setattr(os, "rename", rename)
    pipeline.replace(new, out)
    assert open(os.path.join(out, "model.json")).read() == "new" and os.listdir(tmp_path) == ["e"]


def test_next_export_cleans_up_after_a_killed_one(tmp_path):
    """Killed between the two renames: the previous export comes back; staging of dead processes goes,
    a running export's staging stays."""
    dead, out = _dead_pid(), str(tmp_path / "e")
    _export_dir(str(tmp_path / f"{pipeline.STAGING}{dead}-previous-e"), "previous")
    os.makedirs(tmp_path / f"{pipeline.STAGING}{dead}-x1y2z3" / ".scratch")
    running = f"{pipeline.STAGING}{os.getpid()}-q9w8e7"
    os.makedirs(tmp_path / running)
    pipeline.recover(out)
    assert open(os.path.join(out, "model.json")).read() == "previous"
    assert sorted(os.listdir(tmp_path)) == sorted(["e", running])
    _export_dir(str(tmp_path / f"{pipeline.STAGING}{dead}-previous-e"), "stale")  # killed after the new one landed
    pipeline.recover(out)
    assert open(os.path.join(out, "model.json")).read() == "previous"
    assert sorted(os.listdir(tmp_path)) == sorted(["e", running])


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


@pytest.mark.slow
def test_failure_after_conversion_leaves_no_partial_dir(hf_checkpoints, tmp_path, monkeypatch):
    _, path = hf_checkpoints["small-gelu_new"]

    def boom(*args, **kwargs):
        raise RuntimeError("model.json writer crashed")

    monkeypatch.setattr(pipeline.contract, "write", boom)  # after every child (conversions, SavedModel) is done
    with pytest.raises(RuntimeError, match="crashed"):
        pipeline.export(path, str(tmp_path / "out"), quantize=["fp32"], max_seq_len=24, prefill_len=8,
                        log=lambda *_: None)
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_cli_export(hf_checkpoints, tmp_path, capsys):
    _, path = hf_checkpoints["small-gelu_new"]
    code, out, err = cli(capsys, "export", "--model", path, "--out", tmp_path / "e", "--quantize", "fp16",
                         "--max-seq-len", "16", "--prefill-len", "4")
    assert code == 0, err[-2000:]
    assert "[2/3] SavedModel" in out and os.path.exists(tmp_path / "e" / "gpt2_fp16.tflite")
    code, _, err = cli(capsys, "export", "--model", path, "--out", tmp_path / "e")
    assert code == 2 and "--overwrite" in err


@pytest.mark.slow
def test_cli_export_android_fills_the_app_assets(hf_checkpoints, tmp_path, capsys):
    """`--android ASSETS`: the int8 .litertlm by default; the app reads only model.json and the file it names."""
    _, path = hf_checkpoints["small-gelu_new"]
    assets = tmp_path / "app" / "src" / "main" / "assets"
    os.makedirs(assets)
    code, _, err = cli(capsys, "export", "--model", path, "--android", assets, "--max-seq-len", "16",
                       "--prefill-len", "4")
    assert code == 0, err[-2000:]
    written = json.loads((assets / "model.json").read_text())
    assert list(written["litertlm"]) == ["gpt2_int8.litertlm"]
    assert sorted(os.listdir(assets)) == ["gpt2_int8.litertlm", "model.json"]
    assert contract.sha256(str(assets / "gpt2_int8.litertlm")) == written["sha256"]["gpt2_int8.litertlm"]
    code, _, err = cli(capsys, "export", "--model", path, "--android", tmp_path / "missing" / "assets")
    assert code == 2 and "android_demo/app/src/main/assets" in err
    code, _, err = cli(capsys, "export", "--model", path)
    assert code == 2 and "--android" in err


def test_cli_verify_passes_then_catches_tampering(exported, tmp_path, capsys):
    import shutil

    _, out, _ = exported
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    code, stdout, err = cli(capsys, "verify", copy)
    assert code == 0, err[-2000:]
    assert "signatures match model.json" in stdout and "ok (" in stdout
    with open(copy / "gpt2_int8.tflite", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    code, _, err = cli(capsys, "verify", copy)
    assert code == 2 and "gpt2_int8.tflite changed since export" in err


def test_kotlin_golden_contract_equals_a_fresh_export(tiny_export):
    """tests/golden/model.json (tools/write_goldens.py), which the Kotlin core reads, against the same tiny
    model exported now."""
    _, out, _ = tiny_export
    fresh = json.loads((out / "model.json").read_text())
    with open(os.path.join(GOLDEN, "model.json"), encoding="utf-8") as f:
        golden_contract = json.load(f)
    for written in (fresh, golden_contract):  # the version of transformers that saved the checkpoint
        written["config"].pop("transformers_version", None)
    for key in ("format_version", "config", "max_seq_len", "prefill_len", "cache", "special_tokens", "models",
                "litertlm"):
        assert golden_contract[key] == fresh[key], key


@pytest.mark.slow
def test_exporting_process_loads_no_tensorflow_before_converting(hf_checkpoints, tmp_path):
    """The converter children run while the exporting process holds no TF runtime and no model:
    checking the targets and the children's work must not import tensorflow in the parent."""
    from helpers import run_python

    _, path = hf_checkpoints["small-gelu_new"]
    out = run_python(f"""
import sys
from tfgpt2.export import pipeline, worker
plan = {{"tflite": ["fp32", "int8"], "onnx": ["fp32"]}}  # the ONNX check finds its libraries without importing them
pipeline.check_targets(pipeline.source_config({path!r}), {str(tmp_path / 'x')!r}, plan, False, 24, 8)
worker.run_child("archive", {path!r}, {str(tmp_path / 'a')!r}, 24, 8, "bound-int8")
r = worker.run_child("convert", {str(tmp_path / 'a')!r}, "int8", {str(tmp_path / 'm.tflite')!r}, "tflite", {path!r})
print("tensorflow" in sys.modules, r["bytes"] > 0, r["peak_rss_gb"] > 0)
""")
    assert out.split()[-3:] == ["False", "True", "True"], out


@pytest.mark.slow
@pytest.mark.parametrize("n_positions, vocab, special", [(32, 99, 98), (32, 777, 50256), (64, 777, 5),
                                                         (64, 99, 50256), (1024, 50257, 50256)])
def test_default_flags_export_and_verify_any_checkpoint(tmp_path, capsys, n_positions, vocab, special):
    """`tfgpt2 export` / `verify` with default flags: lengths come from the model; a special id outside
    the vocabulary is reported, recorded in model.json and never fed to the model."""
    from helpers import build_hf

    hf = build_hf("GPT2LMHeadModel", dict(vocab_size=vocab, n_positions=n_positions, n_embd=32, n_layer=2,
                                          n_head=4))
    for cfg in (hf.config, hf.generation_config):
        cfg.eos_token_id = cfg.bos_token_id = special
    hf.save_pretrained(tmp_path / "ckpt")
    code, out, err = cli(capsys, "export", "--model", str(tmp_path / "ckpt"), "--out", str(tmp_path / "exp"))
    assert code == 0, err
    written = contract.read(str(tmp_path / "exp"))
    assert written["max_seq_len"] == min(256, n_positions) and written["prefill_len"] < written["max_seq_len"]
    inside = special < vocab
    assert written["special_tokens"]["eos_token_id"] == (special if inside else None)
    assert written["special_tokens_outside_vocab"] == ({} if inside else dict.fromkeys(
        ("eos_token_id", "bos_token_id", "pad_token_id"), special))
    assert inside or "outside the vocabulary" in out
    code, out, err = cli(capsys, "verify", str(tmp_path / "exp"))
    assert code == 0 and "ok" in out, err


def test_runtime_check_skipped_where_litert_would_not_fit(exported, monkeypatch, tmp_path):
    """A machine without the memory LiteRT needs for a file (its packed weights and the pages it packed them
    from) keeps the export: the check says why it didn't run instead of the kernel killing the export."""
    _, out, report = exported
    path = str(out / "gpt2_int8.tflite")
    assert verify.lite_memory_shortfall(path) is None  # a tiny file fits
    monkeypatch.setattr(verify, "available_memory", lambda: 1000)
    entry = {"format": "tflite", "recipe": "int8", "bytes": os.path.getsize(path), "seconds": 1.0,
             "peak_rss_gb": 1.0}
    pipeline.measure(None, None, path, entry, None, 8)  # no held-out text: the config and model go unread
    assert "decode_tok_s" not in entry and "tfgpt2 verify" in entry["runtime_check"]
    assert entry["signatures"] == json.loads((out / "model.json").read_text())["models"]["gpt2_int8.tflite"][
        "signatures"]
    from tfgpt2.export import report as export_report

    export_report.write(str(tmp_path), {**report, "files": {"gpt2_int8.tflite": entry}})
    assert "gpt2_int8.tflite: not run in LiteRT here" in (tmp_path / "report.md").read_text()


HELD_OUT_MODEL = dict(vocab_size=50257, n_positions=48, n_embd=16, n_layer=1, n_head=2)
README = os.path.join(os.path.dirname(GOLDEN), "..", "README.md")


@pytest.mark.slow
def test_cli_held_out_text_gives_the_report_fidelity(tmp_path, capsys):
    """`--held-out-text FILES`: report.json/.md carry each file's fidelity on that text (fp32 LiteRT = Keras)."""
    from helpers import build_hf

    build_hf("GPT2LMHeadModel", HELD_OUT_MODEL).save_pretrained(tmp_path / "hf")
    capsys.readouterr()  # transformers' own progress lines
    code, _, err = cli(capsys, "export", "--model", tmp_path / "hf", "--out", tmp_path / "e", "--formats", "tflite",
                       "--quantize", "fp32", "--max-seq-len", "48", "--prefill-len", "8", "--held-out-text", README)
    assert code == 0, err[-2000:]
    fid = json.loads((tmp_path / "e" / "report.json").read_text())["files"]["gpt2_fp32.tflite"]["fidelity"]
    assert fid["top1_agreement"] == 1.0 and fid["max_abs_logit_diff"] < 1e-4, fid
    assert abs(fid["perplexity"] / fid["keras_perplexity"] - 1) < 1e-4, fid
    row = next(line for line in (tmp_path / "e" / "report.md").read_text().splitlines() if "gpt2_fp32" in line)
    assert "100.00 %" in row and "nan" not in row and "–" not in row


@pytest.mark.parametrize("text, match", [(README, "vocabulary has 99"), ("{tmp}/none.txt", "does not exist"),
                                         ("{tmp}/short.txt", "shorter than one block")])
def test_cli_held_out_text_that_cannot_be_measured_is_one_line(tmp_path, capsys, text, match):
    """Text whose ids the vocabulary lacks, a missing file, too little text: one line naming the flag or the
    path, before anything is written."""
    from helpers import build_hf

    build_hf("GPT2LMHeadModel", {**HELD_OUT_MODEL, "vocab_size": 99}).save_pretrained(tmp_path / "hf")
    (tmp_path / "short.txt").write_text("A few words.")
    capsys.readouterr()
    code, _, err = cli(capsys, "export", "--model", tmp_path / "hf", "--out", tmp_path / "e", "--held-out-text",
                       text.format(tmp=tmp_path))
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "e").exists()


def test_report_without_fidelity_says_how_to_measure_it(tmp_path):
    from tfgpt2.export import report

    files = {"gpt2_int8.tflite": {"bytes": 1e6, "decode_tok_s": 50.0, "seconds": 1.0, "peak_rss_gb": 0.5}}
    report.write(str(tmp_path), {"files": files, "conversion_seconds": 1.0, "peak_rss_gb": 0.5,
                                 "exporting_process_peak_rss_gb": 0.1})
    text = (tmp_path / "report.md").read_text()
    assert "nan" not in text and "| – | – | – | 50.0 |" in text and "--held-out-text" in text
