"""The ``cardiac-mi`` command: thin wrappers over the library's functions.

Every sub-command validates its arguments, calls one API function and reports what it wrote.
Bad input ends with one line on stderr naming the problem (exit status 2), never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from lgemri.errors import InputError

__all__ = ["main", "build_parser"]

logger = logging.getLogger("cardiac_mi")


# The modules whose register(subparsers) adds the sub-commands, in the order of the help.
COMMANDS = (
    "cardiac_mi.commands.data",
    "cardiac_mi.commands.infer",
    "cardiac_mi.commands.train",
    "cardiac_mi.commands.evaluate",
    "cardiac_mi.commands.simulate",
    "cardiac_mi.commands.serve",
    "cardiac_mi.commands.users",
    "cardiac_mi.commands.upload",
    "cardiac_mi.commands.pacs",
    "cardiac_mi.commands.gan",
    "cardiac_mi.commands.report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cardiac-mi",
        description="Find and measure myocardial infarction in cardiac LGE MRI.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    try:
        args.func(args)
    except InputError as exc:
        print(f"cardiac-mi {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cardiac-mi {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
