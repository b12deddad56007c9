#!/usr/bin/env bash
# Creates a venv with transformers 4.57.6's TensorFlow GPT-2 (the last release with TF
# classes) on top of this machine's tensorflow: the reference writer of tf_model.h5
# files for tests, and the "HF TF XLA generate" peer in benchmarks/decode.py.
# Usage: tools/hf_tf_venv.sh [VENV_DIR]   (default ~/.cache/tfgpt2/hf-tf-4.57)
set -euo pipefail
venv="${1:-$HOME/.cache/tfgpt2/hf-tf-4.57}"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import transformers, tf_keras" 2>/dev/null; then
  echo "$venv"; exit 0
fi
python3 -m venv --system-site-packages "$venv"
"$venv/bin/pip" install --quiet "transformers==4.57.6" "tf-keras==2.21.0" >&2
echo "$venv"
