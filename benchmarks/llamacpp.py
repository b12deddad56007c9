"""llama.cpp as a benchmark peer: llama-cpp-python built from source in its own venv, GGUF files from
llama.cpp's own converter (shipped in the llama-cpp-python sdist) for the same checkpoint.

    python benchmarks/llamacpp.py CHECKPOINT OUT_DIR [f32,f16,q8_0,q4_0]   # builds once (~10 min), converts

The venv and the sdist live under ~/.cache/tfgpt2/llamacpp (override: TFGPT2_LLAMACPP_HOME). Q4_0 is
quantized from the F16 file with llama.cpp's own quantizer (llama_model_quantize), the others are written
by the converter. The checkpoint gets the tokenizer files the converter reads (the bundled GPT-2 vocabulary).
"""

import glob
import os
import subprocess
import sys
import tarfile

VERSION = "0.3.36"
HOME = os.environ.get("TFGPT2_LLAMACPP_HOME", os.path.expanduser("~/.cache/tfgpt2/llamacpp"))
PYTHON = os.path.join(HOME, "venv", "bin", "python")
FTYPES = {"q4_0": 2}  # llama.cpp's LLAMA_FTYPE_MOSTLY_Q4_0

# what a benchmark worker runs in the venv: one greedy run of NEW tokens after the PROMPT ids per call
SERVE = """
from llama_cpp import Llama
llm = Llama(model_path=GGUF, n_ctx=PROMPT + NEW + 8, n_threads=THREADS, n_threads_batch=THREADS, n_batch=64,
            verbose=False)
last = {}
def run():
    llm.reset()
    llm.eval(ids[0].tolist())
    tokens = []
    for token in llm.generate([], top_k=1, top_p=1.0, temp=0.0, reset=False):
        tokens.append(int(token))
        if len(tokens) == NEW:
            break
    last["tokens"] = tokens
serve(run)
"""
WORKER = SERVE + 'report(tokens=last["tokens"])\n'

# follows SERVE where the prefill of a 512-token prompt is timed (`long`, `best` from the benchmark)
PREFILL = """
llm = Llama(model_path=GGUF, n_ctx=520, n_threads=THREADS, n_threads_batch=THREADS, n_batch=512, n_ubatch=512,
            verbose=False)
def prefill():
    llm.reset()
    llm.eval(long[0].tolist())
report(tokens=last["tokens"], prefill_512_s=best(prefill))
"""


def build():
    """The venv's python with llama-cpp-python built from source (once)."""
    if not os.path.exists(PYTHON):
        subprocess.run([sys.executable, "-m", "venv", os.path.join(HOME, "venv")], check=True)
        subprocess.run([PYTHON, "-m", "pip", "install", "-q", f"llama-cpp-python=={VERSION}", "numpy"], check=True)
    return PYTHON


def converter():
    """The directory of llama.cpp's convert_hf_to_gguf.py (and its gguf-py) from the sdist (once)."""
    root = os.path.join(HOME, f"llama_cpp_python-{VERSION}", "vendor", "llama.cpp")
    if not os.path.exists(os.path.join(root, "convert_hf_to_gguf.py")):
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        f"llama-cpp-python=={VERSION}", "-d", HOME], check=True)
        with tarfile.open(glob.glob(os.path.join(HOME, f"llama_cpp_python-{VERSION}.tar.gz"))[0]) as sdist:
            members = [m for m in sdist.getmembers() if "/vendor/llama.cpp/" in m.name and (
                "convert_hf_to_gguf" in m.name or "/gguf-py/" in m.name or "/conversion/" in m.name)]
            sdist.extractall(HOME, members=members, filter="data")
    return root


def convert(checkpoint, out_dir, types=("f32", "f16", "q8_0", "q4_0")):
    """{type: path of the .gguf} for the checkpoint (an HF GPT-2 directory)."""
    import json

    from tfgpt2 import GPT2Tokenizer

    python, root = build(), converter()
    GPT2Tokenizer().save_pretrained(checkpoint)  # vocab.json + merges.txt for the converter
    config_path = os.path.join(checkpoint, "config.json")
    with open(config_path) as f:
        config = json.load(f)
    config.setdefault("n_ctx", config["n_positions"])
    with open(config_path, "w") as f:
        json.dump(config, f)
    os.makedirs(out_dir, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.path.join(root, "gguf-py") + os.pathsep + root)
    paths = {}
    written = [k for k in types if k not in FTYPES]
    if set(FTYPES) & set(types) and "f16" not in written:  # quantized from the F16 file
        written.append("f16")
    for kind in written:
        paths[kind] = os.path.join(out_dir, f"gpt2-{kind}.gguf")
        subprocess.run([sys.executable, os.path.join(root, "convert_hf_to_gguf.py"), checkpoint, "--outtype", kind,
                        "--outfile", paths[kind]], check=True, env=env, capture_output=True)
    for kind, ftype in FTYPES.items():
        if kind in types:
            source, paths[kind] = paths["f16"], os.path.join(out_dir, f"gpt2-{kind}.gguf")
            quantize = ("import llama_cpp, sys; p = llama_cpp.llama_model_quantize_default_params(); "
                        f"p.ftype = {ftype}; p.nthread = 2; "
                        "sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), p))")
            subprocess.run([python, "-c", quantize, source, paths[kind]], check=True, capture_output=True)
    return {k: paths[k] for k in types}


if __name__ == "__main__":
    kinds = sys.argv[3].split(",") if len(sys.argv) > 3 else ("f32", "f16", "q8_0", "q4_0")
    for kind, path in convert(sys.argv[1], sys.argv[2], kinds).items():
        print(f"{kind}: {path} {os.path.getsize(path) / 1e6:.1f} MB")
