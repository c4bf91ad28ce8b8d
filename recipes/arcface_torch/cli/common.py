"""What every command-line tool shares: the --force flag (with its deprecated --overwrite alias) and the one-line
failure. Standard library only, so a tool can use it before it parses its arguments."""

from __future__ import annotations

import argparse
import sys


def fail(message) -> int:
    """Print `error: <message>` as one line on stderr and return the exit status 1."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    return 1


def force_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """--force (replace an existing output: `what`) and --overwrite, its deprecated alias."""
    parser.add_argument("--force", action="store_true", help=what)
    parser.add_argument("--overwrite", action="store_true", help="deprecated: the same as --force")


def warn_deprecated_overwrite(args: argparse.Namespace) -> None:
    """Turn a given --overwrite into --force, with a one-line notice on stderr."""
    if getattr(args, "overwrite", False):
        print("note: --overwrite is deprecated; use --force, which does the same", file=sys.stderr)
        args.force = True
