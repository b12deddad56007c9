"""Running an exported ONNX graph in ONNX Runtime: greedy decoding with the past, logits, its contract."""

import time

import numpy as np


class OnnxLM:
    """An ONNX Runtime session on a tfgpt2 ONNX graph; `step` runs new tokens over the past it keeps."""

    def __init__(self, path, threads=2):
        from tfgpt2.export.onnx_export import session

        self.session = session(path, threads)
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.n_layer = sum(1 for n in inputs if n.startswith("past_key_values.") and n.endswith(".key"))
        _, self.n_head, _, self.head_dim = inputs["past_key_values.0.key"].shape
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.head = "logits" if "logits" in self.output_names else "last_hidden_state"

    def reset(self, batch=1):
        self.past = {f"past_key_values.{i}.{kv}": np.zeros((batch, self.n_head, 0, self.head_dim), np.float32)
                     for i in range(self.n_layer) for kv in ("key", "value")}
        self.mask = np.zeros((batch, 0), np.int64)

    def step(self, ids, mask=None):
        """ids (B, T) after the past; mask (B, T) 1 = real token (default all). Returns logits (B, T, V)."""
        ids = np.asarray(ids, np.int64)
        mask = np.ones_like(ids) if mask is None else np.asarray(mask, np.int64)
        self.mask = np.concatenate([self.mask, mask], 1)
        positions = np.maximum(np.cumsum(self.mask, 1) - 1, 0)[:, -ids.shape[1]:]  # HF's positions for left pads
        out = dict(zip(self.output_names, self.session.run(None, {
            "input_ids": ids, "attention_mask": self.mask, "position_ids": positions, **self.past})))
        self.past = {f"past_key_values.{i}.{kv}": out[f"present.{i}.{kv}"]
                     for i in range(self.n_layer) for kv in ("key", "value")}
        return out[self.head]

    def greedy(self, prompt, new_tokens, mask=None):
        """(tokens (B, new_tokens), logits (B, new_tokens, V)): greedy decoding after `prompt` (B, T)."""
        self.reset(len(prompt))
        logits = self.step(prompt, mask)[:, -1]
        tokens, rows = [], []
        for _ in range(new_tokens):
            rows.append(logits)
            tokens.append(logits.argmax(-1))
            if len(tokens) < new_tokens:
                logits = self.step(tokens[-1][:, None])[:, -1]
        return np.stack(tokens, 1), np.stack(rows, 1)


def genai_greedy(directory, prompt, new_tokens):
    """ORT GenAI on an exported ONNX directory: the greedy continuation (new ids) of `prompt` (list of ids)."""
    import onnxruntime_genai as og

    model = og.Model(directory)
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt) + new_tokens, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(np.asarray([prompt], np.int32))
    while not generator.is_done():
        generator.generate_next_token()
    return [int(t) for t in generator.get_sequence(0)[len(prompt):]]


def signature(path):
    """Inputs and outputs of the graph: name -> dtype and shape (symbolic dims by name)."""
    import onnx

    model = onnx.load(path, load_external_data=False)

    def entry(value):
        t = value.type.tensor_type
        return {"dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name,
                "shape": [d.dim_param or d.dim_value for d in t.shape.dim]}

    return {"inputs": {v.name: entry(v) for v in model.graph.input},
            "outputs": {v.name: entry(v) for v in model.graph.output}}


def decode_speed(path, prompt_len=32, steps=32, threads=2):
    """Greedy decode tokens/s after a prompt_len-token prompt (the prompt pass not timed)."""
    lm = OnnxLM(path, threads)
    lm.reset()
    logits = lm.step(np.ones((1, prompt_len), np.int64))[:, -1]
    start = time.perf_counter()
    for _ in range(steps):
        logits = lm.step(logits.argmax(-1)[:, None])[:, -1]
    return steps / (time.perf_counter() - start)


def fidelity(model, path, blocks):
    """max |logit diff| vs Keras, top-1 agreement and perplexity over teacher-forced `blocks` (N, T)."""
    from tfgpt2.export.verify import nll

    lm = OnnxLM(path)
    worst, agree, total, nll_onnx, nll_keras = 0.0, 0, 0, 0.0, 0.0
    for block in np.asarray(blocks, np.int32):
        lm.reset()
        ours = lm.step(block[None])[0, :-1]  # (T - 1, V)
        ref = model(block[None]).logits.numpy()[0, :-1]
        worst = max(worst, float(np.abs(ours - ref).max()))
        agree += int((ours.argmax(-1) == ref.argmax(-1)).sum())
        total += len(block) - 1
        nll_onnx += nll(ours, block[1:])
        nll_keras += nll(ref, block[1:])
    return {"max_abs_logit_diff": worst, "top1_agreement": agree / total,
            "perplexity": float(np.exp(nll_onnx / total)), "keras_perplexity": float(np.exp(nll_keras / total))}
