"""`tfgpt2 export`: SavedModel + one .tflite per recipe + tokenizer + model.json + report, atomically.

    DIR/saved_model/1/        TF Serving base path = DIR/saved_model
    DIR/gpt2_<recipe>.tflite  prefill/decode signatures, builtin ops only
    DIR/tokenizer/            vocab.json, merges.txt
    DIR/model.json            the contract the Android app reads
    DIR/report.md, report.json
Everything is written into a temporary sibling directory and renamed to DIR at the end.
"""

import hashlib
import json
import os
import resource
import shutil
import tempfile
import time
import zipfile

import numpy as np

RECIPES = ("fp32", "fp16", "int8", "int8-full", "int4")
FORMAT_VERSION = 1


def recipe_kwargs(recipe, model=None, calibration=None, max_seq_len=None, prefill_len=None):
    import tensorflow as tf

    from tfgpt2.export import tflite

    if recipe == "fp32":
        return {}
    if recipe == "fp16":
        return {"optimizations": [tf.lite.Optimize.DEFAULT], "target_types": [tf.float16]}
    kwargs = {"optimizations": [tf.lite.Optimize.DEFAULT]}  # int8: dynamic-range weights
    if recipe == "int8-full":  # int8 weights and activations where kernels allow, calibrated on text
        kwargs["representative_dataset"] = tflite.representative_dataset(model, calibration, max_seq_len, prefill_len)
    return kwargs


def _keras_file(src):
    """True for a `.keras` path (which must exist); False for an HF dir or hub id."""
    if src.endswith(".keras") and not os.path.exists(src):
        raise FileNotFoundError(f"{src} does not exist; pass a .keras file saved with model.save().")
    return src.endswith(".keras")


def load_model(src):
    from tfgpt2 import TFGPT2LMHeadModel

    if _keras_file(src):
        import keras

        return keras.saving.load_model(src)
    return TFGPT2LMHeadModel.from_pretrained(src)


def source_config(src):
    """The GPT2Config of a model, HF dir/hub id or .keras file, without loading weights."""
    from tfgpt2 import GPT2Config
    from tfgpt2.hub import resolve

    if hasattr(src, "config"):
        return src.config
    if _keras_file(src):
        with zipfile.ZipFile(src) as archive:
            saved = json.loads(archive.read("config.json"))
        if "config" not in saved.get("config", {}):
            raise ValueError(f"{src} does not hold a tfgpt2 model (its config has no GPT2Config); "
                             "save a TFGPT2LMHeadModel with model.save('m.keras').")
        return GPT2Config.from_dict(saved["config"]["config"])
    return GPT2Config.from_pretrained(src if os.path.isdir(src) else resolve(src))


def check_targets(config, out, quantize, overwrite, max_seq_len, prefill_len, calibration=None):
    unknown = [q for q in quantize if q not in RECIPES]
    if unknown or not quantize:
        raise ValueError(f"unknown quantization recipe(s) {unknown or quantize}; choose from {', '.join(RECIPES)}.")
    if "int8-full" in quantize:
        if calibration is None or len(calibration) == 0:
            raise ValueError("int8-full needs representative data: pass --calibration-text FILE_OR_DIR "
                             "(calibration=(N, T) token ids in Python)")
        if np.asarray(calibration).shape[-1] < prefill_len + 1:
            raise ValueError(f"calibration blocks must hold at least prefill_len + 1 = {prefill_len + 1} tokens")
    if os.path.exists(out) and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it, or choose another --out.")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise PermissionError(f"cannot write into {parent}; choose an --out in a writable directory.")
    n = config.n_positions
    if not 0 < prefill_len < max_seq_len <= n:
        raise ValueError(f"need 0 < prefill_len ({prefill_len}) < max_seq_len ({max_seq_len}) <= the model's "
                         f"n_positions ({n}); lower --max-seq-len or --prefill-len.")


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def export(src, out, quantize=("fp32", "int8"), overwrite=False, max_seq_len=256, prefill_len=64,
           held_out=None, calibration=None, text_signature=False, log=print):
    """Runs every stage; returns the report dict.

    `src`: HF dir/hub id, `.keras` file or a model. Before this process loads the model, one child
    process writes the SavedModels the converter reads and a fresh child converts each recipe
    (`export/worker.py`), so no process holds the model and the converter at once.
    `held_out`: (N, T) int ids for fidelity numbers; `calibration`: (N, T) ids of text for
    int8-full; `text_signature`: also write DIR/saved_model_text/1 with `generate_text` (needs TF
    Text ops).
    """
    from tfgpt2.export import verify, worker  # no TensorFlow in this process until the conversions are done

    quantize = list(quantize)
    check_targets(source_config(src), out, quantize, overwrite, max_seq_len, prefill_len, calibration)
    tmp = tempfile.mkdtemp(prefix=".tfgpt2-export-", dir=os.path.dirname(os.path.abspath(out)))
    scratch = os.path.join(tmp, ".scratch")  # inputs for the child processes; removed before hashing
    start = time.time()
    try:
        stages, files, tree_peaks = 2 + len(quantize), {}, []
        os.makedirs(scratch)
        source = src
        if hasattr(src, "config"):  # the children load the model from disk
            source = os.path.join(scratch, "model")
            src.save_pretrained(source)
        calibration_path = None
        if "int8-full" in quantize:
            calibration_path = os.path.join(scratch, "calibration.npy")
            np.save(calibration_path, np.asarray(calibration, np.int32))
        archives, kinds = os.path.join(scratch, "archives"), worker.archive_kinds(quantize)
        if kinds:
            log("       the converter's SavedModels (child process)")
            tree_peaks.append(worker.run_child("archive", source, archives, max_seq_len, prefill_len,
                                               *kinds)["tree_peak_rss_gb"])
        for i, recipe in enumerate(quantize, 1):
            log(f"[{i}/{stages}] TFLite {recipe} (converted in a child process)")
            name = f"gpt2_{recipe}.tflite"
            result = worker.convert_in_child(recipe, archives, source, os.path.join(tmp, name), max_seq_len,
                                             prefill_len, calibration_path)
            tree_peaks.append(result.pop("tree_peak_rss_gb"))
            files[name] = {"recipe": recipe, **result}
        shutil.rmtree(scratch)
        from tfgpt2 import GPT2Tokenizer
        from tfgpt2.export import saved_model

        model = src if hasattr(src, "config") else load_model(src)
        log(f"[{len(quantize) + 1}/{stages}] SavedModel for TF Serving")
        saved_model.build(model, os.path.join(tmp, "saved_model", "1"))
        if text_signature:
            from tfgpt2.export import text_serving

            log(f"[{len(quantize) + 1}/{stages}] SavedModel with generate_text (text in/out; needs TF Text ops: "
                f"{', '.join(text_serving.REQUIRED_OPS)})")
            text_serving.build(model, os.path.join(tmp, "saved_model_text", "1"))
        parent_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        log(f"[{stages}/{stages}] tokenizer, model.json, verification")
        GPT2Tokenizer().save_pretrained(os.path.join(tmp, "tokenizer"))
        report = {"conversion_seconds": time.time() - start, "peak_rss_gb": max([parent_peak, *tree_peaks]),
                  "exporting_process_peak_rss_gb": parent_peak, "files": files}
        for name, entry in files.items():
            path = os.path.join(tmp, name)
            entry["signatures"] = verify.signature_contract(path)
            entry["decode_tok_s"] = verify.decode_speed(path)
            if held_out is not None:
                entry["fidelity"] = verify.fidelity(model, path, np.asarray(held_out, np.int32), prefill_len)
        write_contract(tmp, model.config, files, max_seq_len, prefill_len)
        verify.write_report(tmp, report)
        if os.path.exists(out):
            old = out.rstrip("/") + ".old"
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"wrote {out} in {time.time() - start:.0f} s")
    return report


def check_android_target(assets):
    parent = os.path.dirname(os.path.abspath(assets))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"{parent} does not exist; pass the app's assets folder, "
                                "e.g. --android android_demo/app/src/main/assets")


def copy_for_android(directory, assets):
    """Copies what the Android app reads (model.json, tokenizer/, every .tflite) into `assets`.

    Each file is written under a temporary name and renamed, so the app never sees half a model.
    """
    check_android_target(assets)
    with open(os.path.join(directory, "model.json"), encoding="utf-8") as f:
        contract = json.load(f)
    names = ["model.json", *contract["tokenizer"]["files"], *contract["models"]]
    for rel in names:
        target = os.path.join(assets, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(directory, rel), target + ".partial")
        os.replace(target + ".partial", target)
    return names


def write_contract(directory, config, files, max_seq_len, prefill_len):
    tokenizer_files = sorted(os.listdir(os.path.join(directory, "tokenizer")))
    contract = {
        "format_version": FORMAT_VERSION,
        "config": {k: v for k, v in config.to_dict().items() if k != "extra"},
        "max_seq_len": max_seq_len,
        "prefill_len": prefill_len,
        "cache": {"design": "caller-owned tensors; decode returns only the new entries",
                  "tensors": {"k_{i}": "(1, n_head, max_seq_len, head_dim) float32, i < n_layer",
                              "vt_{i}": "(1, n_head, head_dim, max_seq_len) float32 (values, transposed)",
                              "cache_mask": "(1, max_seq_len) int32, 1 = real token"},
                  "after_prefill": "the next free slot is prefill_len",
                  "after_decode": "write new_k[i] into k_i[0, :, slot, :] and new_v[i] into vt_i[0, :, :, slot], "
                                  "set cache_mask[0, slot] = 1, slot += 1; stop when slot == max_seq_len",
                  "reset": "run prefill again", "padding": "left-pad the prompt to prefill_len, mask 0 on pads"},
        "special_tokens": {"eos_token_id": config.eos_token_id, "bos_token_id": config.bos_token_id,
                           "pad_token_id": config.eos_token_id},
        "tokenizer": {"files": [f"tokenizer/{n}" for n in tokenizer_files], "type": "gpt2-byte-level-bpe"},
        "models": {name: {"recipe": e["recipe"], "signatures": e["signatures"]} for name, e in files.items()},
        "sha256": {},
    }
    for root, _, names in os.walk(directory):
        for n in names:
            path = os.path.join(root, n)
            contract["sha256"][os.path.relpath(path, directory)] = sha256(path)
    with open(os.path.join(directory, "model.json"), "w", encoding="utf-8") as f:
        json.dump(contract, f, indent=2, sort_keys=True)
