"""``cardiac-mi report --image PATH --label PATH --out DIR [--store [URL]]``: the clinical infarct report.

The report is :func:`lgemri.report.make_report` (offline); with ``--store`` its DICOM PDF and SR are then
stored by :func:`cardiac_mi.report.make_report` in the store the flags of
:func:`cardiac_mi.commands.options.add_store_options` name.
"""

from __future__ import annotations

import argparse
import functools
import logging
from pathlib import Path

from cardiac_mi.commands.options import DefaultStore, add_store_options, store_requested, store_settings
from lgemri.errors import InputError

__all__ = ["register", "cmd_report"]

logger = logging.getLogger(__name__)


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage 0-100, got {text!r}") from None
    if not 0.0 <= value <= 100.0:
        raise argparse.ArgumentTypeError(f"expected a percentage 0-100, got {text!r}")
    return value


def cmd_report(args: argparse.Namespace, default_store: DefaultStore | None = None) -> None:
    from cardiac_mi.report import make_report

    store_url, username, password = store_settings(args, default_store) if store_requested(args) else (None, None, None)
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
        base_first=args.base_first,
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

    ``args.func(args)`` writes the report and raises :class:`InputError` for bad input.

    Args:
        subparsers: where to add the sub-command.
        default_store: called when ``--store`` comes without a URL and the environment names none;
            returns ``(dicomweb_url, user, password)`` or raises :class:`InputError` saying why there is
            none. Default: the embedded Orthanc of ``--state``.

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
    add_store_options(parser, what="store the DICOM report (STOW-RS) in", only_if_given=True)
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
    order = parser.add_mutually_exclusive_group()
    order.add_argument(
        "--apex-first",
        dest="base_first",
        action="store_false",
        default=None,
        help="slice 0 is the apex (default: the narrow end of the LV is taken as the apex)",
    )
    order.add_argument("--base-first", dest="base_first", action="store_true", default=None, help="slice 0 is the base")
    parser.add_argument("--series-uid", help="series to read when the DICOM folder holds several")
    parser.set_defaults(func=functools.partial(cmd_report, default_store=default_store))
    return parser
