"""``cardiac-mi upload``: send DICOM files and folders to the embedded Orthanc or another DICOMweb server."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cardiac_mi.commands.options import add_store_options, store_from_args
from lgemri.errors import InputError

__all__ = ["register", "cmd_upload"]

logger = logging.getLogger(__name__)


def cmd_upload(args: argparse.Namespace) -> None:
    from cardiac_mi.store import upload

    store = store_from_args(args)
    store.ping()
    result = upload(args.paths, store)
    logger.info("%s: %s", store.url, result.summary())
    if result.refused:
        raise InputError(
            f"{len(result.refused)} of {result.total} files were refused (listed above); "
            f"{len(result.stored)} stored, {len(result.skipped)} already there"
        )


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``upload PATH... [--store URL] [--user U] [--password P] [--state DIR]``."""
    description = "send DICOM files or folders (walked recursively) to the embedded Orthanc or another DICOMweb server"
    p = subparsers.add_parser("upload", help=description, description=description)
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="DICOM files or folders")
    add_store_options(p, what="send them to")
    p.set_defaults(func=cmd_upload)
    return p
