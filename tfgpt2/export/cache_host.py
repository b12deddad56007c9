"""The caller's side of the TFLite cache contract (export/tflite.py), in numpy only."""

import numpy as np


class CacheHost:
    """The caller's side of the contract: builds inputs, keeps the cache, writes new entries.

    `run_prefill(**inputs)` / `run_decode(**inputs)` return dicts of arrays (a LiteRT signature
    runner, or the tf.functions above). The Kotlin app's LiteRtCausalLm does the same.
    """

    def __init__(self, run_prefill, run_decode, n_layer, max_seq_len, prefill_len):
        self.run_prefill, self.run_decode = run_prefill, run_decode
        self.n_layer, self.max_seq_len, self.prefill_len = n_layer, max_seq_len, prefill_len
        self.slot = None

    @property
    def capacity_left(self):
        return 0 if self.slot is None else self.max_seq_len - self.slot

    def prefill_inputs(self, prompt):
        P = self.prefill_len
        if not 0 < len(prompt) <= P:
            raise ValueError(f"prefill takes 1..{P} ids, got {len(prompt)}; decode the rest one by one")
        ids, mask = np.zeros((1, P), np.int32), np.zeros((1, P), np.int32)
        ids[0, P - len(prompt):], mask[0, P - len(prompt):] = prompt, 1
        return {"input_ids": ids, "attention_mask": mask}

    def prefill(self, prompt):
        out = self.run_prefill(**self.prefill_inputs(prompt))
        self.keep_cache(out)
        self.slot = self.prefill_len
        return np.array(out["logits"][0])

    def keep_cache(self, out):
        """Holds prefill's cache outputs (own copies here; LiteSession copies into the interpreter)."""
        self.mask = np.array(out["cache_mask"], np.int32)
        self.k = [np.array(out[f"k_{i}"]) for i in range(self.n_layer)]
        self.vt = [np.array(out[f"vt_{i}"]) for i in range(self.n_layer)]

    def decode_inputs(self, token):
        if self.capacity_left <= 0:
            raise ValueError(f"the KV cache is full ({self.max_seq_len} slots); export with a larger --max-seq-len")
        inputs = {"token_id": np.array([token], np.int32), "cache_mask": self.mask}
        inputs.update({f"k_{i}": k for i, k in enumerate(self.k)})
        inputs.update({f"vt_{i}": vt for i, vt in enumerate(self.vt)})
        return inputs

    def decode(self, token):
        out = self.run_decode(**self.decode_inputs(token))
        new_k, new_v = np.asarray(out["new_k"]), np.asarray(out["new_v"])  # (L, nh, hs)
        for i in range(self.n_layer):
            self.k[i][0, :, self.slot, :] = new_k[i]
            self.vt[i][0, :, :, self.slot] = new_v[i]
        self.mask[0, self.slot] = 1
        self.slot += 1
        return np.array(out["logits"][0])  # a copy: a runner may reuse its output buffer
