"""The `tfgpt2` CLI on tiny models: in-process for the many error cases, and a few runs of the installed
console script as a user's shell runs it (exit code, one line, no TF log noise)."""

import os
import shutil

import pytest

from helpers import CONFIGS, cli, run_cli


@pytest.mark.slow
def test_demo_trains_generates_and_saves(tmp_path):
    """The README's main job, `tfgpt2 demo`, as a shell runs it (shortened), then generate and info."""
    out = tmp_path / "demo"
    result = run_cli("demo", "--out", str(out), "--steps", "30", "--epochs", "2", "--n-embd", "32",
                     "--n-layer", "1", "--seq-len", "32", "--max-new-tokens", "8")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "held-out perplexity before / after" in result.stdout
    assert (out / "model.safetensors").exists() and (out / "vocab.json").exists()
    assert "gpt2_int8.tflite" in result.stdout and "tfgpt2 verify passed" in result.stdout
    assert (out / "export" / "saved_model" / "1" / "saved_model.pb").exists()
    import transformers

    assert transformers.GPT2LMHeadModel.from_pretrained(str(out)).config.n_embd == 32
    gen = run_cli("generate", "--model", str(out), "--prompt", "The for", "--max-new-tokens", "5", "--no-eos")
    assert gen.returncode == 0, gen.stderr[-2000:]
    assert gen.stdout.startswith("The for") and len(gen.stdout.rstrip("\n")) > len("The for")
    info = run_cli("info", str(out))
    assert info.returncode == 0 and "n_embd" in info.stdout and "model.safetensors" in info.stdout


def test_info_on_hf_checkpoint(hf_checkpoints, capsys):
    _, path = hf_checkpoints["small-gelu_new"]
    code, out, err = cli(capsys, "info", path)
    assert code == 0, err
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:] if len(line.split()) >= 2}
    assert rows["n_layer"] == str(CONFIGS["small-gelu_new"]["n_layer"]) and rows["generation_config.json"] == "0.00"


BAD = {  # five bad invocations per subcommand: (arguments, text the one-line error must contain)
    "demo": [(["--steps", "abc"], "invalid int value"), (["--steps", "1", "--epochs", "2"], "--steps"),
             (["--seq-len", "4"], "--seq-len"), (["--n-embd", "30", "--n-head", "4"], "divisible"),
             (["--lr", "0"], "--lr")],
    "generate": [(["--model", "/nonexistent/dir", "--prompt", "x"], "not a checkpoint directory"),
                 (["--model", "{tiny}", "--prompt", "x", "--top-p", "2", "--temperature", "1",
                   "--max-new-tokens", "5"], "top_p"),
                 (["--model", "{tiny}", "--prompt", "x", "--max-new-tokens", "0"], "max_new_tokens"),
                 (["--model", "{tiny}", "--prompt", "x", "--temperature", "-1"], "temperature"),
                 (["--prompt", "x"], "--model")],
    "train": [(["--out", "{tmp}/t"], "--builtin-data"), (["--data", "/nonexistent.txt", "--out", "{tmp}/t"],
                                                         "does not exist"),
              (["--builtin-data", "--out", "{tmp}/t", "--steps", "1", "--epochs", "2"], "--steps"),
              (["--builtin-data", "--out", "{tmp}/t", "--eval-fraction", "0.9"], "--eval-fraction"),
              (["--builtin-data", "--out", "{tmp}/t", "--resume"], "nothing to resume")],
    "export": [(["--model", "{tiny}", "--out", "{tmp}/e", "--quantize", "int3"], "unknown quantization"),
               (["--model", "{tiny}"], "--android"),
               (["--model", "{tiny}", "--out", "{tmp}/e", "--quantize", "int8-full"], "--calibration-text"),
               (["--model", "{tiny}", "--out", "{tmp}/e", "--max-seq-len", "4096"], "n_positions"),
               (["--model", "/nonexistent/dir", "--out", "{tmp}/e"], "not a checkpoint directory"),
               (["--model", "{tiny}", "--out", "{tmp}/e", "--formats", "coreml"], "unknown export format"),
               (["--model", "{tiny}", "--out", "{tmp}/e", "--formats", "saved_model", "--quantize", "int8"],
                "add one of them to --formats"),
               (["--model", "{tiny}", "--android", "{tmp}", "--formats", "tflite"], "add litertlm")],
    "verify": [(["/nonexistent/dir"], "no model.json"), (["{tmp}"], "no model.json"), ([], "directory"),
               (["{tiny}"], "no model.json"), (["{tmp}", "--bogus"], "unrecognized arguments")],
    "info": [(["/nonexistent/dir"], "not a checkpoint directory"), ([], "model"),
             (["{tmp}"], "has no config.json"), (["{tiny}", "--bogus"], "unrecognized arguments"),
             (["gpt2-huge"], "Hugging Face hub")],
    "bench": [(["--model", "{tiny}", "--new", "0"], "--new"), (["--model", "/nonexistent/dir"],
                                                               "not a checkpoint directory"),
              (["--model", "{tiny}", "--threads", "0"], "--threads"),
              (["--model", "{tiny}", "--chart", "/nonexistent/dir/c.png"], "--chart"),
              (["--model", "{tiny}", "--export-dir", "{tmp}"], "no model.json")],
}


@pytest.mark.parametrize("command, args, match", [(c, a, m) for c, cases in BAD.items() for a, m in cases],
                         ids=[f"{c}-{i}" for c, cases in BAD.items() for i in range(len(cases))])
def test_bad_invocations_one_line_exit_2(command, args, match, hf_checkpoints, tmp_path, capsys):
    _, tiny = hf_checkpoints["small-gelu_new"]
    code, _, err = cli(capsys, command, *[a.replace("{tiny}", tiny).replace("{tmp}", str(tmp_path)) for a in args])
    assert code == 2, (code, err[-1500:])
    lines = [line for line in err.strip().splitlines() if line.startswith("tfgpt2")]
    assert len(lines) == 1 and match in lines[0] and "Traceback" not in err, err[-1500:]
    assert not os.path.exists(tmp_path / "e") and not os.path.exists(tmp_path / "t" / "config.json")


def _broken_checkpoint(hf_checkpoints, tmp_path, damage):
    src = hf_checkpoints["small-gelu_new"][1]
    dst = tmp_path / damage
    shutil.copytree(src, dst)
    weights, config = dst / "model.safetensors", dst / "config.json"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "corrupt":
        weights.write_bytes(b"\x00not safetensors" * 64)
    elif damage == "bad-config":
        config.write_text(config.read_text().replace('"n_head": 4', '"n_head": 5'))
    return str(dst)


@pytest.mark.parametrize("args, match", [
    (["frobnicate"], "invalid choice"),
    pytest.param(["generate", "--model", "/nonexistent/dir", "--prompt", "x"], "not a checkpoint directory",
                 marks=pytest.mark.slow),  # in-process in test_bad_invocations_one_line_exit_2
    (["generate", "--model", "@truncated", "--prompt", "x"], "truncated or corrupt"),
    pytest.param(["generate", "--model", "@corrupt", "--prompt", "x"], "truncated or corrupt", marks=pytest.mark.slow),
    pytest.param(["generate", "--model", "@bad-config", "--prompt", "x"], "not divisible by n_head",
                 marks=pytest.mark.slow),
])
def test_console_script_errors_are_one_line(args, match, hf_checkpoints, tmp_path):
    """The installed script as a shell runs it: exit 2, exactly one line on stderr (no traceback, no
    TF/absl/CUDA log lines)."""
    args = [_broken_checkpoint(hf_checkpoints, tmp_path, a[1:]) if a.startswith("@") else a for a in args]
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr[-1500:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tfgpt2") and match in lines[0], result.stderr[-1500:]


@pytest.mark.slow
def test_train_checkpoints_resumes_and_plots(tmp_path, capsys):
    data = tmp_path / "data.txt"
    from tfgpt2 import training

    data.write_text("\n\n".join(training.builtin_texts()[:40]), encoding="utf-8")
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(out), "--steps", "12", "--epochs", "2", "--n-embd", "32",
            "--n-layer", "1", "--seq-len", "32", "--batch-size", "4"]
    code, stdout, err = cli(capsys, *args)
    assert code == 0, err[-2000:]
    assert "epoch 2: held-out perplexity" in stdout and "12/12" not in stdout + err  # 6 steps per epoch
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "checkpoints").is_dir() and (out / "model.safetensors").exists()
    import json

    import transformers

    history = json.loads((out / "train_history.json").read_text())
    assert len(history["step_loss"]) == 12 and len(history["eval"]) == 2
    assert history["step_loss"][-1] < history["step_loss"][0]
    assert transformers.GPT2LMHeadModel.from_pretrained(str(out)).config.n_embd == 32
    # resume: the backup says both epochs are done, so fit restores and has nothing left to run
    code, _, err = cli(capsys, *args, "--resume")
    assert code == 0, err[-2000:]
    assert json.loads((out / "train_history.json").read_text())["step_loss"] == []
    # fine-tune the saved model on the same data
    code, _, err = cli(capsys, "train", "--model", out, "--data", data, "--out", tmp_path / "tuned",
                       "--steps", "4", "--epochs", "1", "--seq-len", "32", "--batch-size", "4")
    assert code == 0, err[-2000:]


@pytest.mark.slow
def test_bench_times_model_and_tflite_and_draws(hf_checkpoints, tiny_export, tmp_path, capsys):
    _, tiny = hf_checkpoints["small-gelu_new"]
    _, export_dir, _ = tiny_export
    code, out, err = cli(capsys, "bench", "--model", tiny, "--export-dir", export_dir, "--prompt", "8", "--new", "8",
                         "--chart", tmp_path / "c.png", "--json")
    assert code == 0, err[-2000:]
    import json

    rates = json.loads(out.strip().splitlines()[0])
    assert set(rates) == {"tfgpt2 XLA generate", "LiteRT gpt2_fp32.tflite", "LiteRT gpt2_int8.tflite"}
    assert min(rates.values()) > 0
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_usage_error_exit_2(capsys):
    code, _, err = cli(capsys, "frobnicate")
    assert code == 2 and "invalid choice" in err
