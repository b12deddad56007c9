"""Fixtures: tiny random GPT-2s built and saved by transformers (PyTorch), the reference."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import subprocess  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_TIKTOKEN = os.path.join(ROOT, "..", "shared", "data", "gpt2.tiktoken")

# Three shapes that differ in depth, width, heads, vocab, activation and attention options.
CONFIGS = {
    "small-gelu_new": dict(vocab_size=99, n_positions=40, n_embd=32, n_layer=2, n_head=4),
    "wide-gelu-inv_idx": dict(vocab_size=257, n_positions=64, n_embd=48, n_layer=3, n_head=3,
                              n_inner=80, activation_function="gelu", scale_attn_by_inverse_layer_idx=True),
    "deep-relu-upcast": dict(vocab_size=128, n_positions=48, n_embd=64, n_layer=4, n_head=8,
                             activation_function="relu", reorder_and_upcast_attn=True,
                             layer_norm_epsilon=1e-6),
}


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: 124M shapes or long loops; run in benchmarks, not CI")


def build_hf(kind, cfg_kwargs, seed=0, **extra):
    """A random transformers PyTorch GPT-2 of class `kind` (eval mode, eager attention)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(**cfg_kwargs, **extra, bos_token_id=0, eos_token_id=0)
    cls = getattr(transformers, kind)
    model = cls._from_config(cfg, attn_implementation="eager") if hasattr(cls, "_from_config") else cls(cfg)
    with torch.no_grad():  # non-trivial LayerNorm / bias values so every weight matters
        for name, p in model.named_parameters():
            if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                p.add_(torch.randn_like(p) * 0.1)
            elif name.endswith("bias"):
                p.normal_(0, 0.02)
    return model.eval()


@pytest.fixture(scope="session")
def hf_checkpoints(tmp_path_factory):
    """{config name: (hf LM model, dir with model.safetensors)} for every CONFIGS entry."""
    out = {}
    for name, kwargs in CONFIGS.items():
        model = build_hf("GPT2LMHeadModel", kwargs)
        path = tmp_path_factory.mktemp(name)
        model.save_pretrained(path)
        out[name] = (model, str(path))
    return out


def torch_run(model, ids, **kwargs):
    import torch

    tensors = {k: (v if isinstance(v, bool) else torch.tensor(np.asarray(v)))
               for k, v in kwargs.items() if v is not None}
    with torch.no_grad():
        return model(torch.tensor(np.asarray(ids)), **tensors)


def hf_tf_python():
    """Python of a venv with transformers 4.57.6 TF (created on first use), or None if offline."""
    script = os.path.join(ROOT, "tools", "hf_tf_venv.sh")
    try:
        venv = subprocess.run(["bash", script], check=True, capture_output=True, text=True,
                              timeout=900).stdout.strip().splitlines()[-1]
    except (subprocess.SubprocessError, IndexError):
        return None
    return os.path.join(venv, "bin", "python")


def run_python(python, code, timeout=600, cwd=None):
    """Runs `code` in a fresh interpreter; `cwd` away from the checkout imports the installed tfgpt2
    (`-c` puts the cwd first on sys.path, and the checkout's tfgpt2/ has no export/ subpackage)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if python:  # the transformers 4.57 TF venv runs on tf-keras
        env["TF_USE_LEGACY_KERAS"] = "1"
    result = subprocess.run([python or sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=timeout, env=env, cwd=cwd)
    if result.returncode:
        raise AssertionError(f"subprocess failed:\n{result.stderr[-3000:]}")
    return result.stdout
