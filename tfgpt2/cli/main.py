"""`tfgpt2` command line: one module per subcommand. Errors print one line and exit with code 2."""

import errno
import importlib
import os
import sys

from tfgpt2.cli.common import Parser, native_logs_hidden, quiet_tf
from tfgpt2.errors import ExportError

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
        except KeyboardInterrupt:
            print(f"tfgpt2 {args.command}: interrupted", file=sys.stderr)
            return 130
        except Exception as e:  # noqa: BLE001 - every failure ends as one line (--debug: the traceback)
            if args.debug:
                raise
            print(f"tfgpt2 {args.command}: error: {one_line(e)}", file=sys.stderr)
            return 2
    return 0


FULL_DISK = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
KNOWN = (ValueError, OSError, ImportError, ExportError)  # their messages name the fix; others get the class name too


def one_line(error):
    """The error as one line, with the fix when the cause is a full disk."""
    message = " ".join(str(error).split()) or type(error).__name__
    if not isinstance(error, KNOWN):
        message = f"{type(error).__name__}: {message} (rerun with --debug for the traceback)"
    if getattr(error, "errno", None) in FULL_DISK or any(os.strerror(n) in message for n in FULL_DISK):
        message += " — the disk (or the file size limit) is full: free space or write elsewhere"
    return message


if __name__ == "__main__":
    sys.exit(main())
