"""`tfgpt2 train`: fine-tune or pretrain on text with Keras `fit`.

Progress bar (Keras), held-out perplexity after every epoch, checkpoints you can resume from
(keras.callbacks.BackupAndRestore: weights, optimizer and step), the model saved in HF format
(config.json + model.safetensors + tokenizer files) and a loss curve PNG. `--strategy` trains on
several devices or machines (tfgpt2.distribute): with TF_CONFIG set, every worker runs the same
command and the chief alone prints progress and writes OUT.
"""

import json
import math
import os
import time

import numpy as np

from tfgpt2.cli.common import add_recipe_arguments, recipe_from, tokenizer_for
from tfgpt2.distribute import STRATEGIES

HELP = "fine-tune or pretrain on text: progress, eval perplexity, checkpoints/resume, loss.png"


def add_arguments(p):
    p.add_argument("--data", nargs="+", help="text files or directories (*.txt, *.md, *.py, *.rst); "
                                             "omit with --builtin-data")
    p.add_argument("--builtin-data", action="store_true", help="train on Python's own pydoc topics (offline)")
    p.add_argument("--model", help="HF-format directory to fine-tune (default: a new model from --n-* flags)")
    p.add_argument("--out", required=True, help="output directory (model, tokenizer, checkpoints, loss.png)")
    add_recipe_arguments(p, steps=200, epochs=2)
    p.add_argument("--eval-fraction", type=float, default=0.05, help="share of blocks held out for perplexity")
    p.add_argument("--checkpoint-every", type=int, default=0, help="also checkpoint every N steps (0: per epoch)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints after an interruption")
    p.add_argument("--strategy", choices=STRATEGIES, default="auto",
                   help="auto: several workers when TF_CONFIG names a cluster, all GPUs when there are several; "
                        "mirrored: the local devices; multiworker: the TF_CONFIG cluster (OUT on storage "
                        "every worker sees)")


def check(args):
    if not args.data and not args.builtin_data:
        raise ValueError("pass --data FILES_OR_DIRS, or --builtin-data to train on Python's documentation")
    recipe = recipe_from(args, eval_fraction=args.eval_fraction)
    if not 0 < args.eval_fraction < 0.5:
        raise ValueError(f"--eval-fraction must be in (0, 0.5), got {args.eval_fraction}")
    backup = os.path.join(args.out, "checkpoints")
    if os.path.exists(os.path.join(args.out, "config.json")) and not args.resume:
        raise FileExistsError(f"{args.out} already holds a model; pick another --out (or --resume a run)")
    if args.resume and not os.path.isdir(backup):
        raise FileNotFoundError(f"nothing to resume: {backup} does not exist; run without --resume first")
    return recipe


def run(args):
    from tfgpt2 import distribute

    recipe = check(args)
    strategy = distribute.strategy_from(args.strategy)  # first: collectives are set up before other TF work
    distribute.check_batch(strategy, args.batch_size)
    with strategy.scope():
        _train(args, recipe, strategy, chief=distribute.is_chief(strategy))


def _train(args, recipe, strategy, chief):
    from tfgpt2 import GPT2Tokenizer, TFGPT2LMHeadModel, distribute, training

    texts = training.builtin_texts() if args.builtin_data else training.read_texts(args.data)
    if args.model:
        model, tok = TFGPT2LMHeadModel.from_pretrained(args.model), tokenizer_for(args.model)
    else:
        tok = GPT2Tokenizer()
        model = recipe.new_model(tok.vocab_size)
    if args.seq_len > model.config.n_positions:
        raise ValueError(f"--seq-len {args.seq_len} exceeds the model's n_positions {model.config.n_positions}")
    train, held_out = recipe.split(texts, tok)
    if len(train) < args.batch_size:
        raise ValueError(f"only {len(train)} training blocks of {args.seq_len} tokens for batch size "
                         f"{args.batch_size}: pass more text or lower --batch-size/--seq-len")
    workers = f" on {strategy.num_replicas_in_sync} replicas" if strategy.num_replicas_in_sync > 1 else ""
    if chief:
        print(f"tfgpt2 train: {model.count_params() / 1e6:.1f}M parameters, {train.size / 1e3:.0f}k training tokens, "
              f"{held_out.size / 1e3:.0f}k held out; {args.steps} steps in {args.epochs} epochs{workers}")
    history = {"step_loss": [], "eval": []}
    callbacks = [distribute.backup(strategy, os.path.join(args.out, "checkpoints"), args.checkpoint_every or "epoch"),
                 _recorder(model, held_out, history, args.steps // args.epochs, chief)]
    start = time.time()
    recipe.fit(model, train, callbacks=callbacks, verbose=1 if chief else 0)
    if not chief:
        return
    model.save_pretrained(args.out)
    tok.save_pretrained(args.out)
    plot_loss(history, os.path.join(args.out, "loss.png"))
    with open(os.path.join(args.out, "train_history.json"), "w", encoding="utf-8") as f:
        json.dump(history, f)
    last = history["eval"][-1] if history["eval"] else {}
    print(f"done in {time.time() - start:.0f} s: held-out perplexity {last.get('perplexity', float('nan')):.1f}; "
          f"saved {args.out} (HF format) and {os.path.join(args.out, 'loss.png')}")


def _recorder(model, held_out, history, steps_per_epoch, chief=True):
    """A Keras callback recording per-step training loss and per-epoch held-out perplexity (on the chief)."""
    import keras

    from tfgpt2 import training

    class Recorder(keras.callbacks.Callback):
        step = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.step = epoch * steps_per_epoch  # a resumed run starts past the restored epochs

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            if logs and "step_loss" in logs:
                history["step_loss"].append(float(logs["step_loss"]))

        def on_epoch_end(self, epoch, logs=None):
            if not chief:
                return
            ppl = training.perplexity(model, held_out)
            history["eval"].append({"epoch": epoch + 1, "step": self.step, "perplexity": ppl})
            print(f"\nepoch {epoch + 1}: held-out perplexity {ppl:.1f}" + ("" if math.isfinite(ppl) else " (diverged)"))

    return Recorder()


def plot_loss(history, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    loss = np.asarray(history["step_loss"])
    if loss.size:
        ax.plot(np.arange(1, loss.size + 1), loss, lw=0.8, alpha=0.5, label="training loss (per step)")
        k = max(1, loss.size // 20)
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax.plot(np.arange(k, loss.size + 1), smooth, lw=2, label=f"training loss ({k}-step mean)")
    if history["eval"]:
        ax.plot([e["step"] for e in history["eval"]], [math.log(e["perplexity"]) for e in history["eval"]], "o-",
                label="held-out loss (log perplexity)")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_title("tfgpt2 train")
    if ax.get_legend_handles_labels()[0]:  # a resumed run with nothing left to train has no curves
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
