"""Shared by decode.py and export.py: running one system in a subprocess, and the ONNX peer.

`run_system(common, code, threads)` runs COMMON + a system's code in a fresh interpreter and returns
the dict it printed after "RESULT "; every system gets `scratch()`, a temp dir removed when its
process exits (rows write GBs). EXPORT (ONNX export of transformers' GPT-2 with past) defines `path` (the .onnx file), `L, H, D` and `ort_greedy(path)` -> tok/s (greedy loop with
past, NEW tokens after `ids`); it expects COMMON's NEW, THREADS and ids.
"""

import json
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


PRELUDE = """
import atexit, shutil, tempfile
def scratch():
    path = tempfile.mkdtemp(prefix="tfgpt2-bench-")
    atexit.register(shutil.rmtree, path, True)
    return path
"""


def run_system(common, code, threads, python=sys.executable, timeout=3600, argv=()):
    code = PRELUDE + textwrap.dedent(common) + textwrap.dedent(code)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", OMP_NUM_THREADS=str(threads),
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([python, "-c", code, *argv], capture_output=True, text=True, env=env, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]}


EXPORT = """
import torch, transformers, onnxruntime as ort
torch.set_num_threads(THREADS)
cfg = transformers.GPT2Config()
model = transformers.GPT2LMHeadModel(cfg).eval()
L, H, D = cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head
class WithPast(torch.nn.Module):
    def __init__(self, m):
        super().__init__(); self.m = m
    def forward(self, input_ids, position_ids, attention_mask, past):
        cache = transformers.DynamicCache()
        for i in range(L):
            cache.update(past[i, 0], past[i, 1], i)
        out = self.m(input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask,
                     past_key_values=cache, use_cache=True)
        kv = out.past_key_values
        present = torch.stack([torch.stack([kv.layers[i].keys, kv.layers[i].values]) for i in range(L)])
        return out.logits[:, -1], present
tmp = scratch()  # the exported model is ~0.5 GB per run
path = os.path.join(tmp, "gpt2_past.onnx")
auto = torch.export.Dim.AUTO
example = (torch.tensor(ids[:, :4]), torch.arange(4)[None] + 2, torch.ones(1, 6, dtype=torch.long),
           torch.zeros(L, 2, 1, H, 2, D))
torch.onnx.export(WithPast(model), example, path, dynamo=True, input_names=["input_ids", "position_ids",
                  "attention_mask", "past"], output_names=["logits", "present"],
                  dynamic_shapes=({1: auto}, {1: auto}, {1: auto}, {4: auto}), external_data=False)
def ort_greedy(onnx_path, repeats=1, decode_only=False):
    opts = ort.SessionOptions(); opts.intra_op_num_threads = THREADS; opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
    def run():  # seconds for all NEW tokens, and for the NEW - 1 after the prompt pass
        past = np.zeros((L, 2, 1, H, 0, D), np.float32)
        x = ids
        t0 = time.perf_counter()
        for step in range(NEW):
            if step == 1:
                t1 = time.perf_counter()
            total = past.shape[4] + x.shape[1]
            logits, past = sess.run(None, {"input_ids": x, "position_ids": np.arange(total - x.shape[1], total)[None],
                                           "attention_mask": np.ones((1, total), np.int64), "past": past})
            x = logits.argmax(-1)[:, None].astype(np.int64)
        end = time.perf_counter()
        return (NEW - 1) / (end - t1) if decode_only else NEW / (end - t0)
    run()  # warm-up
    return max(run() for _ in range(repeats))
"""
