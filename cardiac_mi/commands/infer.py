"""``cardiac-mi infer``: the whole cascade on NIfTI files or DICOM series folders."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cardiac_mi.commands import add_command
from lgemri.errors import InputError

logger = logging.getLogger("cardiac_mi")


def cmd_infer(args: argparse.Namespace) -> None:
    from cardiac_mi.ids import device_problem
    from lgemri.dicom import require_modality
    from lgemri.inference import Cascade, infer_file

    # what would fail after the models have loaded (or segment a CT without a word) is refused first
    problem = device_problem(args.device, "--device")
    if problem:
        raise InputError(problem)
    for path in args.input:
        if Path(path).is_dir():
            require_modality(path, args.series_uid)
    cascade = Cascade.load(args.models, device=args.device)
    for path in args.input:
        label, summary = infer_file(path, args.out, cascade, args.series_uid)
        logger.info("wrote %s and %s", label, summary)


def register(sub) -> None:
    p = add_command(
        sub, "infer", cmd_infer, "segment a study: LV localization, 128 mm ROI, ResAtt-U-Net, label on the input grid"
    )
    p.add_argument("--input", required=True, nargs="+", help="NIfTI file(s) or folder(s) with one DICOM series each")
    p.add_argument("--out", required=True, type=Path, help="output folder for <name>.nii.gz and <name>.json")
    p.add_argument(
        "--models",
        type=Path,
        help="folder with localization.pt and segmentation.pt (default: models/ or $CARDIAC_MI_MODELS)",
    )
    p.add_argument("--series-uid", help="series to read when the DICOM folder holds several")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
