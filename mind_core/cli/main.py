"""``python -m mind_core <command>``: the command-line interface.

Each command lives in its own module that exposes ``register(subparsers)``; handlers import heavy libraries
(torch, faiss, transformers) lazily so ``--help`` stays fast. Errors a user can fix exit with code 2 and a
one-line message, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from mind_core.cli.common import UserError

#: modules that add sub-commands (each has ``register(subparsers)``)
COMMAND_MODULES = (
    "mind_core.cli.kb",
    "mind_core.cli.distill",
    "mind_core.cli.eval",
    "mind_core.cli.scores",
    "mind_core.cli.critic",
    "mind_core.cli.check_backend",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mind_core",
        description="MIND Explorer: build, search and grow a multimodal shopping-intention knowledge base.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    from mind_core.io import LockBusy
    from mind_core.kb.store import KBError  # e.g. a file found damaged while a command reads it
    from mind_core.lvlm.base import BackendError
    from mind_core.schema import ValidationError

    try:
        return int(args.handler(args) or 0)
    except (UserError, KBError, ValidationError, BackendError, LockBusy, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
