"""`tfgpt2 export`: SavedModel, .tflite and ONNX per recipe, tokenizer, model.json, report, atomically.

    DIR/saved_model/1/        TF Serving base path = DIR/saved_model
    DIR/saved_model_<recipe>/1/  with saved_model:int8 / int4: the model after model.quantize(recipe)
    DIR/gpt2_<recipe>.tflite  prefill/decode signatures, builtin ops only
    DIR/onnx/<recipe>/        model.onnx, genai_config.json, tokenizer.json (ORT, ORT GenAI)
    DIR/gpt2_<recipe>.litertlm LiteRT-LM: prefill_<T>/decode, the KV cache written in the graph
    DIR/tokenizer/            vocab.json, merges.txt
    DIR/model.json            the contract apps and `tfgpt2 verify` read
    DIR/report.md, report.json
Everything is written into a staging directory beside DIR and renamed to DIR at the end (staging.py).
"""

import os
import resource
import shutil
import tempfile
import time

import numpy as np

from tfgpt2.export import contract, recipes, worker
from tfgpt2.export.source import is_base_model, source_config
from tfgpt2.export.staging import STAGING, recover, replace, replaceable  # noqa: F401 (STAGING: callers)

DEFAULT_MAX_SEQ_LEN, DEFAULT_PREFILL_LEN = 256, 64
FORMATS = ("saved_model", "tflite", "onnx", "litertlm")  # what an export can hold (`formats=`, `--formats`)
DEFAULT_FORMATS = ("saved_model", "tflite")


def default_lengths(config, max_seq_len=None, prefill_len=None):
    """(max_seq_len, prefill_len): what was given, else 256 / 64 cut to fit the model's n_positions."""
    if max_seq_len is None:
        max_seq_len = min(DEFAULT_MAX_SEQ_LEN, config.n_positions)
    if prefill_len is None:
        prefill_len = max(1, min(DEFAULT_PREFILL_LEN, max_seq_len // 4))
    return max_seq_len, prefill_len


def check_formats(formats, text_signature=False):
    """The formats as a list; ValueError naming the fix for an unknown one or a contradiction."""
    formats = list(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"unknown export format {', '.join(map(repr, unknown)) or '(none)'}; choose from "
                         f"{', '.join(FORMATS)}.")
    if text_signature and "saved_model" not in formats:
        raise ValueError("--text-signature writes a SavedModel: add saved_model to --formats.")
    return formats


def check_targets(config, out, plan, overwrite, max_seq_len, prefill_len, calibration=None):
    """ValueError / FileExistsError / PermissionError / ImportError naming the fix, before any work."""
    for fmt, names in plan.items():
        if not names:
            raise ValueError(f"no {fmt} recipe given; choose from "
                             f"{', '.join(r.name for r in recipes.RECIPES.values() if fmt in r.formats)}.")
    if "onnx" in plan:
        from tfgpt2.export import onnx_export

        onnx_export.check_installed()
    if "litertlm" in plan:
        from tfgpt2.export import litertlm

        litertlm.check_installed()
    if any(recipes.get(q).optimize == "calibrated" for q in plan.get("tflite", [])):
        if calibration is None or len(calibration) == 0:
            raise ValueError("int8-full needs representative data: pass --calibration-text FILE_OR_DIR "
                             "(calibration=(N, T) token ids in Python)")
        if np.asarray(calibration).shape[-1] < prefill_len + 1:
            raise ValueError(f"calibration blocks must hold at least prefill_len + 1 = {prefill_len + 1} tokens")
    if os.path.exists(out) and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it, or choose another --out.")
    if os.path.exists(out) and not replaceable(out):
        raise FileExistsError(f"{out} is not a tfgpt2 export (no model.json) and not empty; --overwrite only "
                              "replaces an export: choose a new or empty --out.")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise PermissionError(f"cannot write into {parent}; choose an --out in a writable directory.")
    n = config.n_positions
    if not 0 < prefill_len < max_seq_len <= n:
        raise ValueError(f"need 0 < prefill_len ({prefill_len}) < max_seq_len ({max_seq_len}) <= the model's "
                         f"n_positions ({n}); lower --max-seq-len or --prefill-len.")


def export(src, out, quantize=None, overwrite=False, max_seq_len=None, prefill_len=None,
           held_out=None, calibration=None, text_signature=False, log=print, formats=DEFAULT_FORMATS,
           onnx_graph=None):
    """Runs every stage; returns the report dict.

    `src`: HF dir/hub id, `.keras` file or a model. Before this process loads the model, child
    processes write the SavedModels the TFLite converter reads, convert each .tflite, .litertlm and ONNX
    recipe (`tfgpt2/export/worker.py`), so no process holds the model and a converter at once.
    `formats`: any of FORMATS. `quantize`: recipes for the tflite, onnx and litertlm formats, each entry
    a recipe for each of them or `format:recipe` (recipes.plan); None: each format's defaults.
    `onnx_graph`: "lm" (logits) or "base" (last_hidden_state); default "base" when the source is a base
    model (TFGPT2Model / GPT2Model).
    `held_out`: (N, T) int ids for fidelity numbers; `calibration`: (N, T) ids of text for int8-full;
    `text_signature`: also write DIR/saved_model_text/1 with `generate_text` (needs TF Text ops).
    `max_seq_len` / `prefill_len` default from the model (default_lengths).
    """
    formats = check_formats(formats, text_signature)
    plan = recipes.plan(formats, None if quantize is None else list(quantize))
    config = source_config(src)
    from tfgpt2.export.onnx_export import GRAPHS

    graph = onnx_graph or ("base" if is_base_model(src) else "lm")
    if graph not in GRAPHS:
        raise ValueError(f"onnx_graph={graph!r}: choose 'lm' (logits) or 'base' (last_hidden_state).")
    max_seq_len, prefill_len = default_lengths(config, max_seq_len, prefill_len)
    out = os.path.abspath(out)
    recover(out)
    check_targets(config, out, plan, overwrite, max_seq_len, prefill_len, calibration)
    tflite_recipes, onnx_recipes, lm_recipes = (plan.get(f, []) for f in ("tflite", "onnx", "litertlm"))
    tmp = tempfile.mkdtemp(prefix=f"{STAGING}{os.getpid()}-", dir=os.path.dirname(out))
    scratch = os.path.join(tmp, ".scratch")  # inputs for the child processes; removed before hashing
    start = time.time()
    try:
        saved_recipes = plan.get("saved_model", [])
        stages = 1 + len(tflite_recipes) + len(onnx_recipes) + len(lm_recipes) + len(saved_recipes)
        step, files, tree_peaks = iter(range(1, stages + 1)), {}, []
        os.makedirs(scratch)
        source = src
        if hasattr(src, "config"):  # the children load the model from disk
            source = os.path.join(scratch, "model")
            src.save_pretrained(source)
        calibration_path = None
        if any(recipes.get(q).optimize == "calibrated" for q in tflite_recipes):
            calibration_path = os.path.join(scratch, "calibration.npy")
            np.save(calibration_path, np.asarray(calibration, np.int32))
        archives = os.path.join(scratch, "archives")
        kinds = recipes.archive_kinds(tflite_recipes) + recipes.archive_kinds(lm_recipes, "litertlm")
        if kinds:
            log("       the converter's SavedModels (child process)")
            tree_peaks.append(worker.run_child("archive", source, archives, max_seq_len, prefill_len,
                                               *kinds)["tree_peak_rss_gb"])
        for recipe in tflite_recipes:
            log(f"[{next(step)}/{stages}] TFLite {recipe} (converted in a child process)")
            name = f"gpt2_{recipe}.tflite"
            result = worker.convert_in_child(recipe, archives, source, os.path.join(tmp, name), max_seq_len,
                                             prefill_len, calibration_path)
            tree_peaks.append(result.pop("tree_peak_rss_gb"))
            files[name] = {"format": "tflite", "recipe": recipe, **result}
        for recipe in lm_recipes:
            log(f"[{next(step)}/{stages}] LiteRT-LM {recipe} (converted in a child process)")
            name = f"gpt2_{recipe}.litertlm"
            result = worker.convert_in_child(recipe, archives, source, os.path.join(tmp, name), max_seq_len,
                                             prefill_len, layout="litertlm")
            tree_peaks.append(result.pop("tree_peak_rss_gb"))
            files[name] = {"format": "litertlm", "recipe": recipe, **result}
        for recipe in onnx_recipes:
            log(f"[{next(step)}/{stages}] ONNX {recipe}, {graph} graph (converted in a child process)")
            name = f"onnx/{recipe}"
            result = worker.run_child("onnx", source, recipe, os.path.join(tmp, name), graph)
            tree_peaks.append(result.pop("tree_peak_rss_gb"))
            files[name] = {"format": "onnx", "recipe": recipe, "graph": graph, **result}
        for recipe in saved_recipes:
            log(f"[{next(step)}/{stages}] SavedModel {recipe} for TF Serving (written in a child process)")
            name = recipes.saved_model_dir(recipe)
            result = worker.run_child("saved_model", source, recipe, os.path.join(tmp, name, "1"))
            tree_peaks.append(result.pop("tree_peak_rss_gb"))
            files[name] = {"format": "saved_model", "recipe": recipe, **result}
        # TensorFlow enters this process only now, after the children are done; the model itself only
        # when something here reads it (the text signature, fidelity against held-out text)
        from tfgpt2 import GPT2Tokenizer
        from tfgpt2.export import report as export_report
        from tfgpt2.export.source import load_model

        loaded = [src] if hasattr(src, "config") else []

        def reference():
            if not loaded:
                loaded.append(load_model(source))
            return loaded[0]

        if text_signature:
            from tfgpt2.export import text_serving

            log(f"       SavedModel with generate_text (text in/out; needs TF Text ops: "
                f"{', '.join(text_serving.REQUIRED_OPS)})")
            text_serving.build(reference(), os.path.join(tmp, "saved_model_text", "1"))
        log(f"[{next(step)}/{stages}] tokenizer, model.json, verification")
        GPT2Tokenizer().save_pretrained(os.path.join(tmp, "tokenizer"))
        for name, entry in files.items():
            measure(config, reference, os.path.join(tmp, name), entry, held_out, prefill_len)
            if "runtime_check" in entry:
                log(f"note: {name}: {entry['runtime_check']}")
        shutil.rmtree(scratch)
        parent_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        report = {"conversion_seconds": time.time() - start, "peak_rss_gb": max([parent_peak, *tree_peaks]),
                  "exporting_process_peak_rss_gb": parent_peak, "files": files}
        dropped = contract.special_tokens(config)[1]
        for name, value in dropped.items():
            log(f"note: {name} {value} is outside the vocabulary ({config.vocab_size}); the export never feeds "
                "it to the model or stops on it (model.json: special_tokens_outside_vocab)")
        report["special_tokens_outside_vocab"] = dropped
        contract.write(tmp, config, files, max_seq_len, prefill_len)
        export_report.write(tmp, report)
        replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"wrote {out} in {time.time() - start:.0f} s")
    return report


def measure(config, reference, path, entry, held_out, prefill_len):
    """Adds the signatures, decode tok/s and (with `held_out`) fidelity against `reference()` (the Keras
    model, loaded only then) of one .tflite or ONNX recipe to `entry` (a .litertlm: its prefill and decode
    tok/s; its signatures came from the conversion child; a quantized SavedModel: the fidelity of its
    serving_default logits)."""
    blocks = None if held_out is None else np.asarray(held_out, np.int32)
    if entry["format"] == "saved_model":
        if blocks is not None and entry["recipe"] != "fp32":
            from tfgpt2.export import saved_model

            entry["fidelity"] = saved_model.fidelity(reference(), os.path.join(path, "1"), blocks)
        return
    if entry["format"] == "litertlm":
        from tfgpt2.export import litertlm_run

        entry["prefill_tok_s"], entry["decode_tok_s"] = litertlm_run.speed(path, new_tokens=min(
            32, config.n_positions // 4))
        return
    if entry["format"] == "onnx":
        from tfgpt2.export import onnx_run

        graph = os.path.join(path, "model.onnx")
        entry["signatures"] = {"model": onnx_run.signature(graph)}
        prompt = min(32, config.n_positions // 4)
        entry["decode_tok_s"] = onnx_run.decode_speed(graph, prompt, min(32, config.n_positions - prompt - 1))
        if blocks is not None and entry["graph"] == "lm":
            entry["fidelity"] = onnx_run.fidelity(reference(), graph, blocks)
        return
    from tfgpt2.export import verify

    entry["signatures"] = verify.signature_contract(path)
    shortfall = verify.lite_memory_shortfall(path)
    if shortfall:  # killed by the kernel mid-check, the export would lose every file it wrote
        entry["runtime_check"] = shortfall
        return
    entry["decode_tok_s"] = verify.decode_speed(path)
    if blocks is not None:
        entry["fidelity"] = verify.fidelity(reference(), path, blocks, prefill_len)


def check_android_target(assets):
    parent = os.path.dirname(os.path.abspath(assets))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"{parent} does not exist; pass the app's assets folder, "
                                "e.g. --android android_demo/app/src/main/assets")


def copy_for_android(directory, assets):
    """Copies what the Android app reads (model.json and every .litertlm) into `assets`.

    Each file is written under a temporary name and renamed, so the app never sees half a model.
    """
    check_android_target(assets)
    written = contract.read(directory)
    names = ["model.json", *written.get("litertlm", {})]
    for rel in names:
        target = os.path.join(assets, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(directory, rel), target + ".partial")
        os.replace(target + ".partial", target)
    return names
