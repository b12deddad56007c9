"""Writes tests/fixtures/hf_tf_h5/: tiny `tf_model.h5` checkpoints saved by transformers 4.57.6's own
TF GPT-2 port (the last release with TF classes), with the logits that port computes on them.

tfgpt2 reads such files (`from_pretrained` on a directory with only tf_model.h5); the test compares
its logits with the port's. Run it in an environment with the port (tools/hf_tf_venv.sh makes one):

    $(bash tools/hf_tf_venv.sh)/bin/python tools/write_tf_h5.py
"""

import json
import os
import sys
import tempfile

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # the port runs on tf-keras
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "hf_tf_h5")
FORMAT_VERSION = 1
CONFIG = dict(vocab_size=257, n_positions=64, n_embd=48, n_layer=3, n_head=3, n_inner=80,
              activation_function="gelu", scale_attn_by_inverse_layer_idx=True, bos_token_id=0, eos_token_id=0)
SHAPES = {"GPT2LMHeadModel": (2, 6), "GPT2DoubleHeadsModel": (2, 2, 6)}


def main():
    import numpy as np
    import tensorflow as tf
    import torch
    import transformers

    for kind, shape in SHAPES.items():
        torch.manual_seed(6)
        model = getattr(transformers, kind)(transformers.GPT2Config(**CONFIG)).eval()
        with torch.no_grad():  # non-trivial LayerNorm / bias values so every weight matters
            for name, p in model.named_parameters():
                if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                    p.add_(torch.randn_like(p) * 0.1)
                elif name.endswith("bias"):
                    p.normal_(0, 0.02)
        target = os.path.join(OUT, kind)
        with tempfile.TemporaryDirectory() as pt_dir:
            model.save_pretrained(pt_dir)
            tf_model = getattr(transformers, "TF" + kind).from_pretrained(pt_dir, from_pt=True)
        tf_model.save_pretrained(target)
        ids = np.random.default_rng(11).integers(0, CONFIG["vocab_size"], shape).astype("int32")
        out = tf_model(tf.constant(ids))
        expected = {"format_version": FORMAT_VERSION, "written_by": "tools/write_tf_h5.py",
                    "transformers": transformers.__version__, "input_ids": ids.tolist(),
                    "logits": np.asarray(out.logits).tolist()}
        if kind == "GPT2DoubleHeadsModel":
            expected["mc_logits"] = np.asarray(out.mc_logits).tolist()
        with open(os.path.join(target, "expected.json"), "w", encoding="utf-8") as f:
            json.dump(expected, f)
        print(target, sorted(os.listdir(target)))


if __name__ == "__main__":
    sys.exit(main())
