"""`tfgpt2 demo`: trains a small GPT-2 on Python's documentation offline, samples, saves, exports, verifies."""

import os
import time

from tfgpt2.cli.common import add_recipe_arguments, recipe_from

HELP = "train a small GPT-2 offline on Python's docs, generate, save, export"


def add_arguments(p):
    p.add_argument("--out", default="tfgpt2-demo")
    add_recipe_arguments(p, steps=240, epochs=3)
    p.add_argument("--prompt", default="The for statement")
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--skip-export", action="store_true", help="stop after training and sampling")


def run(args):
    recipe = recipe_from(args)
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    import numpy as np

    from tfgpt2 import GPT2Tokenizer, training

    tok = GPT2Tokenizer()
    texts = training.builtin_texts()
    train, held_out = recipe.split(texts, tok)
    model = recipe.new_model(tok.vocab_size)
    print(f"tfgpt2 demo: GPT-2 with {model.count_params() / 1e6:.1f}M parameters, the real GPT-2 tokenizer, "
          f"{train.size / 1e3:.0f}k training tokens from Python's pydoc topics ({len(texts)} pages)")
    ppl_before = training.perplexity(model, held_out)
    start = time.time()
    history = recipe.fit(model, train)
    train_s = time.time() - start
    ppl_after = training.perplexity(model, held_out)
    losses = history.history["loss"]
    print(f"\nloss per epoch: {' -> '.join(f'{x:.2f}' for x in losses)}  ({train_s:.0f} s)")
    ids = np.asarray([tok.encode(args.prompt)], np.int32)
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
        rows += export_rows(model, held_out, args)
    width = max(len(r[0]) for r in rows)
    print("\n" + "\n".join(f"{name:{width}s}  {value}" for name, value in rows))


def export_rows(model, held_out, args):
    """SavedModel + fp32/int8 TFLite of the demo model, verified; rows for the summary table."""
    from tfgpt2.export import pipeline, verify

    out = os.path.join(args.out, "export")
    print(f"\nexporting to {out} (SavedModel for TF Serving, fp32 + int8 TFLite) and verifying it")
    report = pipeline.export(model, out, quantize=["fp32", "int8"], overwrite=True, max_seq_len=args.seq_len,
                             prefill_len=args.seq_len // 4, held_out=held_out[:8])
    verify.verify_dir(out, log=lambda *_: None)
    rows = [("export (tfgpt2 verify passed)", out)]
    for name, r in report["files"].items():
        if r["format"] != "tflite":
            rows.append((f"  {name}/1", f"{r['bytes'] / 1e6:.1f} MB, TF Serving SavedModel ({r['recipe']})"))
            continue
        f = r["fidelity"]
        rows.append((f"  {name}", f"{r['bytes'] / 1e6:.1f} MB, LiteRT {r['decode_tok_s']:.0f} tok/s, perplexity "
                                  f"{f['perplexity']:.1f} (Keras fp32 {f['keras_perplexity']:.1f}), top-1 vs Keras "
                                  f"{100 * f['top1_agreement']:.1f} %, max |logit diff| {f['max_abs_logit_diff']:.1e}"))
    return rows
