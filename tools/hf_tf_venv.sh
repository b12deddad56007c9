#!/usr/bin/env bash
# Creates a venv with transformers 4.57.6's TensorFlow GPT-2 (the last release with TF classes):
# the writer of tests/fixtures/hf_tf_h5 (tools/write_tf_h5.py) and the "transformers 4.57 TF XLA
# generate" peer of benchmarks/decode.py. It installs its own tensorflow, torch (CPU) and tf-keras,
# so it works from any interpreter, in a venv or not.
# Usage: tools/hf_tf_venv.sh [VENV_DIR]   (default ~/.cache/tfgpt2/hf-tf-4.57); prints the venv path
set -euo pipefail
venv="${1:-$HOME/.cache/tfgpt2/hf-tf-4.57}"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import transformers, tf_keras, torch" 2>/dev/null; then
  echo "$venv"; exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet "tensorflow==2.21.*" "tf-keras==2.21.0" "torch==2.13.0" "transformers==4.57.6" >&2
echo "$venv"
