"""Whole LGE phantom studies: the LGE case, its DICOM series and a whole phantom of any contrast.

A study is an EMIDEC-shaped short-axis stack (5-13 slices, 1.2-2.0 mm pixels, 8-13 mm from slice
to slice, 140-300 pixels per axis) through a phantom thorax, with its EMIDEC label and the
parameters that made it. Case ``n`` of seed ``s`` is the same whatever the number of cases
asked for; every third case is normal (``Case_N...``), the others have an infarct
(``Case_P...``). The geometry and the renderer are :mod:`lgemri.phantom.render`'s, the subject,
truth and writing :mod:`lgemri.phantom.cases`'s, shared with the cine contrast
(:mod:`lgemri.phantom.cine`) and the real style.

``style="real"`` (``cardiac-mi phantom --style real``) renders the same hearts the SynthSeg way
(:mod:`lgemri.phantom.real`): abdominal organs, lungs with signal, random intensity per tissue
class (keeping LGE's infarct-bright, myocardium-dark, no-reflow-dark signature), bias field,
thick-slice partial volume, random resolution, Rician or PSIR-like noise, real fields of view
(150-400 mm, 0.7-2.0 mm pixels, 5-23 mm slices), zero-padded edge strips and 8- or 12-bit
values. The default, ``"classic"``, is unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..volume import Volume
from . import cine, real
from .cases import PhantomCase, case_truth, check_request, draw_subject, write_cases, write_series
from .render import Renderer, render_stack, sample_geometry

__all__ = ["make_case", "write_case", "write_phantom"]


def make_case(number: int, seed: int, territory: str | None = None, style: str = "classic") -> PhantomCase:
    """Generate phantom case ``number`` (1-based) of ``seed``.

    Args:
        number: case number; every third case is normal.
        seed: dataset seed.
        territory: force the coronary territory of the infarct (LAD, RCA, LCX).
        style: ``"classic"`` (the physics-informed phantom) or ``"real"``: the same heart with
            domain-randomised surroundings, intensities and acquisition (:mod:`lgemri.phantom.real`).
    """
    if real.check_style(style) == "real":
        return real.make_real_case(number, seed, territory)[0]
    case_id, rng, anatomy, contrast = draw_subject(number, seed, territory)
    geometry = sample_geometry(rng, anatomy)
    image, label = render_stack(Renderer(rng, anatomy, contrast, geometry), geometry)
    affine = geometry.affine()
    truth = case_truth(case_id, number, seed, anatomy, contrast, geometry, label)
    return PhantomCase(
        case_id, Volume(np.ascontiguousarray(image), affine), Volume(np.ascontiguousarray(label), affine), truth
    )


def _dicom_extra(truth: dict) -> dict:
    return {
        "SliceThickness": truth["slice_thickness_mm"],
        "InversionTime": truth["inversion_time_ms"],
        "RepetitionTime": truth["inversion_interval_ms"],
        "EchoTime": 1.2,
        "FlipAngle": 25,
        "HeartRate": int(round(truth["heart_rate_bpm"])),
        "MagneticFieldStrength": truth["field_strength_t"],
        "ScanningSequence": ["GR", "IR"],
        "SequenceVariant": ["SP", "MP"],
        "ScanOptions": "CG",
        "SequenceName": "LGE_IR_GRE",
        "PatientSex": "O",
    }


def write_case(
    case: PhantomCase,
    out_dir: str | os.PathLike,
    formats: tuple[str, ...] = ("emidec", "dicom"),
    *,
    series_description: str = "LGE SAX phantom",
    study_description: str = "Cardiac MRI LGE (cardiac_mi phantom)",
    series_number: int = 9,
    uid_prefix: str = "cardiac_mi-phantom",
    extra: dict | None = None,
) -> None:
    """Write one case: EMIDEC layout under ``out/emidec`` and a DICOM series under ``out/dicom``.

    The keywords describe the DICOM series (an LGE series by default; ``extra`` None: the LGE
    acquisition's attributes); ``uid_prefix`` with the seed and case id makes the UIDs
    reproducible (:func:`lgemri.phantom.cases.write_series`).
    """
    write_series(
        case,
        out_dir,
        formats,
        series_description=series_description,
        study_description=study_description,
        series_number=series_number,
        uid_prefix=uid_prefix,
        extra=_dicom_extra(case.truth) if extra is None else extra,
    )


def write_phantom(
    out_dir: str | os.PathLike,
    cases: int,
    seed: int,
    progress: bool = False,
    formats: tuple[str, ...] = ("emidec", "dicom"),
    contrast: str = "lge",
    style: str = "classic",
) -> Path:
    """Generate ``cases`` phantom studies into ``out_dir``; returns the path of ``phantom.json``.

    ``phantom.json`` lists every case's ground truth (infarct %, no-reflow %, territory, AHA
    segments, acquisition parameters). ``contrast="cine"`` renders the same subjects with
    bSSFP-like cine contrast (:mod:`lgemri.phantom.cine`), the CycleGAN's domain A.
    ``style="real"`` (LGE only) randomises everything but the heart's shape
    (:mod:`lgemri.phantom.real`); ``phantom.json`` then says ``"style": "real"``.
    """
    real.check_style(style)
    if style != "classic" and contrast != "lge":
        raise InputError(f"style {style!r} is for LGE contrast only, not {contrast!r}")
    check_request(cases, formats)
    if contrast == "lge" and style == "real":

        def make(number, seed):
            return make_case(number, seed, style="real")

        write, header = write_case, {"generator": "cardiac_mi LGE phantom", "style": "real"}
    elif contrast == "lge":
        make, write, header = make_case, write_case, {"generator": "cardiac_mi LGE phantom"}
    elif contrast == "cine":
        make, write, header = cine.make_cine_case, cine.write_cine_case, cine.HEADER
    else:
        raise InputError(f"unknown contrast {contrast!r}; choose lge or cine")
    description = f"{contrast} phantom" + (f" ({style})" if style != "classic" else "")
    return write_cases(
        out_dir, cases, seed, make, write, header, progress=progress, description=description, formats=formats
    )
