"""The flags that name a DICOMweb store, the same for ``upload``, ``pacs`` and ``report`` (torch-free).

::

    --store URL        the DICOMweb root, e.g. http://pacs:8042/dicom-web
                       (default $CARDIAC_MI_STUDIES, as for ``serve``, else $CARDIAC_MI_DICOMWEB_URL,
                       else the embedded Orthanc of --state)
    --user U           basic-auth user of --store (default $CARDIAC_MI_DICOMWEB_USER)
    --password P       basic-auth password (default $CARDIAC_MI_DICOMWEB_PASSWORD)
    --state DIR        state folder of the embedded Orthanc (default $CARDIAC_MI_STATE or ./state)

``--studies URL`` (the name ``upload`` and ``pacs`` had) is a hidden alias of ``--store URL``. ``--store``
without a URL names the configured store (what no flag names too); ``report`` stores only when
``--store`` (or ``--studies``) is given. The embedded Orthanc's own credentials are used for it unless
``--user`` is given; the environment's user and password belong to a ``--store`` URL.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from lgemri.errors import InputError

if TYPE_CHECKING:
    from cardiac_mi.store import DicomStore

__all__ = [
    "add_store_options",
    "store_settings",
    "store_from_args",
    "store_requested",
    "store_url",
    "embedded_store",
    "DefaultStore",
    "STORE_ENV",
    "URL_ENV",
    "USER_ENV",
    "PASSWORD_ENV",
]

STORE_ENV = "CARDIAC_MI_STUDIES"  # the same setting as ``cardiac-mi serve``
URL_ENV = "CARDIAC_MI_DICOMWEB_URL"  # what ``report`` read before; still read after $CARDIAC_MI_STUDIES
USER_ENV = "CARDIAC_MI_DICOMWEB_USER"
PASSWORD_ENV = "CARDIAC_MI_DICOMWEB_PASSWORD"

#: Returns the store used when no URL is given, as ``(dicomweb_url, user, password)``.
DefaultStore = Callable[[], tuple[str, str | None, str | None]]


def add_store_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, what: str = "", only_if_given: bool = False
) -> None:
    """Add ``--store [URL] --user U --password P --state DIR`` (and the hidden ``--studies URL``).

    Args:
        parser: the (sub-)command's parser or one of its argument groups.
        what: what the store is for, e.g. "store the DICOM report in"; starts the help of ``--store``.
        only_if_given: the command uses a store only when ``--store`` is given (``report``); otherwise
            no ``--store`` means the configured store.
    """
    start = f"{what} this DICOMweb root" if what else "DICOMweb root of the store"
    when = "without a URL" if only_if_given else "without a URL, or when not given"
    parser.add_argument(
        "--store",
        nargs="?",
        const="",
        metavar="URL",
        help=f"{start}, e.g. http://pacs:8042/dicom-web ({when}: ${STORE_ENV}, else ${URL_ENV}, "
        "else the embedded Orthanc of --state)",
    )
    parser.add_argument("--studies", dest="store", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument(
        "--user", help=f"basic-auth user (default: ${USER_ENV} with a URL, else the embedded Orthanc's credentials)"
    )
    parser.add_argument("--password", help=f"basic-auth password (default: ${PASSWORD_ENV})")
    parser.add_argument(
        "--state", type=Path, help="state folder of the embedded Orthanc (default: $CARDIAC_MI_STATE or ./state)"
    )


def store_requested(args: argparse.Namespace) -> bool:
    """Whether ``--store`` (or ``--studies``) was given, with or without a URL."""
    return getattr(args, "store", None) is not None


def store_url(args: argparse.Namespace) -> str | None:
    """The store's URL as the flags or the environment name it; None for the embedded Orthanc (no URL)."""
    return getattr(args, "store", None) or os.environ.get(STORE_ENV) or os.environ.get(URL_ENV) or None


def embedded_store(state: str | os.PathLike | None = None) -> tuple[str, str | None, str | None]:
    """The DICOMweb root and credentials of the running embedded Orthanc of ``state`` (default state folder).

    Raises:
        InputError: it does not run.
    """
    from cardiac_mi.orthanc import default_state_dir, running_orthanc

    folder = Path(state) if state else default_state_dir()
    orthanc = running_orthanc(folder)
    if orthanc is None:
        raise InputError(
            f"the embedded Orthanc of state folder {folder} is not running: start it with "
            f"`cardiac-mi serve --state {folder}`, or name another DICOMweb server with --store URL "
            f"(or ${STORE_ENV}, ${URL_ENV})"
        )
    user, password = orthanc.auth if orthanc.auth else (None, None)
    return orthanc.dicomweb_url, user, password


def store_settings(args: argparse.Namespace, default: DefaultStore | None = None) -> tuple[str, str | None, str | None]:
    """``(url, user, password)`` of the store named by the flags of :func:`add_store_options`.

    Args:
        args: the parsed flags.
        default: the store when no URL is given (by a flag or the environment); default the embedded
            Orthanc of ``--state``.

    Raises:
        InputError: half-given credentials, or no URL and the default store is not there.
    """
    password = args.password if args.password is not None else os.environ.get(PASSWORD_ENV)
    url = store_url(args)
    if url:
        user = args.user if args.user is not None else os.environ.get(USER_ENV) or None
        if (user is None) != (password is None):
            raise InputError(
                f"give both --user and --password (or ${USER_ENV} and ${PASSWORD_ENV}) for {url}, or neither"
            )
        return url, user, password
    found_url, found_user, found_password = default() if default is not None else embedded_store(args.state)
    if args.user is None:
        return found_url, found_user, found_password
    if password is None:
        raise InputError(f"--user needs --password (or ${PASSWORD_ENV})")
    return found_url, args.user, password


def store_from_args(args: argparse.Namespace, default: DefaultStore | None = None) -> DicomStore:
    """The :class:`~cardiac_mi.store.DicomStore` named by the flags (see :func:`store_settings`)."""
    from cardiac_mi.store import DicomStore

    return DicomStore(*store_settings(args, default))
