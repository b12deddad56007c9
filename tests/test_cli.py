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


@pytest.mark.parametrize("args, match", [
    (["generate", "--model", "/nonexistent/dir", "--prompt", "x"], "not a checkpoint directory"),
    (["info", "/nonexistent/dir"], "not a checkpoint directory"),
    (["generate", "--model", "{tiny}", "--prompt", "x", "--top-p", "2", "--temperature", "1",
      "--max-new-tokens", "5"], "top_p"),
    (["generate", "--model", "{tiny}", "--prompt", "x", "--max-new-tokens", "0"], "max_new_tokens"),
    (["generate", "--model", "{tiny}", "--prompt", "x", "--temperature", "-1", "--max-new-tokens", "5"],
     "temperature"),
])
def test_bad_invocations_one_line_exit_2(args, match, hf_checkpoints):
    _, tiny = hf_checkpoints["small-gelu_new"]
    result = run_cli(*[a.replace("{tiny}", tiny) for a in args])
    assert result.returncode == 2, (result.returncode, result.stderr[-1500:])
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("tfgpt2")]
    assert len(lines) == 1 and match in lines[0] and "Traceback" not in result.stderr


def test_usage_error_exit_2():
    result = run_cli("frobnicate")
    assert result.returncode == 2 and "invalid choice" in result.stderr
