"""What every phantom case shares, whatever its contrast or style: its subject, truth and files.

Case ``n`` of seed ``s`` draws its subject (:func:`draw_subject`: anatomy, then LGE contrast) from
one generator, first, so the LGE, cine and real-style renderings of a case show the same heart.
:func:`case_truth` is its ground truth (infarct %, no-reflow %, territory, AHA segments,
acquisition parameters), :func:`write_series` writes it as the EMIDEC layout and a DICOM series,
and :func:`write_cases` writes a whole phantom with its ``phantom.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .. import aha
from ..atomic import write_text
from ..errors import InputError
from ..labels import NO_REFLOW, infarct_mask, myocardium_mask
from ..volume import Volume, write_nifti
from .anatomy import Anatomy, sample_anatomy
from .mr import Contrast, sample_contrast
from .render import Geometry

__all__ = [
    "PhantomCase",
    "FORMATS",
    "draw_subject",
    "case_truth",
    "infarct_segments",
    "check_request",
    "write_series",
    "write_cases",
]

logger = logging.getLogger(__name__)

FORMATS = ("emidec", "dicom")


@dataclasses.dataclass
class PhantomCase:
    """One phantom study with its ground truth."""

    case_id: str
    image: Volume  # int16 magnitude, 0-4095
    label: Volume  # uint8, EMIDEC classes
    truth: dict  # parameters and derived ground-truth figures (JSON-ready)


def draw_subject(number: int, seed: int, territory: str | None):
    """Case id, generator, anatomy and contrast of case ``number`` of ``seed`` (the draws every
    style and contrast share, in this order)."""
    if number < 1:
        raise InputError(f"case numbers start at 1, got {number}")
    pathological = number % 3 != 0
    case_id = f"Case_{'P' if pathological else 'N'}{number:03d}"
    rng = np.random.default_rng([seed, number])
    try:
        anatomy = sample_anatomy(rng, pathological, territory)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    contrast = sample_contrast(rng)
    return case_id, rng, anatomy, contrast


def infarct_segments(
    label: np.ndarray, spacing: tuple[float, float], rv_insertion_deg: float, min_fraction: float = 0.05
) -> dict[int, float]:
    """Infarct fraction of each AHA segment's myocardium for a base-first label volume.

    Returns the segments whose infarct (labels 3 and 4) covers at least ``min_fraction`` of their
    myocardium, with that fraction.
    """
    segments = aha.assign_segments(label, spacing, rv_insertion_deg)
    on_wall = segments > 0
    seg = segments[on_wall].astype(np.intp)
    total = np.bincount(seg, minlength=18)
    hit = np.bincount(seg[infarct_mask(label[on_wall])], minlength=18)
    fractions = {s: int(hit[s]) / int(total[s]) for s in range(1, 18) if total[s]}
    return {seg: round(f, 4) for seg, f in fractions.items() if f >= min_fraction}


def case_truth(
    case_id, number, seed, anatomy: Anatomy, contrast: Contrast, geometry: Geometry, label: np.ndarray
) -> dict:
    """The JSON-ready ground truth of one case: parameters and the figures of its label."""
    myo = int(myocardium_mask(label).sum())
    scar = int(infarct_mask(label).sum())
    mvo = int((label == NO_REFLOW).sum())
    insertion = anatomy.rv_insertion_deg()
    truth = {
        "case_id": case_id,
        "number": number,
        "seed": seed,
        "group": case_id[5],
        "shape": [geometry.cols, geometry.rows, geometry.slices],
        "pixel_mm": geometry.pixel_mm,
        "slice_thickness_mm": geometry.thickness_mm,
        "slice_spacing_mm": geometry.spacing_mm,
        "lv_endo_diameter_base_mm": round(2 * anatomy.r_endo_base, 2),
        "lv_wall_base_mm": round(anatomy.r_epi_base - anatomy.r_endo_base, 2),
        "lv_length_mm": round(anatomy.length, 2),
        "rv_insertion_deg": round(insertion, 2),
        "inversion_time_ms": round(contrast.inversion_time, 1),
        "t1_blood_ms": round(contrast.t1_blood, 1),
        "t1_myocardium_ms": round(contrast.t1_myocardium, 1),
        "misnull": round(contrast.misnull, 4),
        "snr_blood": round(contrast.snr, 2),
        "field_strength_t": contrast.field_strength,
        "heart_rate_bpm": round(contrast.heart_rate, 1),
        "inversion_interval_ms": round(contrast.recovery_ms, 1),
        "myocardium_voxels": myo,
        "infarct_voxels": scar,
        "no_reflow_voxels": mvo,
        "infarct_percent_lv": round(100.0 * scar / myo, 3) if myo else 0.0,
        "no_reflow_percent_lv": round(100.0 * mvo / myo, 3) if myo else 0.0,
        "territory": anatomy.infarct.territory if anatomy.infarct else None,
        "max_transmurality": round(anatomy.infarct.transmurality, 3) if anatomy.infarct else 0.0,
        "infarct_segments": {},
    }
    if scar:
        segs = infarct_segments(label, (geometry.pixel_mm, geometry.pixel_mm), insertion)
        truth["infarct_segments"] = {str(k): v for k, v in segs.items()}
    return truth


def write_series(
    case: PhantomCase,
    out_dir: str | os.PathLike,
    formats: tuple[str, ...],
    *,
    series_description: str,
    study_description: str,
    series_number: int,
    uid_prefix: str,
    extra: dict,
) -> None:
    """Write one case: EMIDEC layout under ``out/emidec`` and a DICOM series under ``out/dicom``.

    The keywords describe the DICOM series (``extra``: more DICOM attributes by keyword);
    ``uid_prefix`` with the seed and case id makes the UIDs reproducible.
    """
    out = Path(out_dir)
    cid = case.case_id
    if "emidec" in formats:
        write_nifti(case.image, out / "emidec" / cid / "Images" / f"{cid}.nii.gz")
        write_nifti(case.label, out / "emidec" / cid / "Contours" / f"{cid}.nii.gz")
    if "dicom" in formats:
        from ..dicom import write_dicom_series

        short = cid.removeprefix("Case_")
        write_dicom_series(
            case.image,
            out / "dicom" / cid,
            patient_id=f"PHANTOM-{short}",
            patient_name=f"Phantom^{short}",
            series_description=series_description,
            study_description=study_description,
            series_number=series_number,
            uid_entropy=f"{uid_prefix}-{case.truth['seed']}-{cid}",
            extra=extra,
        )


def check_request(cases: int, formats: tuple[str, ...]) -> None:
    """InputError unless ``cases`` is at least 1 and every format is one of :data:`FORMATS`."""
    if cases < 1:
        raise InputError(f"--cases must be at least 1, got {cases}")
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise InputError(f"unknown output format(s) {sorted(unknown)}; choose from {', '.join(FORMATS)}")


def write_cases(
    out_dir: str | os.PathLike,
    cases: int,
    seed: int,
    make: Callable[[int, int], PhantomCase],
    write: Callable[[PhantomCase, Path, tuple[str, ...]], None],
    header: dict,
    *,
    progress: bool = False,
    description: str = "phantom",
    formats: tuple[str, ...] = FORMATS,
) -> Path:
    """Cases 1 to ``cases`` of ``seed`` made by ``make`` and written by ``write`` into ``out_dir``.

    Writes ``phantom.json`` (``header``, the seed and every case's truth) and returns its path.

    Raises:
        InputError: ``cases < 1`` or an unknown format.
    """
    check_request(cases, formats)
    out = Path(out_dir)
    numbers = range(1, cases + 1)
    if progress:
        from tqdm import tqdm

        numbers = tqdm(numbers, desc=description, unit="case")
    truths = []
    for number in numbers:
        case = make(number, seed)
        write(case, out, tuple(formats))
        truths.append(case.truth)
        logger.info(
            "%s: %s slices, infarct %.1f %% LV",
            case.case_id,
            case.truth["shape"][2],
            case.truth.get("infarct_percent_lv", 0.0),
        )
    path = out / "phantom.json"
    write_text(path, json.dumps({**header, "seed": seed, "cases": truths}, indent=1) + "\n")
    return path
