"""The ``gemrepro`` command: one sub-command module per stage.

Each module in this package defines ``register(subparsers)`` which adds its commands and sets
``func`` on their parsers. Errors a user can fix (bad input) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from gemrepro import __version__

# Sub-command modules, in the order ``--help`` lists them.
COMMAND_MODULES = ("data", "model", "train", "md", "stress", "campaign", "estimate", "artifacts", "bench")


class UserError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gemrepro",
        description="Reproduce 'How robust are GemNet potentials in long and hot MD?' at any scale.",
    )
    parser.add_argument("--version", action="version", version=f"gemrepro {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"gemrepro.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"gemrepro.cli.{name}":
                continue  # that stage is not part of this installation yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (UserError, ValueError, FileNotFoundError) as exc:
        print(f"gemrepro {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a folder that cannot be written, a full disk: the file and the reason, in one line
        where = f"{exc.filename}: " if exc.filename else ""
        expected = "; expected a folder there" if isinstance(exc, (FileExistsError, NotADirectoryError)) else ""
        code = exc.errno or (exc.args[0] if len(exc.args) == 1 and isinstance(exc.args[0], int) else None)
        reason = exc.strerror or (os.strerror(code) if code else str(exc).splitlines()[0] if str(exc) else "")
        print(f"gemrepro {args.command}: error: {where}{reason or type(exc).__name__}{expected}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
