"""The ``cardiac-mi`` sub-commands, one module per group, each thin over an importable API.

Every module has ``register(subparsers)``, which adds its commands with ``set_defaults(func=...)``.
Parsing stays free of torch: the handlers import what they need when they run.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], None]


def add_command(sub, name: str, func: Handler, help: str) -> argparse.ArgumentParser:
    """A sub-command with its one-line help as its description too."""
    parser = sub.add_parser(name, help=help, description=help)
    parser.set_defaults(func=func)
    return parser
