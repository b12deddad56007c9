"""`tfgpt2 verify`: re-checks an export directory (hashes, signatures, runs)."""

HELP = "re-check an export directory (hashes, signatures, runs)"


def add_arguments(p):
    p.add_argument("directory")


def run(args):
    from tfgpt2.export import verify

    verify.verify_dir(args.directory)
