"""The ONNX section of benchmarks/export.py: tfgpt2's ONNX recipes against transformers' own ONNX export.

One saved 124M checkpoint. tfgpt2 rows convert it the way `tfgpt2 export --formats onnx` does (a
conversion child per recipe; "conv. RSS" = the child's peak + the row's own RSS). The peer is the same
checkpoint exported by `torch.onnx.export(dynamo=True)` from transformers (a GPT-2 with past; int8 =
ORT's quantize_dynamic after quant_pre_process). Then every system keeps one process alive and times
one greedy run (the prompt pass + NEW - 1 cached steps, batch 1) in turn, round after round
(peers.interleaved): ORT on each graph, and ORT GenAI on tfgpt2's directories. tok/s = NEW / seconds,
the median over rounds; "/ transformers" is the median of the per-round ratios to transformers' graph
at the same precision.
"""

import json
import statistics
import sys

from peers import EXPORT, ORT_PAST, interleaved, run_system

COMMON = """
import json, os, sys, time
import numpy as np
NEW, PROMPT, THREADS = {new}, {prompt}, {threads}
ids = np.random.default_rng(0).integers(0, 50257, (1, PROMPT)).astype("int64")
CKPT, WORK = {ckpt!r}, {work!r}
PEER_DIR = os.path.join(WORK, "transformers")
def report(**kw):
    print("RESULT " + json.dumps(kw))
"""

CONVERT = """
from tfgpt2.export import worker
r = worker.run_child("onnx", CKPT, "{recipe}", os.path.join(WORK, "{recipe}"), "lm")
report(bytes=r["bytes"], convert_s=r["seconds"], child_peak_rss_gb=r["peak_rss_gb"],
       convert_peak_rss_gb=r["tree_peak_rss_gb"])
"""

PEER_EXPORT = """
os.makedirs(PEER_DIR, exist_ok=True)
t0 = time.time()
""" + EXPORT + """
seconds = time.time() - t0
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.shape_inference import quant_pre_process
pre, q8 = os.path.join(PEER_DIR, "pre.onnx"), os.path.join(PEER_DIR, "int8.onnx")
quant_pre_process(path, pre, skip_symbolic_shape=True)
quantize_dynamic(pre, q8, weight_type=QuantType.QInt8)
os.rename(path, os.path.join(PEER_DIR, "fp32.onnx"))
report(fp32_bytes=os.path.getsize(os.path.join(PEER_DIR, "fp32.onnx")), int8_bytes=os.path.getsize(q8),
       export_s=seconds)
"""

TFGPT2_ORT = """
from tfgpt2.export.onnx_run import OnnxLM
lm = OnnxLM(os.path.join(WORK, "{recipe}", "model.onnx"), THREADS)
last = {{}}
def run():
    last["tokens"] = lm.greedy(ids, NEW)[0][0].tolist()
serve(run)
report(tokens=last["tokens"])
"""

PEER_ORT = """
cfg = json.load(open(os.path.join(CKPT, "config.json")))
L, H, D = cfg["n_layer"], cfg["n_head"], cfg["n_embd"] // cfg["n_head"]
""" + ORT_PAST + """
serve(ort_greedy_runner(os.path.join(PEER_DIR, "{recipe}.onnx")))
report(tokens=peer_tokens)
"""

GENAI = """
import shutil
import onnxruntime_genai as og
# the exported directory with the benchmark's thread count in its session options
src, directory = os.path.join(WORK, "{recipe}"), os.path.join(WORK, "genai-{recipe}")
os.makedirs(directory, exist_ok=True)
for name in os.listdir(src):
    if not os.path.exists(os.path.join(directory, name)):
        os.symlink(os.path.join(src, name), os.path.join(directory, name))
config = json.load(open(os.path.join(src, "genai_config.json")))
config["model"]["decoder"]["session_options"].update(intra_op_num_threads=THREADS, inter_op_num_threads=1)
os.remove(os.path.join(directory, "genai_config.json"))
json.dump(config, open(os.path.join(directory, "genai_config.json"), "w"))
model = og.Model(directory)
last = {{}}
def run():
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=PROMPT + NEW, min_length=PROMPT + NEW, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(ids.astype(np.int32))
    while not generator.is_done():
        generator.generate_next_token()
    last["tokens"] = [int(t) for t in generator.get_sequence(0)[PROMPT:]]
serve(run)
report(tokens=last["tokens"])
"""

SYSTEMS = {  # name: (code, precision)
    "tfgpt2 onnx/fp32": (TFGPT2_ORT.format(recipe="fp32"), "fp32"),
    "tfgpt2 onnx/int8": (TFGPT2_ORT.format(recipe="int8"), "int8"),
    "transformers fp32": (PEER_ORT.replace("{recipe}", "fp32"), "fp32"),
    "transformers int8": (PEER_ORT.replace("{recipe}", "int8"), "int8"),
    "ORT GenAI onnx/fp32": (GENAI.format(recipe="fp32"), "fp32"),
    "ORT GenAI onnx/int8": (GENAI.format(recipe="int8"), "int8"),
}


def run(args, checkpoint, work):
    """Prints the ONNX table; returns {system: median tok/s}."""
    common = COMMON.format(new=args.new, prompt=args.prompt, threads=args.threads, ckpt=checkpoint, work=work)
    converted = {r: run_system(common, CONVERT.replace("{recipe}", r), args.threads) for r in ("fp32", "int8")}
    for recipe, result in converted.items():
        print(f"tfgpt2 onnx/{recipe} {result}", flush=True)
    peer = run_system(common, PEER_EXPORT, args.threads)
    print(f"transformers ONNX export {peer}", flush=True)
    if any("error" in r for r in (*converted.values(), peer)):
        sys.exit("an ONNX export failed; see above")
    systems = {name: (common + code, sys.executable) for name, (code, _) in SYSTEMS.items()}
    times, results = interleaved(systems, args.rounds, args.threads)
    rates = {}
    print(f"\nONNX Runtime, GPT-2 124M, {args.threads} threads, {args.prompt}-token prompt, {args.new} greedy tokens "
          f"(prompt pass included), median of {args.rounds} interleaved rounds")
    print(f"{'system':22s} {'MB':>7s} {'x fp32':>7s} {'convert s':>9s} {'conv. RSS GB':>12s} {'tok/s':>7s} "
          f"{'/ transformers':>14s}")
    for name, (_, precision) in SYSTEMS.items():
        seconds = [t for t in times[name] if t]
        if not seconds:
            print(f"{name:22s} failed: {results[name].get('error')}")
            continue
        rates[name] = args.new / statistics.median(seconds)
        peer_times = times[f"transformers {precision}"]
        ratio = statistics.median(p / t for p, t in zip(peer_times, times[name]) if p and t)
        if name.startswith("tfgpt2"):
            c = converted[precision]
            size = (f"{c['bytes'] / 1e6:7.1f} {c['bytes'] / converted['fp32']['bytes']:7.3f} {c['convert_s']:9.0f} "
                    f"{c['convert_peak_rss_gb']:12.2f}")
        elif name.startswith("transformers"):
            b, seconds = peer[f"{precision}_bytes"], peer["export_s"] if precision == "fp32" else 0
            size = f"{b / 1e6:7.1f} {b / peer['fp32_bytes']:7.3f} {seconds:9.0f} {'':12s}"
        else:
            size = f"{'(same files as tfgpt2 onnx/' + precision + ')':>38s}"
        print(f"{name:22s} {size} {rates[name]:7.1f} {ratio:13.2f}x")
    tokens = {name: json.dumps(r.get("tokens")) for name, r in results.items()}
    for precision in ("fp32", "int8"):
        same = {n for n in SYSTEMS if SYSTEMS[n][1] == precision and tokens[n] == tokens[f"tfgpt2 onnx/{precision}"]}
        print(f"{precision}: greedy tokens equal to tfgpt2 onnx/{precision}: {', '.join(sorted(same))}")
    return rates
