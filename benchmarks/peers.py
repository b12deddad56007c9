"""Shared by decode.py and export.py: running systems in subprocesses, and the ONNX peer.

`run_system(common, code, threads)` runs COMMON + a system's code in a fresh interpreter and returns
the dict it printed after "RESULT "; every system gets `scratch()`, a temp dir removed when its
process exits (rows write GBs), and `best(fn)`, the fastest of 3 timed calls.
`interleaved(systems, rounds)` keeps one process per system alive and times one run of each in turn,
round after round: a shared machine's speed drifts by tens of percent within minutes, so peers are
compared within a round, not across minutes.

EXPORT (ONNX export of transformers' GPT-2 with past: random weights, or the checkpoint at CKPT when
the code defines it) defines `path` (the .onnx file), `L, H, D`, `ort_greedy(path)` -> tok/s (greedy
loop with past, NEW tokens after `ids`) and `ort_greedy_runner(path)`, one such run per call (ORT_PAST,
for a file exported before); it expects COMMON's NEW, THREADS and ids.
"""

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


PRELUDE = """
import atexit, shutil, sys, tempfile, time
def scratch():
    path = tempfile.mkdtemp(prefix="tfgpt2-bench-")
    atexit.register(shutil.rmtree, path, True)
    return path
def best(fn, repeats=3):
    \"\"\"The fastest of `repeats` timed calls after one untimed one, in seconds.\"\"\"
    fn()  # warm-up / compile
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    return min(times)
def serve(fn):
    \"\"\"Warms fn up, then times one call per "go" line from the parent; returns the seconds.\"\"\"
    fn()
    print("READY", flush=True)
    times = []
    for line in sys.stdin:
        if line.strip() != "go":
            break
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
        print("TIME", times[-1], flush=True)
    return times
"""


def decode_arguments(parser, rounds=5):
    """The options every decode benchmark takes: --new, --prompt, --threads, --rounds."""
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=rounds)
    return parser


def _env(threads):
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", OMP_NUM_THREADS=str(threads),
                PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def run_system(common, code, threads, python=sys.executable, timeout=3600, argv=()):
    code = PRELUDE + textwrap.dedent(common) + textwrap.dedent(code)
    proc = subprocess.run([python, "-c", code, *argv], capture_output=True, text=True, env=_env(threads),
                          timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]}


class _Server:
    """One system's process: its code calls `serve(fn)` once, then reports a RESULT."""

    def __init__(self, code, threads, python):
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([python, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, env=_env(threads))
        self.error = None if self._read("READY") else self._failure()

    def _read(self, tag):
        """The rest of the first stdout line starting with `tag`, or None at end of output."""
        for line in self.proc.stdout:
            if line.startswith(tag):
                return line[len(tag):].strip() or tag
        return None

    def _failure(self):
        self.proc.wait()
        self.stderr.seek(0)
        return {"error": (self.stderr.read().strip().splitlines() or ["no output"])[-1][:200]}

    def time_once(self):
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        seconds = self._read("TIME ")
        if seconds is None:
            self.error = self._failure()
        return None if seconds is None else float(seconds)

    def finish(self):
        if self.error:
            return self.error
        self.proc.stdin.write("done\n")
        self.proc.stdin.flush()
        result = self._read("RESULT ")
        return json.loads(result) if result else self._failure()


def interleaved(systems, rounds, threads, pause=0.5):
    """{name: (code, python)} -> ({name: [seconds per round]}, {name: final RESULT dict}).

    Processes start one after another (each loads and warms up alone); then each round times one
    run of every system in turn, with `pause` seconds between runs so no system's worker threads
    still spin when the next starts.
    """
    servers = {}
    for name, (code, python) in systems.items():
        servers[name] = _Server(PRELUDE + code, threads, python)
        print(f"{name:12s} ready" if not servers[name].error else f"{name:12s} {servers[name].error}", flush=True)
    times = {name: [] for name in systems}
    for r in range(rounds):
        for name, server in servers.items():
            if not server.error:
                time.sleep(pause)
                times[name].append(server.time_once())
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items()
                                                    if t and t[-1] is not None), flush=True)
    return times, {name: server.finish() for name, server in servers.items()}


ORT_PAST = """
import onnxruntime as ort
peer_tokens = []  # the greedy tokens of the last run
def ort_greedy_runner(onnx_path, decode_only=False):
    opts = ort.SessionOptions(); opts.intra_op_num_threads = THREADS; opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
    def run():  # tok/s over all NEW tokens, or over the NEW - 1 after the prompt pass
        past = np.zeros((L, 2, 1, H, 0, D), np.float32)
        x = ids
        peer_tokens.clear()
        t0 = time.perf_counter()
        for step in range(NEW):
            if step == 1:
                t1 = time.perf_counter()
            total = past.shape[4] + x.shape[1]
            logits, past = sess.run(None, {"input_ids": x, "position_ids": np.arange(total - x.shape[1], total)[None],
                                           "attention_mask": np.ones((1, total), np.int64), "past": past})
            x = logits.argmax(-1)[:, None].astype(np.int64)
            peer_tokens.append(int(x[0, 0]))
        end = time.perf_counter()
        return (NEW - 1) / (end - t1) if decode_only else NEW / (end - t0)
    return run
def ort_greedy(onnx_path, repeats=1, decode_only=False):
    run = ort_greedy_runner(onnx_path, decode_only)
    run()  # warm-up
    return max(run() for _ in range(repeats))
"""

EXPORT = """
import torch, transformers
torch.set_num_threads(THREADS)
ckpt = globals().get("CKPT")
model = (transformers.GPT2LMHeadModel.from_pretrained(ckpt) if ckpt else transformers.GPT2LMHeadModel(
    transformers.GPT2Config())).eval()
cfg = model.config
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
path = os.path.join(globals().get("PEER_DIR") or tmp, "gpt2_past.onnx")
auto = torch.export.Dim.AUTO
example = (torch.tensor(ids[:, :4]), torch.arange(4)[None] + 2, torch.ones(1, 6, dtype=torch.long),
           torch.zeros(L, 2, 1, H, 2, D))
torch.onnx.export(WithPast(model), example, path, dynamo=True, input_names=["input_ids", "position_ids",
                  "attention_mask", "past"], output_names=["logits", "present"],
                  dynamic_shapes=({1: auto}, {1: auto}, {1: auto}, {4: auto}), external_data=False)
""" + ORT_PAST
