"""Helpers the tests share: reference models built by transformers, subprocess runners, comparisons."""

import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
GOLDEN = os.path.join(ROOT, "tests", "golden")
TIKTOKEN_RANKS = os.path.join(FIXTURES, "gpt2.tiktoken")

# Three shapes that differ in depth, width, heads, vocab, activation and attention options.
CONFIGS = {
    "small-gelu_new": dict(vocab_size=99, n_positions=40, n_embd=32, n_layer=2, n_head=4),
    "wide-gelu-inv_idx": dict(vocab_size=257, n_positions=64, n_embd=48, n_layer=3, n_head=3,
                              n_inner=80, activation_function="gelu", scale_attn_by_inverse_layer_idx=True),
    "deep-relu-upcast": dict(vocab_size=128, n_positions=48, n_embd=64, n_layer=4, n_head=8,
                             activation_function="relu", reorder_and_upcast_attn=True,
                             layer_norm_epsilon=1e-6),
}


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


def reference_tiktoken():
    """tiktoken over OpenAI's GPT-2 ranks (the fixture), with <|endoftext|> as its special token."""
    import base64

    import tiktoken

    from tfgpt2.tokenizer import EOT, PATTERN

    ranks = {}
    with open(TIKTOKEN_RANKS, "rb") as f:
        for line in f:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return tiktoken.Encoding("gpt2-ranks", pat_str=PATTERN, mergeable_ranks=ranks, special_tokens={EOT: len(ranks)})


def torch_run(model, ids, **kwargs):
    import torch

    def tensor(v):
        v = np.asarray(v)
        return torch.tensor(v.astype(np.int64) if v.dtype.kind in "iu" else v)

    tensors = {k: (v if isinstance(v, bool) else tensor(v)) for k, v in kwargs.items() if v is not None}
    with torch.no_grad():
        return model(tensor(ids), **tensors)


def hf_generate(hf, ids, mask=None, **kwargs):
    """transformers PyTorch greedy/beam `generate` on numpy ids."""
    import torch

    mask = np.ones_like(ids) if mask is None else mask
    kwargs.setdefault("pad_token_id", 0)
    with torch.no_grad():
        out = hf.generate(torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask, dtype=torch.long),
                          do_sample=False, **kwargs)
    return out.numpy()


def max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def keras_logits(model, prompt, tokens):
    """Keras logits (len(tokens), V) that chose each of `tokens` after `prompt`, in one full pass."""
    seq = np.concatenate([prompt, tokens[:-1]])[None]
    return model(seq).logits.numpy()[0, len(prompt) - 1:]


def run_python(code, timeout=600):
    """Runs `code` in a fresh interpreter; its stdout."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    if result.returncode:
        raise AssertionError(f"subprocess failed:\n{result.stderr[-3000:]}")
    return result.stdout


def run_cli(*args, timeout=600):
    """The installed `tfgpt2` console script in a subprocess, as a user's shell runs it (logs as they are):
    the one beside this interpreter, so an un-activated venv tests its own install."""
    script = os.path.join(os.path.dirname(sys.executable), "tfgpt2")
    return subprocess.run([script if os.path.exists(script) else "tfgpt2", *args], capture_output=True,
                          text=True, timeout=timeout)


def cli(capsys, *args):
    """`tfgpt2 ARGS` in this process: (exit code, stdout, stderr)."""
    from tfgpt2.cli.main import main

    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def reference_model():
    """The trained reference model (tests/fixtures/reference, tools/reference_model.py) and its
    held-out and calibration blocks."""
    import json

    from tfgpt2 import TFGPT2LMHeadModel

    directory = os.path.join(FIXTURES, "reference")
    with open(os.path.join(directory, "held_out.json"), encoding="utf-8") as f:
        blocks = json.load(f)
    return (TFGPT2LMHeadModel.from_pretrained(directory), np.asarray(blocks["blocks"], np.int32),
            np.asarray(blocks["calibration"], np.int32))
