"""`tfgpt2 export`: SavedModel (TF Serving), .tflite and ONNX per recipe, model.json, report."""

import os
import shutil
import tempfile

HELP = "SavedModel (TF Serving), TFLite and ONNX per recipe, model.json, report"


def add_arguments(p):
    from tfgpt2.export.onnx_export import GRAPHS
    from tfgpt2.export.recipes import RECIPES

    p.add_argument("--model", required=True, help="HF-format directory, hub id, or .keras file")
    p.add_argument("--out", help="export directory (SavedModel, .tflite files, model.json, report)")
    p.add_argument("--android", metavar="ASSETS_DIR",
                   help="also copy model.json and the .litertlm into the Android app's assets, e.g. "
                        "android_demo/app/src/main/assets (default --formats litertlm --quantize int8)")
    p.add_argument("--formats", default=None,
                   help="comma list of saved_model (TF Serving), tflite (LiteRT), onnx (ONNX Runtime and ORT "
                        "GenAI), litertlm (LiteRT-LM) (default saved_model,tflite)")
    p.add_argument("--quantize", default=None,
                   help=f"recipes for tflite, onnx and litertlm, comma list of {', '.join(RECIPES)} (onnx: fp32, "
                        "int8; litertlm: fp32, int8, int4), each for every such format or as FORMAT:RECIPE, e.g. "
                        "tflite:int4,onnx:int8 (default fp32,int8; litertlm int8); saved_model:int8 / "
                        "saved_model:int4 add a SavedModel of model.quantize(...) beside the fp32 one")
    p.add_argument("--onnx-graph", choices=GRAPHS, default=None,
                   help="ONNX graph output: lm = logits (ORT GenAI runs it), base = last_hidden_state "
                        "(default: base for a GPT2Model checkpoint, else lm)")
    p.add_argument("--text-signature", action="store_true",
                   help="also write saved_model_text/1 with generate_text (text in/out; needs TF Text ops)")
    p.add_argument("--calibration-text", metavar="PATH", help="text file(s)/dir for int8-full calibration")
    p.add_argument("--held-out-text", metavar="PATH", nargs="+",
                   help="text file(s)/dir: the report's fidelity of each file against the Keras model (max logit "
                        "diff, top-1 agreement, perplexity) on up to 8 blocks of it; loads the model in the "
                        "exporting process")
    p.add_argument("--max-seq-len", type=int, default=None,
                   help="KV cache slots in the .tflite (default: 256, or the model's n_positions if smaller)")
    p.add_argument("--prefill-len", type=int, default=None,
                   help="prompt length of the prefill signature (default: 64, at most max-seq-len / 4)")
    p.add_argument("--overwrite", action="store_true")


def run(args):
    from tfgpt2.export import pipeline

    if not args.out and not args.android:
        raise ValueError("pass --out DIR (export directory) and/or --android ASSETS_DIR (the app's assets)")
    if args.android:
        pipeline.check_android_target(args.android)
    chosen = args.formats or ("litertlm" if args.android else "saved_model,tflite")
    formats = pipeline.check_formats([f.strip() for f in chosen.split(",") if f.strip()], args.text_signature)
    if "litertlm" not in formats and args.android:
        raise ValueError("--android copies the .litertlm the app runs: add litertlm to --formats.")
    entries = [q.strip() for q in (args.quantize or "").split(",") if q.strip()]
    if not {"tflite", "onnx", "litertlm"} & set(formats) and any(":" not in q for q in entries):
        raise ValueError("--quantize chooses tflite, onnx and litertlm recipes (a quantized SavedModel: "
                         "saved_model:int8 or saved_model:int4): add one of them to --formats.")
    if "onnx" not in formats and args.onnx_graph:
        raise ValueError("--onnx-graph is about the ONNX export: add onnx to --formats.")
    quantize = args.quantize or ("int8" if args.android else None)  # None: each format's default recipes
    scratch = None if args.out else tempfile.mkdtemp(prefix="tfgpt2-android-")
    out = args.out or os.path.join(scratch, "export")
    try:
        calibration = held_out = None
        if args.calibration_text or args.held_out_text:
            from tfgpt2.export.source import source_config

            config = source_config(args.model)
            slots, prefill = pipeline.default_lengths(config, args.max_seq_len, args.prefill_len)
            if args.calibration_text:
                calibration = text_blocks(args.calibration_text, config, prefill + 4, "--calibration-text")[:32]
            if args.held_out_text:  # the prompt fills prefill, up to 32 tokens are decoded
                held_out = text_blocks(args.held_out_text, config, min(slots, prefill + 32), "--held-out-text")[:8]
        recipes = quantize and [q.strip() for q in quantize.split(",") if q.strip()]
        pipeline.export(args.model, out, quantize=recipes,
                        overwrite=args.overwrite, max_seq_len=args.max_seq_len, prefill_len=args.prefill_len,
                        calibration=calibration, held_out=held_out, text_signature=args.text_signature,
                        formats=formats, onnx_graph=args.onnx_graph)
        if args.android:
            names = pipeline.copy_for_android(out, args.android)
            print(f"copied {len(names)} files for the app into {args.android}: {', '.join(names)}")
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def text_blocks(paths, config, seq_len, flag):
    """(N, seq_len) GPT-2 ids of the text at `paths`; ValueError when the model's vocabulary lacks some."""
    from tfgpt2 import GPT2Tokenizer, training
    from tfgpt2.errors import GPT2InputError

    texts = training.read_texts(paths)
    try:
        blocks = training.pack_ids(texts, GPT2Tokenizer(), seq_len=seq_len)
    except GPT2InputError:  # pack_ids' "fewer tokens than one block", said in this flag's terms
        raise ValueError(f"{flag}: the text is shorter than one block of {seq_len} tokens (the prompt length, "
                         "--prefill-len, plus the tokens measured); pass more text") from None
    if blocks.max() >= config.vocab_size:
        raise ValueError(f"{flag}: GPT-2's tokenizer gives ids up to {int(blocks.max())}, the model's vocabulary "
                         f"has {config.vocab_size}; pass text of ids below it or drop {flag}")
    return blocks
