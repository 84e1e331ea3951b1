"""The ``cardiac-mi`` command: thin wrappers over the library's functions.

Every sub-command validates its arguments, calls one API function and reports what it wrote.
Bad input ends with one line on stderr naming the problem (exit status 2), never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from lgemri.errors import InputError

__all__ = ["main", "build_parser"]

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


def cmd_infer(args: argparse.Namespace) -> None:
    from cardiac_mi.ids import device_problem
    from lgemri.dicom import require_modality
    from lgemri.inference import infer_file, load_models

    # what would fail after the models have loaded (or segment a CT without a word) is refused first
    problem = device_problem(args.device, "--device")
    if problem:
        raise InputError(problem)
    for path in args.input:
        if Path(path).is_dir():
            require_modality(path, args.series_uid)
    models = load_models(args.models, device=args.device)
    for path in args.input:
        label, summary = infer_file(path, args.out, models, args.series_uid)
        logger.info("wrote %s and %s", label, summary)


def embedded_store() -> tuple[str, str | None, str | None]:
    """The DICOMweb root and credentials of the embedded Orthanc of the default state folder."""
    from cardiac_mi.orthanc import default_state_dir, running_orthanc

    state = default_state_dir()
    server = running_orthanc(state)
    if server is None:
        raise InputError(
            f"no embedded Orthanc runs for state folder {state}: start it with `cardiac-mi serve` or give --store URL"
        )
    user, password = server.auth or (None, None)
    return server.dicomweb_url, user, password


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cardiac-mi",
        description="Find and measure myocardial infarction in cardiac LGE MRI.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], None], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    p = add("phantom", cmd_phantom, "generate physics-informed LGE phantom studies with EMIDEC ground truth")
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

    p = add(
        "prepare", cmd_prepare, "turn an EMIDEC-layout folder into named 2D slices, LV crops, a split and a manifest"
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

    p = add("convert", cmd_convert, "convert a DICOM series folder to NIfTI, or a NIfTI file to a DICOM MR series")
    p.add_argument("--input", required=True, help="DICOM folder or .nii/.nii.gz file")
    p.add_argument("--out", required=True, help=".nii.gz file (from DICOM) or folder (from NIfTI)")
    p.add_argument("--series-uid", help="series to read when the folder holds several")
    p.add_argument("--patient-id", help="PatientID for NIfTI -> DICOM (default: the file name)")
    p.add_argument("--description", default="", help="SeriesDescription for NIfTI -> DICOM")

    p = add("infer", cmd_infer, "segment a study: LV localization, 128 mm ROI, ResAtt-U-Net, label on the input grid")
    p.add_argument("--input", required=True, nargs="+", help="NIfTI file(s) or folder(s) with one DICOM series each")
    p.add_argument("--out", required=True, type=Path, help="output folder for <name>.nii.gz and <name>.json")
    p.add_argument(
        "--models",
        type=Path,
        help="folder with localization.pt and segmentation.pt (default: models/ or $CARDIAC_MI_MODELS)",
    )
    p.add_argument("--series-uid", help="series to read when the DICOM folder holds several")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")

    from cardiac_mi.pacs import register as register_pacs
    from cardiac_mi.serve import register as register_serve
    from cardiac_mi.upload import register as register_upload
    from cardiac_mi.users import register as register_users
    from gan.cli import register as register_gan
    from lgemri.evaluation import register as register_evaluate
    from lgemri.report.cli import register as register_report
    from lgemri.training.cli import register as register_train
    from simulator.cli import register as register_simulate

    register_train(sub)
    register_evaluate(sub)
    register_simulate(sub)
    register_serve(sub)
    register_users(sub)
    register_upload(sub)
    register_pacs(sub)
    register_gan(sub)
    register_report(sub, default_store=embedded_store)

    p = add("preview", cmd_preview, "save a PNG montage of a study's slices with label outlines")
    p.add_argument("--image", required=True, help="DICOM folder or NIfTI file")
    p.add_argument("--label", help="label NIfTI file or folder (EMIDEC classes)")
    p.add_argument("--out", required=True, type=Path, help="PNG file to write")
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
