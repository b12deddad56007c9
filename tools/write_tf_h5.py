"""Writes tests/fixtures/hf_tf_h5/: tiny `tf_model.h5` checkpoints saved by transformers 4.57.6's own
TF GPT-2 port (the last release with TF classes) from a PyTorch GPT-2, with that PyTorch model's
logits (and the port's own) on fixed ids.

tfgpt2 reads such files (`from_pretrained` on a directory with only tf_model.h5); the test compares
its logits with PyTorch's. Run it in an environment with the port (tools/hf_tf_venv.sh makes one):

    $(bash tools/hf_tf_venv.sh)/bin/python tools/write_tf_h5.py
"""

import json
import os
import sys
import tempfile

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # the port runs on tf-keras
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
OUT = os.path.join(ROOT, "tests", "fixtures", "hf_tf_h5")
FORMAT_VERSION = 1
CONFIG = "wide-gelu-inv_idx"  # of tests/helpers.py CONFIGS
SHAPES = {"GPT2LMHeadModel": (2, 6), "GPT2DoubleHeadsModel": (2, 2, 6)}


def main():
    import numpy as np
    import tensorflow as tf
    import torch
    import transformers

    from helpers import CONFIGS, build_hf

    for kind, shape in SHAPES.items():
        model = build_hf(kind, CONFIGS[CONFIG], seed=6)
        target = os.path.join(OUT, kind)
        with tempfile.TemporaryDirectory() as pt_dir:
            model.save_pretrained(pt_dir)
            tf_model = getattr(transformers, "TF" + kind).from_pretrained(pt_dir, from_pt=True)
        tf_model.save_pretrained(target)
        ids = np.random.default_rng(11).integers(0, CONFIGS[CONFIG]["vocab_size"], shape).astype("int32")
        out = tf_model(tf.constant(ids))
        with torch.no_grad():
            ref = model(torch.tensor(ids, dtype=torch.long))
        expected = {"format_version": FORMAT_VERSION, "written_by": "tools/write_tf_h5.py",
                    "transformers": transformers.__version__, "input_ids": ids.tolist(),
                    "pytorch_logits": ref.logits.numpy().tolist(), "tf_port_logits": np.asarray(out.logits).tolist()}
        if kind == "GPT2DoubleHeadsModel":
            expected["pytorch_mc_logits"] = ref.mc_logits.numpy().tolist()
        with open(os.path.join(target, "expected.json"), "w", encoding="utf-8") as f:
            json.dump(expected, f)
        print(target, sorted(os.listdir(target)))


if __name__ == "__main__":
    sys.exit(main())
