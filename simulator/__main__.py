"""``python -m simulator ARGS`` runs ``cardiac-mi simulate ARGS`` (same options, same exit codes)."""

from __future__ import annotations

import argparse
import logging
import sys

from lgemri.errors import InputError

from .cli import register


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m simulator")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    register(parser.add_subparsers(dest="command", required=True))
    quiet = any(a in ("-q", "--quiet") for a in argv)
    args = parser.parse_args([*(["-q"] if quiet else []), "simulate", *(a for a in argv if a not in ("-q", "--quiet"))])
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except InputError as exc:
        print(f"cardiac-mi simulate: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
