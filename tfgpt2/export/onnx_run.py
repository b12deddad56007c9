"""Running an exported ONNX graph in ONNX Runtime: greedy decoding with the past, logits, its contract."""

import os
import time

import numpy as np


class OnnxLM:
    """An ONNX Runtime session on a tfgpt2 ONNX graph; `step` runs new tokens over the past it keeps."""

    def __init__(self, path, threads=2):
        self.session = session(path, threads)
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.n_layer = sum(1 for n in inputs if n.startswith("past_key_values.") and n.endswith(".key"))
        _, self.n_head, _, self.head_dim = inputs["past_key_values.0.key"].shape
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.head = "logits" if "logits" in self.output_names else "last_hidden_state"

    def reset(self, batch=1):
        from onnxruntime import OrtValue

        empty = OrtValue.ortvalue_from_numpy(np.zeros((batch, self.n_head, 0, self.head_dim), np.float32))
        self.past = {f"past_key_values.{i}.{kv}": empty for i in range(self.n_layer) for kv in ("key", "value")}
        self.mask = np.zeros((batch, 0), np.int64)

    def step(self, ids, mask=None):
        """ids (B, T) after the past; mask (B, T) 1 = real token (default all). Returns logits (B, T, V)."""
        ids = np.asarray(ids, np.int64)
        mask = np.ones_like(ids) if mask is None else np.asarray(mask, np.int64)
        self.mask = np.concatenate([self.mask, mask], 1)
        positions = np.maximum(np.cumsum(self.mask, 1) - 1, 0)[:, -ids.shape[1]:]  # HF's positions for left pads
        from onnxruntime import OrtValue

        feeds = {name: OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value)) for name, value in
                 (("input_ids", ids), ("attention_mask", self.mask), ("position_ids", positions))}
        # the presents stay ORT tensors and are fed back as they are: no copy of the cache per step
        out = dict(zip(self.output_names, self.session.run_with_ort_values(self.output_names, {**feeds, **self.past})))
        self.past = {f"past_key_values.{i}.{kv}": out[f"present.{i}.{kv}"]
                     for i in range(self.n_layer) for kv in ("key", "value")}
        return out[self.head].numpy()

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


def genai_greedy(model, prompt, new_tokens):
    """ORT GenAI on an exported ONNX directory (a path, or an `og.Model` of one): the greedy continuation
    (new ids) of `prompt` (list of ids), at most `new_tokens` (fewer when it stops on eos)."""
    import onnxruntime_genai as og

    model = og.Model(model) if isinstance(model, str) else model
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
    from tfgpt2.export.fidelity import compare

    lm = OnnxLM(path)

    def logits(block):
        lm.reset()
        return lm.step(block[None])[0, :-1]  # (T - 1, V)

    return compare((logits(block), model(block[None]).logits.numpy()[0, :-1], block[1:])
                   for block in np.asarray(blocks, np.int32))


def session(path, threads=2):
    """An ONNX Runtime CPU session on `path` (ValueError naming the file when ORT refuses it)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail / InvalidGraph / ... types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        first = first.split(" failed:", 1)[-1].strip()  # drop ORT's "[...] Load model from PATH failed:"
        raise ValueError(f"ONNX Runtime cannot load {os.path.basename(path)}: {first}") from None
