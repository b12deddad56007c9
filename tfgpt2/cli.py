"""`tfgpt2` command line: demo, generate, train, export, verify, info, bench. Errors print one line and exit with code 2."""

import argparse
import os
import sys
import time


def _quiet_tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def cmd_demo(args):
    """Trains a small GPT-2 on Python's documentation offline, samples, saves, exports and verifies it."""
    check_demo(args)
    import keras
    import numpy as np

    from tfgpt2 import GPT2Config, GPT2Tokenizer, TFGPT2LMHeadModel, training

    keras.utils.set_random_seed(args.seed)
    tok = GPT2Tokenizer()
    texts = training.builtin_texts()
    blocks = training.pack_ids(texts, tok, seq_len=args.seq_len)
    held_out, train = blocks[: max(len(blocks) // 20, 4)], blocks[max(len(blocks) // 20, 4):]
    cfg = GPT2Config(n_embd=args.n_embd, n_layer=args.n_layer, n_head=args.n_head, n_positions=args.seq_len * 2,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = TFGPT2LMHeadModel(cfg)
    print(f"tfgpt2 demo: GPT-2 with {model.count_params() / 1e6:.1f}M parameters, the real GPT-2 tokenizer, "
          f"{train.size / 1e3:.0f}k training tokens from Python's pydoc topics ({len(texts)} pages)")
    ppl_before = training.perplexity(model, held_out)
    model.compile(optimizer=keras.optimizers.AdamW(args.lr, weight_decay=0.01))
    ds = training.lm_dataset(train, batch_size=args.batch_size, seed=args.seed).repeat()
    start = time.time()
    history = model.fit(ds, steps_per_epoch=args.steps // args.epochs, epochs=args.epochs, verbose=1, shuffle=False)
    train_s = time.time() - start
    ppl_after = training.perplexity(model, held_out)
    losses = history.history["loss"]
    print(f"\nloss per epoch: {' -> '.join(f'{x:.2f}' for x in losses)}  ({train_s:.0f} s)")
    prompt = args.prompt
    ids = np.asarray([tok.encode(prompt)], np.int32)
    pieces = []
    start = time.time()
    out = model.generate(ids, max_new_tokens=args.max_new_tokens, do_sample=True, top_k=40, temperature=0.8,
                         seed=args.seed, streamer=lambda t: pieces.append(int(t[0])))
    gen_s = time.time() - start
    print(f"\n--- sample (top-k 40, T 0.8) ---\n{tok.decode(out.numpy()[0])}\n---")
    model.save_pretrained(args.out)
    tok.save_pretrained(args.out)
    rows = [("parameters", f"{model.count_params() / 1e6:.1f} M"),
            ("held-out perplexity before / after", f"{ppl_before:.0f} / {ppl_after:.1f}"),
            ("training", f"{args.steps} steps in {train_s:.0f} s"),
            ("generation (Python loop + XLA step, incl. compile)", f"{len(pieces) / gen_s:.1f} tok/s"),
            ("saved (HF format: config.json + model.safetensors)", args.out)]
    if not args.skip_export:
        rows += _demo_export(model, held_out, args)
    width = max(len(r[0]) for r in rows)
    print("\n" + "\n".join(f"{name:{width}s}  {value}" for name, value in rows))


def _demo_export(model, held_out, args):
    """SavedModel + fp32/int8 TFLite of the demo model, verified; rows for the summary table."""
    from tfgpt2.export import pipeline, verify

    out = os.path.join(args.out, "export")
    print(f"\nexporting to {out} (SavedModel for TF Serving, fp32 + int8 TFLite) and verifying it")
    report = pipeline.export(model, out, quantize=["fp32", "int8"], overwrite=True, max_seq_len=args.seq_len,
                             prefill_len=args.seq_len // 4, held_out=held_out[:8])
    verify.verify_dir(out, log=lambda *_: None)
    rows = [("export (tfgpt2 verify passed)", out)]
    for name, r in report["files"].items():
        f = r["fidelity"]
        rows.append((f"  {name}", f"{r['bytes'] / 1e6:.1f} MB, LiteRT {r['decode_tok_s']:.0f} tok/s, perplexity "
                                  f"{f['perplexity']:.1f} (Keras fp32 {f['keras_perplexity']:.1f}), top-1 vs Keras "
                                  f"{100 * f['top1_agreement']:.1f} %, max |logit diff| {f['max_abs_logit_diff']:.1e}"))
    return rows


def cmd_generate(args):
    import numpy as np

    from tfgpt2 import GPT2Tokenizer, TFGPT2LMHeadModel

    if args.temperature < 0:
        raise ValueError(f"--temperature must be >= 0 (0 = greedy), got {args.temperature}")
    model = TFGPT2LMHeadModel.from_pretrained(args.model)
    tok = _tokenizer_for(args.model, GPT2Tokenizer)
    ids = np.asarray([tok.encode(args.prompt)], np.int32)
    sys.stdout.write(args.prompt)
    made = []

    def stream(token_ids):
        made.append(int(token_ids[0]))
        text = tok.decode(made)
        if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
            sys.stdout.write(text[len(stream.shown):])
            stream.shown = text
            sys.stdout.flush()

    stream.shown = ""
    model.generate(ids, max_new_tokens=args.max_new_tokens, do_sample=args.temperature > 0,
                   temperature=args.temperature or 1.0, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                   eos_token_id=None if args.no_eos else tok.eos_token_id, streamer=stream)
    sys.stdout.write("\n")


def _tokenizer_for(model_dir, cls):
    if os.path.isdir(model_dir) and (os.path.exists(os.path.join(model_dir, "vocab.json"))
                                     or os.path.exists(os.path.join(model_dir, "tokenizer.json"))):
        return cls.from_pretrained(model_dir)
    return cls()


def cmd_train(args):
    from tfgpt2 import train_cli

    train_cli.run(args)


def cmd_bench(args):
    from tfgpt2 import bench_cli

    bench_cli.run(args)


def cmd_export(args):
    import shutil
    import tempfile

    from tfgpt2.export import pipeline

    if not args.out and not args.android:
        raise ValueError("pass --out DIR (export directory) and/or --android ASSETS_DIR (the app's assets)")
    if args.android:
        pipeline.check_android_target(args.android)
    quantize = args.quantize or ("int8" if args.android else "fp32,int8")
    scratch = None if args.out else tempfile.mkdtemp(prefix="tfgpt2-android-")
    out = args.out or os.path.join(scratch, "export")
    try:
        calibration = None
        if args.calibration_text:
            from tfgpt2 import GPT2Tokenizer, training

            calibration = training.pack_ids(training.read_texts(args.calibration_text), GPT2Tokenizer(),
                                            seq_len=args.prefill_len + 4)[:32]
        pipeline.export(args.model, out, quantize=[q.strip() for q in quantize.split(",") if q.strip()],
                        overwrite=args.overwrite, max_seq_len=args.max_seq_len, prefill_len=args.prefill_len,
                        calibration=calibration, text_signature=args.text_signature)
        if args.android:
            names = pipeline.copy_for_android(out, args.android)
            print(f"copied {len(names)} files for the app into {args.android}: {', '.join(names)}")
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def cmd_verify(args):
    from tfgpt2.export import verify

    verify.verify_dir(args.directory)


def cmd_info(args):
    from tfgpt2 import GPT2Config
    from tfgpt2.hub import WEIGHT_FILES

    cfg = GPT2Config.from_pretrained(args.model)
    c = cfg
    params = (c.vocab_size * c.n_embd + c.n_positions * c.n_embd + 2 * c.n_embd
              + c.n_layer * (4 * c.n_embd + 3 * c.n_embd * (c.n_embd + 1) + c.n_embd * (c.n_embd + 1)
                             + 2 * c.n_embd * c.inner_dim + c.inner_dim + c.n_embd))
    print(f"{args.model}: GPT-2, {params / 1e6:.1f}M parameters (tied LM head)")
    for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "activation_function"):
        print(f"  {name:20s} {getattr(cfg, name)}")
    if os.path.isdir(args.model):
        for name in sorted(os.listdir(args.model)):
            if name in WEIGHT_FILES or name.endswith((".json", ".txt")):
                print(f"  {name:20s} {os.path.getsize(os.path.join(args.model, name)) / 1e6:.2f} MB")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `tfgpt2 <command>: error: ...`, exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def check_demo(args):
    from tfgpt2.train_cli import check_schedule_and_shape

    check_schedule_and_shape(args)
    if args.seq_len < 8:
        raise ValueError(f"--seq-len must be >= 8, got {args.seq_len}")
    if args.lr <= 0 or args.max_new_tokens < 1:
        raise ValueError("--lr must be > 0 and --max-new-tokens >= 1")


def build_parser():
    parser = Parser(prog="tfgpt2", description="GPT-2 for TensorFlow / Keras 3.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train a small GPT-2 offline on Python's docs, generate, save")
    demo.add_argument("--out", default="tfgpt2-demo")
    demo.add_argument("--steps", type=int, default=240)
    demo.add_argument("--epochs", type=int, default=3)
    demo.add_argument("--seq-len", type=int, default=64)
    demo.add_argument("--batch-size", type=int, default=8)
    demo.add_argument("--n-embd", type=int, default=128)
    demo.add_argument("--n-layer", type=int, default=2)
    demo.add_argument("--n-head", type=int, default=4)
    demo.add_argument("--lr", type=float, default=3e-3)
    demo.add_argument("--prompt", default="The for statement")
    demo.add_argument("--max-new-tokens", type=int, default=40)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--skip-export", action="store_true", help="stop after training and sampling")
    gen = sub.add_parser("generate", help="stream text from a model directory")
    gen.add_argument("--model", required=True, help="HF-format directory (config.json + weights) or hub id")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--max-new-tokens", type=int, default=40)
    gen.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    gen.add_argument("--top-k", type=int, default=0)
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--no-eos", action="store_true", help="do not stop at <|endoftext|>")
    from tfgpt2 import train_cli

    train_cli.add_arguments(sub.add_parser("train", help="fine-tune or pretrain on text: progress, eval perplexity, "
                                                         "checkpoints/resume, loss.png"))
    exp = sub.add_parser("export", help="SavedModel (TF Serving) + TFLite per recipe + model.json + report")
    exp.add_argument("--model", required=True, help="HF-format directory, hub id, or .keras file")
    exp.add_argument("--out", help="export directory (SavedModel, .tflite files, model.json, report)")
    exp.add_argument("--android", metavar="ASSETS_DIR",
                     help="also copy model.json, tokenizer/ and the .tflite files into the Android app's assets, "
                          "e.g. android_demo/app/src/main/assets (default --quantize int8)")
    exp.add_argument("--quantize", default=None, help="comma list of fp32, fp16, int8, int8-full, int4 (default fp32,int8)")
    exp.add_argument("--text-signature", action="store_true",
                     help="also write saved_model_text/1 with generate_text (text in/out; needs TF Text ops)")
    exp.add_argument("--calibration-text", metavar="PATH", help="text file(s)/dir for int8-full calibration")
    exp.add_argument("--max-seq-len", type=int, default=256, help="KV cache slots in the .tflite")
    exp.add_argument("--prefill-len", type=int, default=64, help="prompt length of the prefill signature")
    exp.add_argument("--overwrite", action="store_true")
    ver = sub.add_parser("verify", help="re-check an export directory (hashes, signatures, runs)")
    ver.add_argument("directory")
    from tfgpt2 import bench_cli

    bench_cli.add_arguments(sub.add_parser("bench", help="decode tokens/s of a model and its .tflite files (+ chart)"))
    info = sub.add_parser("info", help="config, parameter count and file sizes of a model")
    info.add_argument("model")
    return parser


COMMANDS = {"demo": cmd_demo, "generate": cmd_generate, "train": cmd_train, "export": cmd_export,
            "verify": cmd_verify, "info": cmd_info, "bench": cmd_bench}


def main(argv=None):
    args = build_parser().parse_args(argv)
    _quiet_tf()
    try:
        COMMANDS[args.command](args)
    except (ValueError, OSError) as e:  # FileNotFoundError, FileExistsError, PermissionError are OSErrors
        if args.debug:
            raise
        message = " ".join(str(e).split())  # one line
        print(f"tfgpt2 {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
