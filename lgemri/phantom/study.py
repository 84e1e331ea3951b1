"""Whole LGE phantom studies: sampling, rendering, ground truth and writing to disk.

A study is an EMIDEC-shaped short-axis stack (5-13 slices, 1.2-2.0 mm pixels, 8-13 mm from slice
to slice, 140-300 pixels per axis) through a phantom thorax, with its EMIDEC label and the
parameters that made it. Case ``n`` of seed ``s`` is the same whatever the number of cases
asked for; every third case is normal (``Case_N...``), the others have an infarct
(``Case_P...``).

``style="real"`` (``cardiac-mi phantom --style real``) renders the same hearts the SynthSeg way
(:mod:`lgemri.phantom.real`): abdominal organs, lungs with signal, random intensity per tissue
class (keeping LGE's infarct-bright, myocardium-dark, no-reflow-dark signature), bias field,
thick-slice partial volume, random resolution, Rician or PSIR-like noise, real fields of view
(150-400 mm, 0.7-2.0 mm pixels, 5-23 mm slices), zero-padded edge strips and 8- or 12-bit
values. The default, ``"classic"``, is unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from .. import aha
from ..atomic import write_text
from ..errors import InputError
from ..labels import INFARCT, NO_REFLOW, infarct_mask, myocardium_mask
from ..volume import LPS_TO_RAS, Volume, write_nifti
from .anatomy import Anatomy, Tissue, sample_anatomy
from .mr import Contrast, coil_sensitivity, sample_contrast, signal_table, smooth_field

__all__ = ["Geometry", "PhantomCase", "make_case", "write_case", "write_phantom"]

logger = logging.getLogger(__name__)

SUPERSAMPLE = 2  # in-plane sub-pixels per pixel and axis, for partial volume
SUB_SLICES = tuple(np.linspace(-0.45, 0.45, 9))  # positions across the slice thickness (fractions)
MAX_STORED = 4095  # 12-bit magnitude, as MR scanners store it


@dataclasses.dataclass
class Geometry:
    """Where the short-axis stack lies, in the heart frame and in the patient (LPS)."""

    pixel_mm: float
    rows: int
    cols: int
    thickness_mm: float
    spacing_mm: float
    z0: float  # heart-frame z of slice 0 (the most basal)
    slices: int
    centre_xy: tuple[float, float]  # heart-frame (x, y) of the image centre
    long_axis: np.ndarray  # LPS unit vector, base to apex
    right: np.ndarray  # LPS unit vector of image right (heart-frame x)
    up: np.ndarray  # LPS unit vector of image up (heart-frame y)
    heart_origin: np.ndarray  # LPS position of the heart-frame origin

    def plane_xy(self, supersample: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Heart-frame x and y of the (sub)pixel centres of one slice, shaped (rows, cols)."""
        rows = (np.arange(self.rows * supersample) + 0.5) / supersample - 0.5
        cols = (np.arange(self.cols * supersample) + 0.5) / supersample - 0.5
        x = (cols - (self.cols - 1) / 2.0) * self.pixel_mm + self.centre_xy[0]
        y = -(rows - (self.rows - 1) / 2.0) * self.pixel_mm + self.centre_xy[1]
        return np.meshgrid(x, y)

    def z(self, k: int) -> float:
        return self.z0 + k * self.spacing_mm

    def affine(self) -> np.ndarray:
        """Voxel (i = column, j = row, k = slice) to RAS affine."""
        lps = np.eye(4)
        lps[:3, 0] = self.right * self.pixel_mm
        lps[:3, 1] = -self.up * self.pixel_mm
        lps[:3, 2] = self.long_axis * self.spacing_mm
        corner_x = -(self.cols - 1) / 2.0 * self.pixel_mm + self.centre_xy[0]
        corner_y = (self.rows - 1) / 2.0 * self.pixel_mm + self.centre_xy[1]
        lps[:3, 3] = self.heart_origin + corner_x * self.right + corner_y * self.up + self.z0 * self.long_axis
        return LPS_TO_RAS @ lps


@dataclasses.dataclass
class PhantomCase:
    """One phantom study with its ground truth."""

    case_id: str
    image: Volume  # int16 magnitude, 0-4095
    label: Volume  # uint8, EMIDEC classes
    truth: dict  # parameters and derived ground-truth figures (JSON-ready)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def sample_geometry(rng: np.random.Generator, anatomy: Anatomy) -> Geometry:
    pixel = round(float(rng.uniform(1.2, 2.0)), 4)
    fov = rng.uniform(300.0, 400.0)
    cols = int(np.clip(round(fov / pixel), 140, 300))
    rows = int(np.clip(round(cols * rng.uniform(0.75, 1.0)), 140, 300))
    thickness = round(float(rng.uniform(8.0, 10.0)), 1)
    spacing = round(float(min(thickness + rng.uniform(0.0, 3.0), 13.0)), 1)
    z0 = float(rng.uniform(2.0, 8.0))
    slices = int(np.clip((anatomy.length - z0) // spacing + 1 + rng.integers(0, 2), 5, 13))
    # Keep the LV inside the field of view, off-centre towards the body's midline.
    margin_x = cols * pixel / 2.0 - anatomy.r_epi_base - 10.0
    margin_y = rows * pixel / 2.0 - anatomy.r_epi_base - 10.0
    centre = (
        float(np.clip(rng.uniform(-0.12, 0.12) * fov - 20.0, -margin_x, margin_x)),
        float(np.clip(rng.uniform(-0.1, 0.1) * fov - 15.0, -margin_y, margin_y)),
    )
    long_axis, right, up, origin = patient_frame(rng)
    return Geometry(pixel, rows, cols, thickness, spacing, z0, slices, centre, long_axis, right, up, origin)


def patient_frame(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """LPS long axis, image right, image up and heart-frame origin of an oblique short-axis stack."""
    long_axis = _unit(np.array([0.55, -0.5, -0.65]) + rng.normal(0.0, 0.08, 3))
    anterior = np.array([0.0, -1.0, 0.0])
    up = _unit(anterior - anterior.dot(long_axis) * long_axis)
    right = _unit(np.cross(up, long_axis))
    if right[0] < 0:  # image right is the lateral wall, towards the patient's left
        right = -right
    origin = np.array([rng.uniform(20.0, 45.0), rng.uniform(-30.0, 0.0), rng.uniform(-170.0, -120.0)])
    return long_axis, right, up, origin


def heart_window(anatomy: Anatomy, fine_xy, z: float) -> tuple[slice, slice]:
    """Rows and columns of the fine grid ``fine_xy`` (x, y planes) that can hold the heart at ``z``."""
    x0, x1, y0, y1 = anatomy.heart_box(z)
    x, y = fine_xy[0][0], fine_xy[1][:, 0]
    cols = np.flatnonzero((x >= x0) & (x <= x1))
    rows = np.flatnonzero((y >= y0) & (y <= y1))
    if not len(cols) or not len(rows):
        return slice(0, 0), slice(0, 0)
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


class _Renderer:
    """Renders the slices of one case: tissue maps to signal, partial volume, coil, noise."""

    def __init__(self, rng: np.random.Generator, anatomy: Anatomy, contrast: Contrast, geometry: Geometry):
        self.rng, self.anatomy, self.contrast, self.geometry = rng, anatomy, contrast, geometry
        self.table = signal_table(contrast)
        self.fine_xy = geometry.plane_xy(SUPERSAMPLE)
        self.xy = geometry.plane_xy(1)
        a, b = anatomy.thorax_axes
        span = a + anatomy.muscle_thickness + anatomy.subcutaneous_fat + 25.0
        bx, by = anatomy.body_centre
        top, bottom = by + b + 60.0, by - b - 50.0
        coils = [(bx + dx, yc) for dx in np.linspace(-0.6 * span, 0.6 * span, 4) for yc in (top, bottom)]
        coils = np.array(coils) + rng.normal(0.0, 15.0, (len(coils), 2))
        self.coil = coil_sensitivity(*self.xy, coils) * (1.0 + 0.05 * smooth_field(rng, self.xy[0].shape, 4))

    def _heart_window(self, z: float) -> tuple[slice, slice]:
        return heart_window(self.anatomy, self.fine_xy, z)

    def _fine_signal(self, z: float) -> np.ndarray:
        """Signed signal on the fine grid, averaged over the slice thickness."""
        g, a = self.geometry, self.anatomy
        thorax = a.paint_thorax(*self.fine_xy, z)
        texture = 1.0 + smooth_field(self.rng, thorax.shape, 8, 0.04)
        scar_texture = 1.0 + smooth_field(self.rng, thorax.shape, 12, 0.12)
        rows, cols = self._heart_window(z)
        x, y = self.fine_xy[0][rows, cols], self.fine_xy[1][rows, cols]
        signal = self.table[thorax] * texture
        window = np.zeros(x.shape)
        for s in SUB_SLICES:
            tissue = thorax[rows, cols].copy()
            a.paint_heart(tissue, np.zeros(x.shape, dtype=np.uint8), x, y, z + s * g.thickness_mm)
            sub = self.table[tissue] * texture[rows, cols]
            scar = tissue == Tissue.INFARCT
            sub[scar] *= scar_texture[rows, cols][scar]
            window += sub / len(SUB_SLICES)
        signal[rows, cols] = window
        return signal

    def render_slice(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        g, c = self.geometry, self.contrast
        z = g.z(k)
        fine = self._fine_signal(z)
        fine = ndimage.gaussian_filter(fine, sigma=c.psf_mm / (g.pixel_mm / SUPERSAMPLE))
        signal = fine.reshape(g.rows, SUPERSAMPLE, g.cols, SUPERSAMPLE).mean(axis=(1, 3)) * self.coil
        if c.ghost:
            signal = signal + c.ghost * np.roll(signal, g.rows // 2, axis=0)
        blood = abs(self.table[Tissue.BLOOD])
        sigma = blood / c.snr
        real = signal + self.rng.normal(0.0, sigma, signal.shape)
        imag = self.rng.normal(0.0, sigma, signal.shape)
        magnitude = np.hypot(real, imag) * (c.gain / blood)
        image = np.clip(np.rint(magnitude), 0, MAX_STORED).astype(np.int16)
        label = np.zeros(self.xy[0].shape, dtype=np.uint8)
        self.anatomy.paint_heart(np.zeros_like(label), label, *self.xy, z)
        _enclose_no_reflow(label)
        return image, label


def _enclose_no_reflow(label: np.ndarray) -> None:
    """Relabel as infarct the no-reflow pixels of one slice that no infarct pixel borders.

    No-reflow is the core of an infarct. Sampled at pixel centres, a sector-shaped infarct that
    narrows to the centre of the apex cap can leave a lone no-reflow pixel with no infarct
    (3) next to it; it stays infarct, only its no-reflow class is dropped.
    """
    mvo = label == NO_REFLOW
    if not mvo.any():
        return
    parts, _ = ndimage.label(mvo)  # 4-connectivity
    touching = np.unique(parts[mvo & ndimage.binary_dilation(label == INFARCT)])
    label[mvo & ~np.isin(parts, touching)] = INFARCT


def _start(number: int, seed: int, territory: str | None):
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


def make_case(number: int, seed: int, territory: str | None = None, style: str = "classic") -> PhantomCase:
    """Generate phantom case ``number`` (1-based) of ``seed``.

    Args:
        number: case number; every third case is normal.
        seed: dataset seed.
        territory: force the coronary territory of the infarct (LAD, RCA, LCX).
        style: ``"classic"`` (the physics-informed phantom) or ``"real"``: the same heart with
            domain-randomised surroundings, intensities and acquisition (:mod:`lgemri.phantom.real`).
    """
    from .real import check_style

    if check_style(style) == "real":
        from .real import make_real_case

        return make_real_case(number, seed, territory)[0]
    case_id, rng, anatomy, contrast = _start(number, seed, territory)
    geometry = sample_geometry(rng, anatomy)
    renderer = _Renderer(rng, anatomy, contrast, geometry)
    images, labels = zip(*(renderer.render_slice(k) for k in range(geometry.slices)))
    # Slices are rendered as (row, column); volumes are indexed (column, row, slice).
    image = np.stack(images, axis=-1).transpose(1, 0, 2)
    label = np.stack(labels, axis=-1).transpose(1, 0, 2)
    affine = geometry.affine()
    truth = _truth(case_id, number, seed, anatomy, contrast, geometry, label)
    return PhantomCase(
        case_id, Volume(np.ascontiguousarray(image), affine), Volume(np.ascontiguousarray(label), affine), truth
    )


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


def _truth(case_id, number, seed, anatomy: Anatomy, contrast: Contrast, geometry: Geometry, label: np.ndarray) -> dict:
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

    The keywords describe the DICOM series (an LGE series by default; the cine phantom passes
    its own); ``uid_prefix`` with the seed and case id makes the UIDs reproducible.
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
    from .real import check_style

    check_style(style)
    if style != "classic" and contrast != "lge":
        raise InputError(f"style {style!r} is for LGE contrast only, not {contrast!r}")
    if cases < 1:
        raise InputError(f"--cases must be at least 1, got {cases}")
    unknown = set(formats) - {"emidec", "dicom"}
    if unknown:
        raise InputError(f"unknown output format(s) {sorted(unknown)}; choose from emidec, dicom")
    if contrast == "lge" and style == "real":

        def make(number, seed):
            return make_case(number, seed, style="real")

        write, header = write_case, {"generator": "cardiac_mi LGE phantom", "style": "real"}
    elif contrast == "lge":
        make, write, header = make_case, write_case, {"generator": "cardiac_mi LGE phantom"}
    elif contrast == "cine":
        from .cine import _write_cine_case, make_cine_case

        make, write, header = (
            make_cine_case,
            _write_cine_case,
            {"generator": "cardiac_mi cine phantom", "contrast": "cine"},
        )
    else:
        raise InputError(f"unknown contrast {contrast!r}; choose lge or cine")
    out = Path(out_dir)
    numbers = range(1, cases + 1)
    if progress:
        from tqdm import tqdm

        numbers = tqdm(numbers, desc=f"{contrast} phantom" + (f" ({style})" if style != "classic" else ""), unit="case")
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
