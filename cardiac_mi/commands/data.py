"""Data commands: ``phantom``, ``prepare``, ``convert``, ``preview``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cardiac_mi.commands import add_command
from lgemri.errors import InputError

logger = logging.getLogger("cardiac_mi")


def _fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected three comma-separated fractions like 0.7,0.15,0.15, got {text!r}"
        ) from None


def _formats(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def cmd_phantom(args: argparse.Namespace) -> None:
    from lgemri.phantom import write_phantom

    index = write_phantom(
        args.out,
        args.cases,
        args.seed,
        progress=not args.quiet,
        formats=args.format,
        contrast=args.contrast,
        style=args.style,
    )
    logger.info("wrote %d phantom studies to %s (ground truth: %s)", args.cases, args.out, index)


def cmd_prepare(args: argparse.Namespace) -> None:
    from lgemri.emidec import prepare_dataset

    manifest = prepare_dataset(
        args.emidec,
        args.out,
        spacing=args.spacing,
        roi_size=args.roi,
        fractions=args.split,
        seed=args.seed,
        progress=not args.quiet,
        layout=args.layout,
    )
    logger.info("wrote slices and manifest %s", manifest)


def cmd_convert(args: argparse.Namespace) -> None:
    from lgemri.dicom import read_dicom_series, write_dicom_series
    from lgemri.images import is_nifti
    from lgemri.volume import read_nifti, write_nifti

    src, dst = Path(args.input), Path(args.out)
    if src.is_dir():
        if not is_nifti(dst):
            raise InputError(f"{dst}: a DICOM folder converts to a NIfTI file; give --out a .nii.gz name")
        series = read_dicom_series(src, args.series_uid)
        write_nifti(series.volume, dst)
        logger.info("%s (%d slices, series %s) -> %s", src, series.volume.shape[2], series.series_uid, dst)
    elif is_nifti(src):
        patient_id = args.patient_id or src.name.split(".")[0]
        files = write_dicom_series(
            read_nifti(src), dst, patient_id=patient_id, patient_name=patient_id, series_description=args.description
        )
        logger.info("%s -> %d DICOM files in %s", src, len(files), dst)
    else:
        raise InputError(f"{src}: expected a DICOM series folder or a NIfTI file (.nii, .nii.gz)")


def cmd_preview(args: argparse.Namespace) -> None:
    from lgemri.images import read_image
    from lgemri.preview import save_montage

    image = read_image(args.image)
    label = read_image(args.label) if args.label else None
    if label is not None and label.shape != image.shape:
        raise InputError(
            f"{args.label}: label shape {label.shape} differs from image shape {image.shape} ({args.image})"
        )
    path = save_montage(image, args.out, label, title=Path(args.image).name)
    logger.info("wrote %s", path)


def register(sub) -> None:
    p = add_command(
        sub, "phantom", cmd_phantom, "generate physics-informed LGE phantom studies with EMIDEC ground truth"
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (emidec/, dicom/, phantom.json)")
    p.add_argument("--cases", type=int, default=10, help="number of studies (every third is normal; default 10)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument(
        "--format", type=_formats, default=("emidec", "dicom"), help="comma-separated: emidec, dicom (default both)"
    )
    p.add_argument(
        "--contrast",
        choices=("lge", "cine"),
        default="lge",
        help="LGE (default) or cine bSSFP-like contrast (the CycleGAN's domain A)",
    )
    p.add_argument(
        "--style",
        choices=("classic", "real"),
        default="classic",
        help="classic (default) or real: the same hearts with domain-randomised surroundings, intensities and acquisition (LGE only)",
    )

    p = add_command(
        sub,
        "prepare",
        cmd_prepare,
        "turn an EMIDEC-layout folder into named 2D slices, LV crops, a split and a manifest",
    )
    p.add_argument(
        "--emidec",
        required=True,
        type=Path,
        help="folder with Case_N*/Case_P* sub-folders, or images/ and labels/ of PNG slices",
    )
    p.add_argument(
        "--layout",
        choices=("auto", "nifti", "png"),
        default="auto",
        help="EMIDEC NIfTI as distributed, PNG slices (pixel size recovered from the LV), or auto (default)",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--spacing", type=float, default=1.0, help="in-plane voxel size in mm (default 1.0)")
    p.add_argument("--roi", type=int, default=128, help="side of the LV-centred crop in voxels (default 128)")
    p.add_argument(
        "--split",
        type=_fractions,
        default=(0.7, 0.15, 0.15),
        help="train,val,test fractions by case (default 0.7,0.15,0.15)",
    )
    p.add_argument("--seed", type=int, default=0, help="split seed (default 0)")

    p = add_command(
        sub, "convert", cmd_convert, "convert a DICOM series folder to NIfTI, or a NIfTI file to a DICOM MR series"
    )
    p.add_argument("--input", required=True, help="DICOM folder or .nii/.nii.gz file")
    p.add_argument("--out", required=True, help=".nii.gz file (from DICOM) or folder (from NIfTI)")
    p.add_argument("--series-uid", help="series to read when the folder holds several")
    p.add_argument("--patient-id", help="PatientID for NIfTI -> DICOM (default: the file name)")
    p.add_argument("--description", default="", help="SeriesDescription for NIfTI -> DICOM")

    p = add_command(sub, "preview", cmd_preview, "save a PNG montage of a study's slices with label outlines")
    p.add_argument("--image", required=True, help="DICOM folder or NIfTI file")
    p.add_argument("--label", help="label NIfTI file or folder (EMIDEC classes)")
    p.add_argument("--out", required=True, type=Path, help="PNG file to write")
