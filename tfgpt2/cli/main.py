"""`tfgpt2` command line: one module per subcommand. Errors print one line and exit with code 2."""

import importlib
import sys

from tfgpt2.cli.common import Parser, native_logs_hidden, quiet_tf

COMMANDS = ("demo", "generate", "train", "export", "verify", "info", "bench")


def build_parser():
    parser = Parser(prog="tfgpt2", description="GPT-2 for TensorFlow / Keras 3.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"tfgpt2.cli.{name}")
        module.add_arguments(sub.add_parser(name, help=module.HELP))
    return parser


def main(argv=None):
    """Runs one subcommand; returns its exit code (0, or 2 with one line on stderr)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse has printed its one line (or the help)
        return e.code
    quiet_tf()
    with native_logs_hidden(args.debug):
        try:
            importlib.import_module(f"tfgpt2.cli.{args.command}").run(args)
        except (ValueError, OSError) as e:  # FileNotFoundError, FileExistsError, PermissionError are OSErrors
            if args.debug:
                raise
            message = " ".join(str(e).split())  # one line
            print(f"tfgpt2 {args.command}: error: {message}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
