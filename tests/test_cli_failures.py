"""Bad input to every subcommand, each run as the installed `tfgpt2` script in its own process: exit code
2, exactly one line on stderr (no traceback, no TF/absl/CUDA log line), and the working directory
exactly as it was (nothing half-written left behind). Slow: one fresh interpreter per case."""

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

import pytest

from helpers import run_cli

pytestmark = pytest.mark.slow


def _checkpoint(src, dst, damage):
    """A copy of a tiny HF checkpoint with one thing wrong."""
    shutil.copytree(src, dst)
    weights, config = os.path.join(dst, "model.safetensors"), os.path.join(dst, "config.json")
    data = open(weights, "rb").read()
    cfg = json.load(open(config))
    if damage == "truncated":
        open(weights, "wb").write(data[: len(data) // 2])
    elif damage == "corrupt":
        open(weights, "wb").write(b"\x00not safetensors" * 64)
    elif damage == "no-weights":
        os.remove(weights)
    elif damage == "config-not-json":
        open(config, "w").write('{"n_embd": 32,')
    elif damage == "config-unreadable":  # a directory where the file should be: unreadable even for root
        os.remove(config)
        os.mkdir(config)
    elif damage in ("n-head", "more-layers", "negative-vocab"):
        cfg.update({"n-head": {"n_head": 5}, "more-layers": {"n_layer": cfg["n_layer"] + 1},
                    "negative-vocab": {"vocab_size": -3}}[damage])
        json.dump(cfg, open(config, "w"))
    elif damage == "bad-vocab":
        open(os.path.join(dst, "vocab.json"), "w").write("[not a vocab")
        open(os.path.join(dst, "merges.txt"), "w").write("#version: 0.2\n")
    return dst


def _export(src, dst, damage):
    """A copy of a finished export with one thing wrong."""
    shutil.copytree(src, dst)
    tflite = os.path.join(dst, "gpt2_fp32.tflite")
    if damage == "model-json":
        open(os.path.join(dst, "model.json"), "w").write("{ not json")
    elif damage == "missing-tflite":
        os.remove(tflite)
    elif damage == "tampered-tflite":
        data = bytearray(open(tflite, "rb").read())
        data[len(data) // 2] ^= 0xFF
        open(tflite, "wb").write(bytes(data))
    elif damage == "truncated-tflite":
        data = open(tflite, "rb").read()
        open(tflite, "wb").write(data[: len(data) // 3])
    return dst


LONG = " ".join(["word"] * 200)  # > n_positions (40) tokens

# (arguments, text the one error line must contain); @ckpt:DAMAGE / @export:DAMAGE are damaged copies,
# {ckpt} the intact checkpoint, {tmp} the case's directory, {file} a plain file in it
CASES = [
    (["generate", "--model", "/nonexistent/dir", "--prompt", "x"], "not a checkpoint directory"),
    (["generate", "--model", "@ckpt:truncated", "--prompt", "x"], "truncated or corrupt"),
    (["generate", "--model", "@ckpt:corrupt", "--prompt", "x"], "truncated or corrupt"),
    (["generate", "--model", "@ckpt:no-weights", "--prompt", "x"], "weights"),
    (["generate", "--model", "@ckpt:config-not-json", "--prompt", "x"], "config.json"),
    (["generate", "--model", "@ckpt:config-unreadable", "--prompt", "x"], "config.json"),
    (["generate", "--model", "@ckpt:n-head", "--prompt", "x"], "not divisible by n_head"),
    (["generate", "--model", "@ckpt:more-layers", "--prompt", "x"], "h.2"),
    (["generate", "--model", "@ckpt:negative-vocab", "--prompt", "x"], "vocab_size"),
    (["generate", "--model", "@ckpt:bad-vocab", "--prompt", "x"], "vocab.json"),
    (["generate", "--model", "{ckpt}", "--prompt", LONG], "n_positions"),
    (["generate", "--model", "{ckpt}", "--prompt", "x", "--max-new-tokens", "0"], "max_new_tokens"),
    (["generate", "--model", "{ckpt}", "--prompt", "x", "--temperature", "-1"], "temperature"),
    (["generate", "--model", "{ckpt}", "--prompt", "x", "--temperature", "1", "--top-p", "2"], "top_p"),
    (["generate", "--model", "{ckpt}", "--prompt", "x", "--temperature", "1", "--top-k", "-1"], "top_k"),
    (["generate", "--model", "{ckpt}", "--prompt", "x", "--max-new-tokens", "many"], "invalid int value"),
    (["export", "--model", "{ckpt}", "--out", "{tmp}"], "--overwrite"),
    (["export", "--model", "{ckpt}", "--out", "{tmp}", "--overwrite"], "not a tfgpt2 export"),
    (["export", "--model", "{ckpt}", "--out", "{file}/e"], "cannot write into"),
    (["export", "--model", "{ckpt}", "--out", "{tmp}/e", "--quantize", "int3"], "unknown quantization"),
    (["export", "--model", "{ckpt}", "--out", "{tmp}/e", "--max-seq-len", "4096"], "n_positions"),
    (["export", "--model", "{ckpt}", "--out", "{tmp}/e", "--max-seq-len", "32", "--prefill-len", "32"],
     "prefill_len"),
    (["export", "--model", "{ckpt}", "--out", "{tmp}/e", "--quantize", "int8-full"], "--calibration-text"),
    (["export", "--model", "{ckpt}", "--out", "{tmp}/e", "--quantize", "int8-full", "--calibration-text",
      "{tmp}/none.txt"], "does not exist"),
    (["export", "--model", "@ckpt:truncated", "--out", "{tmp}/e"], "truncated or corrupt"),
    (["export", "--model", "@ckpt:n-head", "--out", "{tmp}/e"], "not divisible by n_head"),
    (["verify", "/nonexistent/dir"], "no model.json"),
    (["verify", "@export:model-json"], "model.json"),
    (["verify", "@export:missing-tflite"], "gpt2_fp32.tflite"),
    (["verify", "@export:tampered-tflite"], "gpt2_fp32.tflite"),
    (["verify", "@export:truncated-tflite"], "gpt2_fp32.tflite"),
    (["info", "/nonexistent/dir"], "not a checkpoint directory"),
    (["info", "@ckpt:config-not-json"], "config.json"),
    (["info", "gpt2-huge"], "Hugging Face hub"),
    (["train", "--data", "/nonexistent.txt", "--out", "{tmp}/t"], "does not exist"),
    (["train", "--data", "{file}", "--out", "{tmp}/t"], "no text"),
    (["train", "--builtin-data", "--out", "{tmp}/t", "--lr", "0"], "--lr"),
    (["train", "--model", "@ckpt:corrupt", "--builtin-data", "--out", "{tmp}/t"], "truncated or corrupt"),
    (["bench", "--model", "{ckpt}", "--new", "0"], "--new"),
    (["demo", "--steps", "abc"], "invalid int value"),
]


def _tree(root):
    """Every path under `root` with its size (files) — what a failed command must leave unchanged."""
    out = {}
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(base, name)
            out[os.path.relpath(path, root)] = os.path.getsize(path) if os.path.isfile(path) else -1
    return out


def _one_line(result, match):
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("tfgpt2") and ": error: " in lines[0] and match in lines[0], lines[0]
    print(lines[0])


@pytest.mark.parametrize("args, match", CASES, ids=[f"{a[0]}-{i}" for i, (a, _) in enumerate(CASES)])
def test_bad_input_one_line_exit_2_nothing_left(args, match, hf_checkpoints, tiny_export, tmp_path):
    ckpt = hf_checkpoints["small-gelu_new"][1]
    inputs, work = tmp_path / "inputs", tmp_path / "work"
    inputs.mkdir()
    work.mkdir()
    (work / "file").write_text("")  # an empty file: a path under it can't be written, as text it holds none
    (work / "notes.txt").write_text("not an export")  # makes `work` a non-empty directory that isn't one
    resolved = []
    for a in args:
        if a.startswith("@"):
            kind, damage = a[1:].split(":")
            make = _checkpoint if kind == "ckpt" else _export
            a = make(ckpt if kind == "ckpt" else str(tiny_export[1]), str(inputs / damage), damage)
        resolved.append(a.replace("{ckpt}", ckpt).replace("{file}", str(work / "file")).replace("{tmp}", str(work)))
    before = _tree(work)
    result = run_cli(*resolved)
    _one_line(result, match)
    assert _tree(work) == before


def test_full_disk_during_export_one_line_nothing_left(hf_checkpoints, tmp_path):
    """A write that fails mid-file (a file size limit: EFBIG, as ENOSPC on a full disk) in a conversion
    child and in the parent."""
    ckpt = hf_checkpoints["small-gelu_new"][1]

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    script = os.path.join(os.path.dirname(sys.executable), "tfgpt2")
    result = subprocess.run([script, "export", "--model", ckpt, "--out", str(tmp_path / "e"), "--quantize", "fp32"],
                            capture_output=True, text=True, preexec_fn=limit, timeout=600)
    _one_line(result, "full")
    assert os.listdir(tmp_path) == []


def test_killed_conversion_child_one_line_nothing_left(hf_checkpoints, tmp_path):
    """SIGKILL to the export's conversion child (what the OOM killer does): the export fails in one line."""
    ckpt = hf_checkpoints["small-gelu_new"][1]
    script = os.path.join(os.path.dirname(sys.executable), "tfgpt2")
    proc = subprocess.Popen([script, "export", "--model", ckpt, "--out", str(tmp_path / "e"), "--quantize", "fp32"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child, deadline = None, time.time() + 300
    while child is None and time.time() < deadline and proc.poll() is None:
        for pid in (p for p in os.listdir("/proc") if p.isdigit()):
            try:
                stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
                cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
            except OSError:
                continue
            if int(stat[1]) == proc.pid and b"tfgpt2.export.worker" in cmdline:
                child = int(pid)
        time.sleep(0.05)
    assert child is not None, "no conversion child seen"
    os.kill(child, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)
    _one_line(result, "killed by SIGKILL")
    assert os.listdir(tmp_path) == []


# sitecustomize.py for the processes of an export: one module hidden, as on a machine without it
HIDE_MODULE = """
import sys
class _Hidden:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == {name!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, _Hidden())
"""
# ... or the ONNX passes writing an op ONNX Runtime has no kernel for (what an unconvertible TF op leaves)
BREAK_ONNX = """
import importlib.abc, importlib.machinery, sys
class _Break(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "tfgpt2.export.onnx_passes":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module
        def exec_module(module):
            run(module)
            def reduce_means(graph):
                for node in graph.node:
                    if node.op_type == "GlobalAveragePool":
                        node.op_type = "Erfc"
            module.reduce_means = reduce_means
        spec.loader.exec_module = exec_module
        return spec
sys.meta_path.insert(0, _Break())
"""


@pytest.mark.parametrize("site, match", [
    (HIDE_MODULE.format(name="tf2onnx"), "needs tf2onnx: pip install 'tfgpt2[onnx]'"),
    (HIDE_MODULE.format(name="onnxruntime"), "needs onnxruntime"),
    (BREAK_ONNX, "ONNX Runtime cannot load model.onnx"),
], ids=["no-tf2onnx", "no-onnxruntime", "ort-refuses"])
def test_onnx_export_without_its_libraries_or_unloadable_one_line_nothing_left(hf_checkpoints, tmp_path, site,
                                                                               match):
    ckpt = hf_checkpoints["small-gelu_new"][1]
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(site)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])}
    script = os.path.join(os.path.dirname(sys.executable), "tfgpt2")
    result = subprocess.run([script, "export", "--model", ckpt, "--out", str(work / "e"), "--formats", "onnx"],
                            capture_output=True, text=True, env=env, timeout=600)
    _one_line(result, match)
    assert os.listdir(work) == []
