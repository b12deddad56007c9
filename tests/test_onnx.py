"""ONNX export: ONNX Runtime against transformers PyTorch, ORT GenAI against model.generate with its own
tokenizer, int8 fidelity on the trained reference model, the base-model graph, model.json artifacts."""

import json
import os

import numpy as np
import pytest

from helpers import CONFIGS, FIXTURES, build_hf, cli, reference_model, reference_tiktoken, torch_run
from tfgpt2 import TFGPT2LMHeadModel
from tfgpt2.export import contract, onnx_export, onnx_run, pipeline, recipes

PROMPT, STEPS = 7, 32  # 7 + 32 positions fit every test config's n_positions


@pytest.fixture(scope="module")
def graphs(hf_checkpoints, tmp_path_factory):
    """{config name: (hf model, checkpoint dir, onnx/fp32 dir)}: what the conversion child writes, in-process
    (converted when first asked for)."""

    class Graphs(dict):
        def __missing__(self, name):
            hf, path = hf_checkpoints[name]
            directory = str(tmp_path_factory.mktemp(f"onnx-{name}"))
            onnx_export.write_recipe(path, recipes.get("fp32"), directory)
            self[name] = (hf, path, directory)
            return self[name]

    return Graphs()


def _ragged_batch(vocab):
    """Three prompts of PROMPT tokens, left-padded by 0, 2 and 5: (ids, mask, HF position_ids)."""
    ids = np.random.default_rng(3).integers(1, vocab, (3, PROMPT))
    mask = np.ones_like(ids)
    for row, pads in enumerate((0, 2, 5)):
        mask[row, :pads] = 0
        ids[row, :pads] = 0
    return ids, mask, np.maximum(np.cumsum(mask, 1) - 1, 0)


@pytest.mark.parametrize("name", [n if n == "small-gelu_new" else pytest.param(n, marks=pytest.mark.slow)
                                  for n in CONFIGS])
def test_fp32_graph_matches_transformers_over_a_ragged_batch_and_cached_steps(graphs, name):
    """The prompt pass and 32 cached greedy steps in ORT vs a full transformers PyTorch pass over the same
    tokens (logits <= 1e-4 on every real token); the greedy tokens are the argmax of transformers' logits
    and (one config, for time) equal tfgpt2's model.generate."""
    hf, path, directory = graphs[name]
    ids, mask, _ = _ragged_batch(hf.config.vocab_size)
    lm = onnx_run.OnnxLM(os.path.join(directory, "model.onnx"))
    tokens, step_logits = lm.greedy(ids, STEPS, mask)  # (3, STEPS), (3, STEPS, V)
    full_ids = np.concatenate([ids, tokens], 1)
    full_mask = np.concatenate([mask, np.ones_like(tokens)], 1)
    positions = np.maximum(np.cumsum(full_mask, 1) - 1, 0)
    ref = torch_run(hf, full_ids, attention_mask=full_mask, position_ids=positions).logits.numpy()
    lm.reset(len(ids))
    prompt_logits = lm.step(ids, mask)
    real = mask > 0
    prompt_diff = np.abs(prompt_logits - ref[:, :PROMPT])[real].max()
    step_diff = np.abs(step_logits - ref[:, PROMPT - 1:-1]).max()
    print(f"{name}: ORT vs transformers max |logit diff| prompt {prompt_diff:.2e}, {STEPS} cached steps "
          f"{step_diff:.2e}")
    assert prompt_diff <= 1e-4 and step_diff <= 1e-4
    np.testing.assert_array_equal(tokens, ref[:, PROMPT - 1:-1].argmax(-1))
    if name != "small-gelu_new":
        return
    model = TFGPT2LMHeadModel.from_pretrained(path)
    keras = model.generate(ids.astype(np.int32), attention_mask=mask.astype(np.int32), max_new_tokens=STEPS,
                           eos_token_id=[]).numpy()[:, PROMPT:]
    np.testing.assert_array_equal(tokens, keras)


def test_graph_contract_names_and_dynamic_dims(graphs):
    """The names and symbolic dims optimum and ORT GenAI use; a model the ONNX checker accepts in full."""
    import onnx

    _, _, directory = graphs["wide-gelu-inv_idx"]
    cfg = CONFIGS["wide-gelu-inv_idx"]
    onnx.checker.check_model(os.path.join(directory, "model.onnx"), full_check=True)
    signature = onnx_run.signature(os.path.join(directory, "model.onnx"))
    head_dim = cfg["n_embd"] // cfg["n_head"]
    expected_inputs = {"input_ids", "attention_mask", "position_ids",
                       *(f"past_key_values.{i}.{kv}" for i in range(cfg["n_layer"]) for kv in ("key", "value"))}
    assert set(signature["inputs"]) == expected_inputs
    assert set(signature["outputs"]) == {"logits", *(f"present.{i}.{kv}" for i in range(cfg["n_layer"])
                                                     for kv in ("key", "value"))}
    assert signature["inputs"]["input_ids"] == {"dtype": "int64", "shape": ["batch_size", "sequence_length"]}
    assert signature["inputs"]["past_key_values.0.key"]["shape"] == ["batch_size", cfg["n_head"],
                                                                     "past_sequence_length", head_dim]
    assert signature["outputs"]["logits"]["shape"] == ["batch_size", "sequence_length", cfg["vocab_size"]]


@pytest.fixture(scope="module")
def full_vocab(tmp_path_factory):
    """A small-width GPT-2 with the real vocabulary (eos 50256) and its onnx/fp32 directory."""
    hf = build_hf("GPT2LMHeadModel", dict(vocab_size=50257, n_positions=64, n_embd=32, n_layer=2, n_head=4))
    path = str(tmp_path_factory.mktemp("full-vocab"))
    hf.config.eos_token_id = hf.config.bos_token_id = 50256
    hf.save_pretrained(path)
    directory = str(tmp_path_factory.mktemp("full-vocab-onnx"))
    onnx_export.write_recipe(path, recipes.get("fp32"), directory)
    return path, directory


TEXTS = ["Hello world", "The quick brown fox jumps over the lazy dog.", "  spaces\tand\nnew lines, émojis 🤗 "
         "and numbers 12345", "<|endoftext|> starts here"]


def test_genai_generates_model_generate_tokens_from_text(full_vocab):
    """ORT GenAI opens the exported directory as it is: its tokenizer gives tiktoken's ids, its greedy search
    the tokens of tfgpt2's model.generate, its decoder the same text."""
    import onnxruntime_genai as og

    path, directory = full_vocab
    genai = og.Model(directory)
    tokenizer, reference = og.Tokenizer(genai), reference_tiktoken()
    model = TFGPT2LMHeadModel.from_pretrained(path)
    for text in TEXTS:
        ids = [int(t) for t in tokenizer.encode(text)]
        assert ids == reference.encode(text, allowed_special="all"), text
        new = onnx_run.genai_greedy(genai, ids, 12)
        keras = model.generate(np.array([ids], np.int32), max_new_tokens=12).numpy()[0, len(ids):].tolist()
        assert new == keras[:len(new)] and len(new) >= 1, text
        assert tokenizer.decode(np.array(new, np.int32)) == reference.decode(new)


def test_int8_graph_stores_the_tied_table_once(graphs, tmp_path):
    """int8 on a small model: one int8 (C, V) table read by the lookup and the head, no float copy; the graph
    runs in ORT close to fp32 (fidelity on a trained model: the slow test below)."""
    import onnx

    hf, path, fp32_dir = graphs["small-gelu_new"]
    onnx_export.write_recipe(path, recipes.get("int8"), str(tmp_path))
    V, C = hf.config.vocab_size, hf.config.n_embd
    graph = onnx.load(str(tmp_path / "model.onnx")).graph
    tables = [i.data_type for i in graph.initializer if sorted(i.dims) == sorted([V, C])]
    assert tables == [onnx.TensorProto.INT8], tables
    assert sum(n.op_type == "MatMulInteger" for n in graph.node) >= 1 + 4 * CONFIGS["small-gelu_new"]["n_layer"]
    ids, mask, _ = _ragged_batch(V)
    fp32, int8 = onnx_run.OnnxLM(os.path.join(fp32_dir, "model.onnx")), onnx_run.OnnxLM(str(tmp_path / "model.onnx"))
    fp32.reset(len(ids))
    int8.reset(len(ids))
    a, b = fp32.step(ids, mask)[mask > 0], int8.step(ids, mask)[mask > 0]
    assert np.abs(a - b).max() <= 0.05 * np.abs(a).max(), np.abs(a - b).max()


@pytest.mark.slow
def test_int8_on_the_trained_reference_model(tmp_path):
    """int8: top-1 agreement >= 97 % and perplexity within +2 % of fp32 Keras; the tied table stored once
    (one int8 (C, V) tensor, no float copy), the file <= 0.30x the fp32 one."""
    import onnx

    model, blocks, _ = reference_model()
    source = os.path.join(FIXTURES, "reference")
    sizes = {r: onnx_export.write_recipe(source, recipes.get(r), str(tmp_path / r))["bytes"] for r in ("fp32", "int8")}
    fidelity = onnx_run.fidelity(model, str(tmp_path / "int8" / "model.onnx"), blocks)
    print(f"ONNX int8 on the reference model: {sizes} bytes, top-1 agreement {100 * fidelity['top1_agreement']:.2f} %, "
          f"perplexity {fidelity['perplexity']:.2f} (fp32 Keras {fidelity['keras_perplexity']:.2f})")
    assert fidelity["top1_agreement"] >= 0.97, fidelity
    assert fidelity["perplexity"] <= 1.02 * fidelity["keras_perplexity"], fidelity
    assert sizes["int8"] <= 0.30 * sizes["fp32"], sizes
    onnx.checker.check_model(str(tmp_path / "int8" / "model.onnx"), full_check=True)
    V, C = model.config.vocab_size, model.config.n_embd
    tables = [(i.name, i.data_type) for i in onnx.load(str(tmp_path / "int8" / "model.onnx")).graph.initializer
              if sorted(i.dims) == sorted([V, C])]
    assert [t for _, t in tables] == [onnx.TensorProto.INT8], tables


@pytest.fixture(scope="module")
def base_export(tmp_path_factory):
    """`tfgpt2 export --formats onnx` of a transformers GPT2Model checkpoint (fp32)."""
    hf = build_hf("GPT2Model", CONFIGS["small-gelu_new"])
    path = str(tmp_path_factory.mktemp("base-ckpt"))
    hf.save_pretrained(path)
    out = tmp_path_factory.mktemp("base-export") / "e"
    pipeline.export(path, str(out), formats=["onnx"], quantize=["fp32"], log=lambda *_: None)
    return hf, out


def test_base_model_graph_gives_last_hidden_state(base_export):
    """A GPT2Model source exports the seed's graph: last_hidden_state (== transformers) and present.*,
    no logits and no genai_config.json (ORT GenAI needs logits); model.json says so."""
    hf, out = base_export
    written = json.loads((out / "model.json").read_text())
    assert written["onnx"]["onnx/fp32"]["graph"] == "base" and not written["onnx"]["onnx/fp32"]["genai"]
    assert not os.path.exists(out / "onnx" / "fp32" / "genai_config.json")
    ids, mask, positions = _ragged_batch(hf.config.vocab_size)
    lm = onnx_run.OnnxLM(str(out / "onnx" / "fp32" / "model.onnx"))
    assert lm.head == "last_hidden_state"
    lm.reset(len(ids))
    hidden = lm.step(ids, mask)
    step = lm.step(np.full((len(ids), 1), 5))
    full = torch_run(hf, np.concatenate([ids, np.full((len(ids), 1), 5)], 1),
                     attention_mask=np.concatenate([mask, np.ones((len(ids), 1), int)], 1),
                     position_ids=np.concatenate([positions, positions[:, -1:] + 1], 1)).last_hidden_state.numpy()
    assert np.abs(hidden - full[:, :PROMPT])[mask > 0].max() <= 1e-4
    assert np.abs(step[:, 0] - full[:, -1]).max() <= 1e-4


def test_model_json_artifacts_cover_every_file_and_verify_runs_ort(base_export, capsys):
    _, out = base_export
    written = json.loads((out / "model.json").read_text())
    files = {os.path.relpath(os.path.join(r, n), out) for r, _, names in os.walk(out) for n in names}
    listed = {a["path"]: a for a in written["artifacts"]}
    assert set(listed) == files - {"model.json", "report.json", "report.md"}
    for rel, entry in listed.items():
        assert entry["bytes"] == os.path.getsize(out / rel) and entry["sha256"] == contract.sha256(str(out / rel))
    graph = listed["onnx/fp32/model.onnx"]
    assert graph["format"] == "onnx" and graph["recipe"] == "fp32" and graph["graph"] == "base"
    assert graph["signatures"]["model"]["outputs"]["last_hidden_state"]["dtype"] == "float32"
    assert listed["onnx/fp32/tokenizer.json"]["format"] == "onnx"
    assert written["models"] == {}  # no .tflite: the Android app's list is empty
    code, stdout, _ = cli(capsys, "verify", str(out))
    assert code == 0 and "onnx/fp32/model.onnx: inputs/outputs match model.json, ONNX Runtime ran" in stdout


@pytest.mark.parametrize("args, match", [
    (["--formats", "onnx", "--quantize", "int4"], "not available for onnx"),
    (["--formats", "onnx", "--quantize", "tflite:int8"], "not among the export formats"),
    (["--formats", "tflite", "--onnx-graph", "base"], "add onnx"),
    (["--formats", "onnx,coreml"], "unknown export format"),
])
def test_bad_onnx_targets_one_line_nothing_written(hf_checkpoints, tmp_path, capsys, args, match):
    _, path = hf_checkpoints["small-gelu_new"]
    code, _, err = cli(capsys, "export", "--model", path, "--out", tmp_path / "e", *args)
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1, err
    assert os.listdir(tmp_path) == []


def test_recipes_per_format():
    assert recipes.plan(["saved_model", "tflite", "onnx"], ["fp32", "tflite:int4", "onnx:int8"]) == {
        "saved_model": ["fp32"], "tflite": ["fp32", "int4"], "onnx": ["fp32", "int8"]}
    assert recipes.plan(["saved_model"], ["saved_model:fp32"]) == {"saved_model": ["fp32"]}
    # the SavedModel keeps its fp32 recipe; a quantized one only when named for it
    assert recipes.plan(["saved_model", "tflite"], ["int8"]) == {"saved_model": ["fp32"], "tflite": ["int8"]}
    assert recipes.plan(["saved_model", "tflite"], ["saved_model:int4", "int8"]) == {
        "saved_model": ["fp32", "int4"], "tflite": ["int8"]}
    assert recipes.plan(["saved_model", "tflite"]) == {"saved_model": ["fp32"], "tflite": ["fp32", "int8"]}
    for bad in (["int8"], ["saved_model:fp16"], ["tflite:int8"]):
        with pytest.raises(ValueError, match="saved_model|not among|not available"):
            recipes.plan(["saved_model"], bad)
