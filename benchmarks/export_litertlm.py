"""The LiteRT-LM section of benchmarks/export.py: the .litertlm in LiteRT-LM beside tfgpt2's own LiteRT
path and llama.cpp at the same precision.

One saved 124M checkpoint, exported once by `tfgpt2 export --formats tflite,litertlm --quantize int8,int4`
(256 slots, prefill 64) and converted to GGUF by llama.cpp's own converter (benchmarks/llamacpp.py:
Q8_0 beside int8, Q4_0 beside int4). Every system keeps one process alive; each round times one greedy
run of each in turn: the same 32-token text prompt, then 128 new tokens (the prompt pass and 127 cached
steps), batch 1, 2 threads. LiteRT-LM runs through its Python API (litert-lm-api); its own counters
(prefill / decode tok/s of the last run) are printed too, and `litert-lm benchmark` once per file.
tok/s = 128 / the median seconds; ratios are medians of per-round ratios.
"""

import json
import os
import statistics
import subprocess
import sys

import llamacpp
from peers import interleaved, run_system

# the prompt, as text for LiteRT-LM (its API takes text) and as GPT-2 ids for the others
TEXT = ("The list type in Python is a mutable sequence: it holds references to objects, grows and shrinks as "
        "items are appended or removed, and its methods")
COMMON = """
import json, os, sys, time
import numpy as np
NEW, THREADS, TEXT = {new}, {threads}, {text!r}
EXPORT = {export!r}
ids = np.array([{ids}], np.int64)
PROMPT = ids.shape[1]
def report(**kw):
    print("RESULT " + json.dumps(kw))
"""

EXPORT = """
from tfgpt2.export import pipeline
report(**{k: v for k, v in pipeline.export(sys.argv[1], EXPORT, formats=["tflite", "litertlm"],
          quantize=["int8", "int4"], max_seq_len=256, prefill_len=64, log=lambda *_: None).items()
          if k in ("conversion_seconds", "peak_rss_gb")})
"""

LITERT = """
from tfgpt2.export.lite_session import lite_session
session = lite_session(os.path.join(EXPORT, "gpt2_{recipe}.tflite"), THREADS)
last = {{}}
def run():
    logits, tokens = session.prefill(ids[0].astype(np.int32)), []
    while True:
        tokens.append(int(np.argmax(logits)))
        if len(tokens) == NEW:
            break
        logits = session.decode(tokens[-1])
    last["tokens"] = tokens
serve(run)
report(tokens=last["tokens"])
"""

LITERTLM = """
from litert_lm import interfaces
from tfgpt2.export import litertlm_run
lm = litertlm_run.engine(os.path.join(EXPORT, "gpt2_{recipe}.litertlm"), THREADS, benchmark=True)
text = TEXT
assert lm.tokenize(text) == ids[0].tolist(), "LiteRT-LM's tokenizer disagrees with GPT-2's"
last = {{}}
def run():
    with lm.create_session(apply_prompt_template=False, max_output_tokens=NEW, sampler_config=interfaces.SamplerConfig(
            top_k=1, temperature=0.0, seed=0)) as session:
        session.run_prefill([text])
        chunks = ["".join(c.texts) for c in session.run_decode_async()]
        info = session.get_benchmark_info()
    last.update(tokens=len(chunks), prefill_tok_s=info.last_prefill_tokens_per_second,
                decode_tok_s=info.last_decode_tokens_per_second)
serve(run)
report(**last)
"""

SYSTEMS = {  # name: (code, precision)
    "tfgpt2 LiteRT int8": (LITERT.format(recipe="int8"), "int8"),
    "LiteRT-LM int8": (LITERTLM.format(recipe="int8"), "int8"),
    "llama.cpp Q8_0": (None, "int8"),
    "tfgpt2 LiteRT int4": (LITERT.format(recipe="int4"), "int4"),
    "LiteRT-LM int4": (LITERTLM.format(recipe="int4"), "int4"),
    "llama.cpp Q4_0": (None, "int4"),
}


def cli_benchmark(path, threads, prompt, new):
    """The tok/s lines of `litert-lm benchmark FILE` (LiteRT-LM's own CLI, its defaults but the lengths and
    threads), or its error."""
    exe = os.path.join(os.path.dirname(sys.executable), "litert-lm")
    try:
        proc = subprocess.run([exe if os.path.exists(exe) else "litert-lm", "benchmark", path, "--prefill-tokens",
                               str(prompt), "--decode-tokens", str(new), "--backend", "cpu", "--cpu-thread-count",
                               str(threads), "--runs", "3"], capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    lines = [" ".join(line.split()) for line in (proc.stdout + proc.stderr).splitlines()
             if "tokens/s" in line and not line.startswith(("E0000", "W0000", "I0000"))]
    return " | ".join(lines[-4:]) or f"exit {proc.returncode}"


def run(args, checkpoint, work):
    """Prints the LiteRT-LM table; returns {system: median tok/s}."""
    from tfgpt2 import GPT2Tokenizer

    export, ids = os.path.join(work, "litertlm-export"), GPT2Tokenizer().encode(TEXT)
    common = COMMON.format(new=args.new, threads=args.threads, text=TEXT, export=export, ids=ids)
    exported = run_system(common, EXPORT, args.threads, argv=[checkpoint])
    print(f"tfgpt2 export tflite,litertlm int8,int4 {exported}", flush=True)
    ggufs = llamacpp.convert(checkpoint, os.path.join(work, "gguf"), ("q8_0", "q4_0"))
    systems = {}
    for name, (code, _) in SYSTEMS.items():
        if code is None:
            gguf = ggufs["q8_0" if "Q8_0" in name else "q4_0"]
            systems[name] = (common + f"GGUF = {gguf!r}\n" + llamacpp.WORKER, llamacpp.build())
        else:
            systems[name] = (common + code, sys.executable)
    times, results = interleaved(systems, args.rounds, args.threads)
    sizes = {name: os.path.getsize(os.path.join(export, f"gpt2_{p}.{'litertlm' if 'LM' in name else 'tflite'}"))
             for name, (_, p) in SYSTEMS.items() if not name.startswith("llama")}
    sizes.update({"llama.cpp Q8_0": os.path.getsize(ggufs["q8_0"]), "llama.cpp Q4_0": os.path.getsize(ggufs["q4_0"])})
    print(f"\nLiteRT-LM, GPT-2 124M, {args.threads} threads, {len(ids)}-token prompt, {args.new} greedy tokens "
          f"(prompt pass included), median of {args.rounds} interleaved rounds")
    print(f"{'system':20s} {'MB':>7s} {'tok/s':>7s} {'/ tfgpt2 LiteRT':>15s} {'/ llama.cpp':>11s}")
    rates = {}
    for name, (_, precision) in SYSTEMS.items():
        seconds = [t for t in times[name] if t]
        if not seconds:
            print(f"{name:20s} failed: {results[name].get('error')}")
            continue
        rates[name] = args.new / statistics.median(seconds)
        ratios = []
        for peer in (f"tfgpt2 LiteRT {precision}", "llama.cpp " + ("Q8_0" if precision == "int8" else "Q4_0")):
            pairs = [(p, t) for p, t in zip(times[peer], times[name]) if p and t]
            ratios.append(f"{statistics.median(p / t for p, t in pairs):.2f}x" if pairs else "-")
        print(f"{name:20s} {sizes[name] / 1e6:7.1f} {rates[name]:7.1f} {ratios[0]:>15s} {ratios[1]:>11s}")
    for recipe in ("int8", "int4"):
        r = results.get(f"LiteRT-LM {recipe}", {})
        print(f"LiteRT-LM {recipe} own counters (last run): prefill {r.get('prefill_tok_s', float('nan')):.1f} tok/s, "
              f"decode {r.get('decode_tok_s', float('nan')):.1f} tok/s, {r.get('tokens')} tokens")
        print(f"litert-lm benchmark gpt2_{recipe}.litertlm: "
              f"{cli_benchmark(os.path.join(export, f'gpt2_{recipe}.litertlm'), args.threads, len(ids), args.new)}")
    same = json.dumps(results.get("tfgpt2 LiteRT int8", {}).get("tokens")) == json.dumps(
        results.get("llama.cpp Q8_0", {}).get("tokens"))
    print(f"greedy tokens of tfgpt2 LiteRT int8 and llama.cpp Q8_0 (different int8 schemes) equal: {same}")
    return rates
