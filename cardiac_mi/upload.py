"""``cardiac-mi upload``: send DICOM files and folders to the embedded Orthanc or another DICOMweb server."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from lgemri.errors import InputError

if TYPE_CHECKING:
    from cardiac_mi.store import DicomStore

__all__ = ["register", "cmd_upload", "add_store_arguments", "store_from_args"]

logger = logging.getLogger(__name__)

PASSWORD_ENV = "CARDIAC_MI_DICOMWEB_PASSWORD"
USER_ENV = "CARDIAC_MI_DICOMWEB_USER"
STUDIES_ENV = "CARDIAC_MI_STUDIES"  # the same settings as ``cardiac-mi serve``


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags that name the DICOMweb store: ``--studies URL --user U --password P --state DIR``.

    ``store_from_args`` turns them into a ``DicomStore``; ``upload`` and ``pacs`` share them.
    """
    parser.add_argument(
        "--studies",
        metavar="URL",
        default=os.environ.get(STUDIES_ENV) or None,
        help="DICOMweb root of another server, e.g. http://pacs:8042/dicom-web "
        f"(default: ${STUDIES_ENV}, else the embedded Orthanc of --state)",
    )
    parser.add_argument(
        "--user", help=f"basic-auth user (default: ${USER_ENV} with --studies, else the embedded Orthanc's credentials)"
    )
    parser.add_argument("--password", help=f"basic-auth password (default: ${PASSWORD_ENV})")
    parser.add_argument(
        "--state", type=Path, help="state folder of the embedded Orthanc (default: $CARDIAC_MI_STATE or ./state)"
    )


def store_from_args(args: argparse.Namespace) -> DicomStore:
    """The store named by the flags of ``add_store_arguments``: ``--studies`` or the running embedded Orthanc.

    Raises:
        InputError: half-given credentials, or no ``--studies`` and the embedded Orthanc does not run.
    """
    from cardiac_mi.orthanc import default_state_dir, running_orthanc
    from cardiac_mi.store import DicomStore

    password = args.password if args.password is not None else os.environ.get(PASSWORD_ENV)
    if args.studies:
        user = args.user if args.user is not None else os.environ.get(USER_ENV) or None
        if (user is None) != (password is None):
            raise InputError(
                f"give both --user and --password (or ${USER_ENV} and ${PASSWORD_ENV}) for {args.studies}, or neither"
            )
        return DicomStore(args.studies, user, password)
    state = args.state or default_state_dir()
    orthanc = running_orthanc(state)
    if orthanc is None:
        raise InputError(
            f"the embedded Orthanc of state folder {state} is not running: start it with "
            f"`cardiac-mi serve --state {state}`, or give another DICOMweb server with --studies URL"
        )
    if args.user is not None:
        if password is None:
            raise InputError(f"--user needs --password (or ${PASSWORD_ENV})")
        user = args.user
    else:
        user, password = orthanc.auth if orthanc.auth else (None, None)
    return DicomStore(orthanc.dicomweb_url, user, password)


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
    """Add ``upload PATH... [--studies URL] [--user U] [--password P] [--state DIR]``."""
    description = "send DICOM files or folders (walked recursively) to the embedded Orthanc or another DICOMweb server"
    p = subparsers.add_parser("upload", help=description, description=description)
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="DICOM files or folders")
    add_store_arguments(p)
    p.set_defaults(func=cmd_upload)
    return p
