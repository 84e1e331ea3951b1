"""The ``report`` sub-command: ``cardiac-mi report --image PATH --label PATH --out DIR``."""

from __future__ import annotations

import argparse
import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path

from ..errors import InputError

__all__ = ["register", "DefaultStore"]

logger = logging.getLogger(__name__)

#: Returns the configured DICOMweb server as ``(url, user, password)``.
DefaultStore = Callable[[], tuple[str, str | None, str | None]]


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage 0-100, got {text!r}") from None
    if not 0.0 <= value <= 100.0:
        raise argparse.ArgumentTypeError(f"expected a percentage 0-100, got {text!r}")
    return value


def _cmd_report(args: argparse.Namespace, default_store: DefaultStore | None = None) -> None:
    from .api import make_report
    from .store import PASSWORD_ENV, URL_ENV, USER_ENV

    store_url, username, password = args.store, None, None
    if store_url == "":  # --store without a URL: the configured server
        if os.environ.get(URL_ENV):
            store_url = os.environ[URL_ENV]
        elif default_store is not None:
            store_url, username, password = default_store()
        else:
            raise InputError(f"--store without a URL needs ${URL_ENV} (e.g. http://localhost:8042/dicom-web)")
    username = args.user if args.user is not None else os.environ.get(USER_ENV, username)
    password = args.password if args.password is not None else os.environ.get(PASSWORD_ENV, password)
    if not args.image.exists():
        raise InputError(f"{args.image}: no such file or folder")
    if not args.label.exists():
        raise InputError(f"{args.label}: no such file or folder")
    paths = make_report(
        args.image,
        args.label,
        args.out,
        store_url=store_url,
        username=username,
        password=password,
        viability_threshold=args.viability_threshold,
        rv_insertion_deg=args.rv_insertion,
        base_first=not args.apex_first,
        series_uid=args.series_uid,
    )
    for role, path in paths.items():
        logger.info("%-8s %s", role, path)
    if store_url:
        logger.info("stored the DICOM report (PDF and SR) to %s", store_url)


def register(
    subparsers: argparse._SubParsersAction, default_store: DefaultStore | None = None
) -> argparse.ArgumentParser:
    """Add the ``report`` sub-command to ``subparsers`` (from ``parser.add_subparsers()``).

    ``args.func(args)`` runs :func:`lgemri.report.make_report` and raises :class:`InputError`
    for bad input.

    Args:
        subparsers: where to add the sub-command.
        default_store: called when ``--store`` comes without a URL and ``$CARDIAC_MI_DICOMWEB_URL``
            is unset; returns the configured server's ``(dicomweb_url, user, password)`` (e.g. the
            embedded Orthanc) or raises :class:`InputError` saying why there is none.

    Returns:
        The sub-command's parser.
    """
    help_text = "quantify an infarct and write its report: JSON, bullseye PNG, HTML, PDF, DICOM PDF and SR"
    parser = subparsers.add_parser("report", help=help_text, description=help_text)
    parser.add_argument("--image", required=True, type=Path, help="LGE image: NIfTI file or DICOM series folder")
    parser.add_argument(
        "--label", required=True, type=Path, help="EMIDEC label on the image grid (NIfTI file or folder)"
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument(
        "--store",
        nargs="?",
        const="",
        metavar="URL",
        help="STOW-RS the DICOM report to this DICOMweb root (e.g. http://localhost:8042/dicom-web); "
        "without a URL, $CARDIAC_MI_DICOMWEB_URL or the configured server",
    )
    parser.add_argument("--user", help="basic-auth user for --store (default $CARDIAC_MI_DICOMWEB_USER)")
    parser.add_argument("--password", help="basic-auth password for --store (default $CARDIAC_MI_DICOMWEB_PASSWORD)")
    parser.add_argument(
        "--viability-threshold",
        type=_percent,
        default=50.0,
        metavar="PCT",
        help="segments with mean transmurality above this %% are non-viable (default 50; 75 in acute MI)",
    )
    parser.add_argument(
        "--rv-insertion",
        type=float,
        metavar="DEG",
        help="anterior RV insertion angle, degrees counter-clockwise from image right (default 120)",
    )
    parser.add_argument("--apex-first", action="store_true", help="slice 0 is the apex (default: slice 0 is the base)")
    parser.add_argument("--series-uid", help="series to read when the DICOM folder holds several")
    parser.set_defaults(func=functools.partial(_cmd_report, default_store=default_store))
    return parser
