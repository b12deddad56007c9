"""`tfgpt2 export`: SavedModel + one .tflite per recipe + tokenizer + model.json + report, atomically.

    DIR/saved_model/1/        TF Serving base path = DIR/saved_model
    DIR/gpt2_<recipe>.tflite  prefill/decode signatures, builtin ops only
    DIR/tokenizer/            vocab.json, merges.txt
    DIR/model.json            the contract the Android app reads
    DIR/report.md, report.json
Everything is written into a staging directory beside DIR (`.tfgpt2-export-<pid>-*`) and renamed
to DIR at the end; a previous export at DIR waits under a staging name until the new one is in
place, and is put back if that rename fails (`replace`). What a killed export leaves (staging
directories of a process that is gone) is removed, or put back, by the next export to DIR (`recover`).
"""

import os
import resource
import shutil
import tempfile
import time

import numpy as np

from tfgpt2.export import contract, recipes, worker
from tfgpt2.export.source import source_config

DEFAULT_MAX_SEQ_LEN, DEFAULT_PREFILL_LEN = 256, 64
FORMATS = ("saved_model", "tflite")  # what an export can hold (`formats=`, `--formats`); both by default


def default_lengths(config, max_seq_len=None, prefill_len=None):
    """(max_seq_len, prefill_len): what was given, else 256 / 64 cut to fit the model's n_positions."""
    if max_seq_len is None:
        max_seq_len = min(DEFAULT_MAX_SEQ_LEN, config.n_positions)
    if prefill_len is None:
        prefill_len = max(1, min(DEFAULT_PREFILL_LEN, max_seq_len // 4))
    return max_seq_len, prefill_len


STAGING = ".tfgpt2-export-"  # + pid + random suffix: the staging directory beside --out


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


def check_targets(config, out, quantize, overwrite, max_seq_len, prefill_len, calibration=None):
    if quantize is not None and not quantize:
        raise ValueError(f"no quantization recipe given; choose from {', '.join(recipes.RECIPES)}.")
    quantize = quantize or []
    for name in quantize:
        recipes.get(name)
    if any(recipes.get(q).optimize == "calibrated" for q in quantize):
        if calibration is None or len(calibration) == 0:
            raise ValueError("int8-full needs representative data: pass --calibration-text FILE_OR_DIR "
                             "(calibration=(N, T) token ids in Python)")
        if np.asarray(calibration).shape[-1] < prefill_len + 1:
            raise ValueError(f"calibration blocks must hold at least prefill_len + 1 = {prefill_len + 1} tokens")
    if os.path.exists(out) and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it, or choose another --out.")
    if os.path.exists(out) and not _replaceable(out):
        raise FileExistsError(f"{out} is not a tfgpt2 export (no model.json) and not empty; --overwrite only "
                              "replaces an export: choose a new or empty --out.")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise PermissionError(f"cannot write into {parent}; choose an --out in a writable directory.")
    n = config.n_positions
    if not 0 < prefill_len < max_seq_len <= n:
        raise ValueError(f"need 0 < prefill_len ({prefill_len}) < max_seq_len ({max_seq_len}) <= the model's "
                         f"n_positions ({n}); lower --max-seq-len or --prefill-len.")


def export(src, out, quantize=("fp32", "int8"), overwrite=False, max_seq_len=None, prefill_len=None,
           held_out=None, calibration=None, text_signature=False, log=print, formats=FORMATS):
    """Runs every stage; returns the report dict.

    `src`: HF dir/hub id, `.keras` file or a model. Before this process loads the model, one child
    process writes the SavedModels the converter reads and a fresh child converts each recipe
    (`tfgpt2/export/worker.py`), so no process holds the model and the converter at once.
    `held_out`: (N, T) int ids for fidelity numbers; `calibration`: (N, T) ids of text for
    int8-full; `text_signature`: also write DIR/saved_model_text/1 with `generate_text` (needs TF
    Text ops). `max_seq_len` / `prefill_len` default from the model (default_lengths). `formats`: any of
    FORMATS; `quantize` applies to tflite.
    """
    formats = check_formats(formats, text_signature)
    quantize = list(quantize) if "tflite" in formats else []
    config = source_config(src)
    max_seq_len, prefill_len = default_lengths(config, max_seq_len, prefill_len)
    out = os.path.abspath(out)
    recover(out)
    check_targets(config, out, quantize if "tflite" in formats else None, overwrite, max_seq_len, prefill_len,
                  calibration)
    tmp = tempfile.mkdtemp(prefix=f"{STAGING}{os.getpid()}-", dir=os.path.dirname(out))
    scratch = os.path.join(tmp, ".scratch")  # inputs for the child processes; removed before hashing
    start = time.time()
    try:
        stages, files, tree_peaks = 1 + len(quantize) + ("saved_model" in formats), {}, []
        os.makedirs(scratch)
        source = src
        if hasattr(src, "config"):  # the children load the model from disk
            source = os.path.join(scratch, "model")
            src.save_pretrained(source)
        calibration_path = None
        if any(recipes.get(q).optimize == "calibrated" for q in quantize):
            calibration_path = os.path.join(scratch, "calibration.npy")
            np.save(calibration_path, np.asarray(calibration, np.int32))
        archives, kinds = os.path.join(scratch, "archives"), recipes.archive_kinds(quantize)
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
        # TensorFlow enters this process only now, after the conversion children are done
        from tfgpt2 import GPT2Tokenizer
        from tfgpt2.export import report as export_report
        from tfgpt2.export import saved_model, verify
        from tfgpt2.export.source import load_model

        model = src if hasattr(src, "config") else load_model(src)
        if "saved_model" in formats:
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
        dropped = contract.special_tokens(model.config)[1]
        for name, value in dropped.items():
            log(f"note: {name} {value} is outside the vocabulary ({model.config.vocab_size}); the export never feeds "
                "it to the model or stops on it (model.json: special_tokens_outside_vocab)")
        report["special_tokens_outside_vocab"] = dropped
        contract.write(tmp, model.config, files, max_seq_len, prefill_len)
        export_report.write(tmp, report)
        replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"wrote {out} in {time.time() - start:.0f} s")
    return report


def replace(tmp, out):
    """Renames the finished export `tmp` to `out`. A previous `out` waits beside it (a staging name)
    until the new one is in place, is put back if that rename fails, and is removed after."""
    if not os.path.lexists(out):
        os.rename(tmp, out)
        return
    old = os.path.join(os.path.dirname(out), f"{STAGING}{os.getpid()}-previous-{os.path.basename(out)}")
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)
        raise
    _remove(old)


def recover(out):
    """Cleans up beside `out` after exports that were killed: the staging directories of processes
    that are gone are removed, except a previous export whose place is empty (killed between the two
    renames of `replace`), which is put back."""
    parent = os.path.dirname(out)
    for name in sorted(os.listdir(parent)) if os.path.isdir(parent) else ():
        pid, _, rest = name[len(STAGING):].partition("-")
        if not name.startswith(STAGING) or (pid.isdigit() and _alive(int(pid))):
            continue
        path, previous = os.path.join(parent, name), rest[len("previous-"):] if rest.startswith("previous-") else ""
        if previous and not os.path.lexists(os.path.join(parent, previous)):
            os.rename(path, os.path.join(parent, previous))
        else:
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _replaceable(path):
    """What --overwrite may replace: an export (it has model.json) or an empty directory."""
    if os.path.isdir(path):
        return os.path.exists(os.path.join(path, "model.json")) or not os.listdir(path)
    return False


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


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
    written = contract.read(directory)
    names = ["model.json", *written["tokenizer"]["files"], *written["models"]]
    for rel in names:
        target = os.path.join(assets, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(directory, rel), target + ".partial")
        os.replace(target + ".partial", target)
    return names
