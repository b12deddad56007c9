"""What the subcommands share: quiet TF logs, one-line argparse errors, the model's tokenizer, checks."""

import argparse
import atexit
import contextlib
import os
import sys


def quiet_tf():
    """Fewer TF log lines (the rest is hidden by native_logs_hidden)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@contextlib.contextmanager
def native_logs_hidden(debug):
    """TF, absl, CUDA probing and LiteRT log from C++ straight to file descriptor 2, whatever
    TF_CPP_MIN_LOG_LEVEL says. Unless `--debug`, fd 2 points at /dev/null while a command runs and
    Python's `sys.stderr` (the command's one-line errors) keeps the real stream."""
    if debug:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        real = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # already redirected in Python (e.g. captured)
        real = False
    previous = sys.stderr
    if real:
        sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1, encoding=previous.encoding,
                               errors="backslashreplace")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        sys.stderr.flush()
        if real:
            sys.stderr.close()
            sys.stderr = previous
        os.dup2(saved, 2)
        os.close(saved)
        if "ai_edge_litert" in sys.modules and not _EXIT_HIDDEN:
            # LiteRT's accelerator registry logs its own destruction after Python has finished
            _EXIT_HIDDEN.append(atexit.register(_hide_fd2))


_EXIT_HIDDEN = []


def _hide_fd2():
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `tfgpt2 <command>: error: ...`, exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def tokenizer_for(model_dir):
    """The tokenizer saved beside a model, else the bundled GPT-2 one."""
    from tfgpt2 import GPT2Tokenizer

    if os.path.isdir(model_dir) and (os.path.exists(os.path.join(model_dir, "vocab.json"))
                                     or os.path.exists(os.path.join(model_dir, "tokenizer.json"))):
        return GPT2Tokenizer.from_pretrained(model_dir)
    return GPT2Tokenizer()


def add_recipe_arguments(p, steps, epochs):
    """The training-recipe flags `demo` and `train` share (tfgpt2.training.TrainingRecipe)."""
    p.add_argument("--steps", type=int, default=steps, help="optimizer steps in total")
    p.add_argument("--epochs", type=int, default=epochs, help="evaluation rounds the steps are split into")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)


def recipe_from(args, **extra):
    """The TrainingRecipe the flags describe, after checking them."""
    from tfgpt2.training import TrainingRecipe

    if args.epochs < 1 or args.steps < args.epochs:
        raise ValueError(f"--steps ({args.steps}) must be >= --epochs ({args.epochs}) >= 1")
    if args.n_embd % args.n_head:
        raise ValueError(f"--n-embd ({args.n_embd}) must be divisible by --n-head ({args.n_head})")
    if args.seq_len < 8:
        raise ValueError(f"--seq-len must be >= 8, got {args.seq_len}")
    if args.lr <= 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}")
    return TrainingRecipe(n_embd=args.n_embd, n_layer=args.n_layer, n_head=args.n_head, seq_len=args.seq_len,
                          steps=args.steps, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          seed=args.seed, **extra)
