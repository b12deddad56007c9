"""The `tfgpt2` console script, run as a subprocess on tiny models."""

import os
import subprocess
import sys
import tempfile

import pytest

from conftest import CONFIGS


def run_cli(*args, timeout=600):
    """The installed CLI, run from a neutral directory (a source checkout must not shadow it)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "tfgpt2.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=tempfile.gettempdir())


def test_demo_trains_generates_and_saves(tmp_path):
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


def test_info_on_hf_checkpoint(hf_checkpoints):
    _, path = hf_checkpoints["small-gelu_new"]
    result = run_cli("info", path)
    assert result.returncode == 0, result.stderr
    assert f"n_layer              {CONFIGS['small-gelu_new']['n_layer']}" in result.stdout


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
               (["--model", "/nonexistent/dir", "--out", "{tmp}/e"], "not a checkpoint directory")],
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
def test_bad_invocations_one_line_exit_2(command, args, match, hf_checkpoints, tmp_path):
    _, tiny = hf_checkpoints["small-gelu_new"]
    result = run_cli(command, *[a.replace("{tiny}", tiny).replace("{tmp}", str(tmp_path)) for a in args])
    assert result.returncode == 2, (result.returncode, result.stderr[-1500:])
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("tfgpt2")]
    assert len(lines) == 1 and match in lines[0] and "Traceback" not in result.stderr, result.stderr[-1500:]
    assert not os.path.exists(tmp_path / "e") and not os.path.exists(tmp_path / "t" / "config.json")


def test_train_checkpoints_resumes_and_plots(tmp_path):
    data = tmp_path / "data.txt"
    from tfgpt2 import training

    data.write_text("\n\n".join(training.builtin_texts()[:40]), encoding="utf-8")
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(out), "--steps", "12", "--epochs", "2", "--n-embd", "32",
            "--n-layer", "1", "--seq-len", "32", "--batch-size", "4"]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "epoch 2: held-out perplexity" in first.stdout and "12/12" not in first.stderr  # 6 steps per epoch
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "checkpoints").is_dir() and (out / "model.safetensors").exists()
    import json

    import transformers

    history = json.loads((out / "train_history.json").read_text())
    assert len(history["step_loss"]) == 12 and len(history["eval"]) == 2
    assert history["step_loss"][-1] < history["step_loss"][0]
    assert transformers.GPT2LMHeadModel.from_pretrained(str(out)).config.n_embd == 32
    # resume: the backup says both epochs are done, so fit restores and has nothing left to run
    again = run_cli(*args, "--resume")
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((out / "train_history.json").read_text())["step_loss"] == []
    # fine-tune the saved model on the same data
    tuned = run_cli("train", "--model", str(out), "--data", str(data), "--out", str(tmp_path / "tuned"),
                    "--steps", "4", "--epochs", "1", "--seq-len", "32", "--batch-size", "4")
    assert tuned.returncode == 0, tuned.stderr[-2000:]


def test_bench_times_model_and_tflite_and_draws(hf_checkpoints, tmp_path):
    _, tiny = hf_checkpoints["small-gelu_new"]
    export = run_cli("export", "--model", tiny, "--out", str(tmp_path / "e"), "--quantize", "int8",
                     "--max-seq-len", "24", "--prefill-len", "8")
    assert export.returncode == 0, export.stderr[-2000:]
    result = run_cli("bench", "--model", tiny, "--export-dir", str(tmp_path / "e"), "--prompt", "8", "--new", "8",
                     "--chart", str(tmp_path / "c.png"), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    import json

    rates = json.loads(result.stdout.strip().splitlines()[0])
    assert set(rates) == {"tfgpt2 XLA generate", "LiteRT gpt2_int8.tflite"} and min(rates.values()) > 0
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_usage_error_exit_2():
    result = run_cli("frobnicate")
    assert result.returncode == 2 and "invalid choice" in result.stderr
