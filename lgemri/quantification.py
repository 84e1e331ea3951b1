"""Clinical infarct quantification of an LGE study from its image and EMIDEC label.

:func:`quantify` turns a label volume (and the image it segments) into the numbers a clinician
reads in an LGE report, as a JSON-ready dict:

* **LV myocardium** (labels 2, 3, 4): volume and mass (density :data:`MYOCARDIUM_DENSITY_G_PER_ML`
  = 1.05 g/ml). Volumes are voxel counts times the voxel volume (in-plane pixel area times the
  slice-to-slice distance, i.e. the summation-of-discs method; gaps between slices are
  interpolated, not dropped).
* **Infarct** (labels 3 and 4, as EMIDEC counts it) and **no-reflow** (label 4, microvascular
  obstruction): volume, mass and percent of the LV myocardium.
* **Transmurality** along radial chords: on each slice rays are cast from the LV centre (the
  mean position of the slice's LV pixels, as in :func:`lgemri.aha.myocardium_angles`) every
  ``ray_step_deg`` degrees; each ray is sampled every quarter pixel (nearest label). Its wall
  chord is the myocardium it crosses (endocardium to epicardium) and its transmural extent is the
  infarct part of that chord as a percentage of the chord. Rays that meet no myocardium (the gap
  of a basal slice cut through the outflow tract) do not count. Each ray takes the AHA segment of
  its angle and its slice's level; a segment's transmurality is the mean and the maximum of its
  rays' extents, and its mean is binned 0 / 1-25 / 26-50 / 51-75 / 76-100 % (as in Kim et al.,
  NEJM 343:1445-1453, 2000).
* **Viability** per segment: viable when the mean transmural extent is at most
  ``viability_threshold`` % (50 % by default, the chronic convention; 75 % is used in acute
  infarction). Segments without myocardium in the label get None.
* **Infarcted segments**: segments whose infarct covers at least ``infarcted_segment_min`` % of
  their myocardium voxels (5 % by default, the phantom's ground-truth rule, so that isolated
  boundary pixels do not count).
* **Classification**: ``pathological`` when the infarct is at least ``pathological_min_percent``
  % (1 % by default) of the LV myocardium, else ``normal``.
* **Classical methods** (:mod:`lgemri.classical`): n-SD (2, 3, 5) and FWHM infarct size inside
  the label's myocardium, next to the label's own figure.

AHA segments follow :mod:`lgemri.aha` (Cerqueira et al., Circulation 105:539-542, 2002): levels
from slice position, the stack read from base to apex. Which end is the base comes from the
anatomy unless ``base_first`` says (scanners store short-axis stacks either way; EMIDEC's run
apex to base): the apex is the narrow end (:func:`lgemri.aha.apex_first`). The anterior RV
insertion point is at ``rv_insertion_deg`` (120 degrees, patient axes, when not given).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from . import __version__, aha
from .classical import classical_infarct_size
from .errors import InputError
from .labels import CAVITY, INFARCT, NO_REFLOW, NUM_CLASSES, infarct_mask, myocardium_mask
from .volume import Volume

__all__ = [
    "QUANTIFICATION_VERSION",
    "MYOCARDIUM_DENSITY_G_PER_ML",
    "TRANSMURALITY_BINS",
    "quantify",
    "transmurality_bin",
    "ray_transmurality",
]

logger = logging.getLogger(__name__)

QUANTIFICATION_VERSION = "1.0.0"
MYOCARDIUM_DENSITY_G_PER_ML = 1.05
TRANSMURALITY_BINS = ("0", "1-25", "26-50", "51-75", "76-100")
_SAMPLES_PER_PIXEL = 4


def transmurality_bin(percent: float | None) -> str | None:
    """The bin of a transmural extent in %: ``0`` (exactly none), then ``1-25`` for (0, 25] up to ``76-100``."""
    if percent is None:
        return None
    if percent <= 0.0:
        return TRANSMURALITY_BINS[0]
    return TRANSMURALITY_BINS[min(4, max(1, int(np.ceil(percent / 25.0))))]


def ray_transmurality(
    label2d: np.ndarray, spacing_ij: tuple[float, float], ray_step_deg: float = 2.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Transmural infarct extent along radial rays of one short-axis slice.

    Args:
        label2d: EMIDEC labels ``[i, j]`` of one slice.
        spacing_ij: pixel size in mm along ``i`` and ``j``.
        ray_step_deg: angle between rays; the first ray is at half a step.

    Returns:
        ``(angle_deg, extent_percent, wall_mm)`` for the rays that cross myocardium: the ray's
        angle (counter-clockwise from image right, anterior up), the infarct part of its wall
        chord in %, and the chord length in mm. Empty arrays when the slice has no myocardium.
    """
    label2d = np.asarray(label2d)
    myo = (label2d >= 2) & (label2d <= 4)
    ii, jj = np.nonzero(myo)
    if ii.size == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    si, sj = float(spacing_ij[0]), float(spacing_ij[1])
    ci, cj = np.argwhere(label2d > 0).mean(axis=0)
    r_max = float(np.hypot((ii - ci) * si, (jj - cj) * sj).max()) + max(si, sj)
    dr = min(si, sj) / _SAMPLES_PER_PIXEL
    radius = np.arange(0.0, r_max + dr, dr)
    angle = (np.arange(int(round(360.0 / ray_step_deg))) + 0.5) * ray_step_deg
    theta = np.radians(angle)[:, np.newaxis]
    pi = np.rint(ci + radius * np.cos(theta) / si).astype(np.intp)
    pj = np.rint(cj - radius * np.sin(theta) / sj).astype(np.intp)
    inside = (pi >= 0) & (pi < label2d.shape[0]) & (pj >= 0) & (pj < label2d.shape[1])
    samples = np.where(inside, label2d[np.clip(pi, 0, label2d.shape[0] - 1), np.clip(pj, 0, label2d.shape[1] - 1)], 0)
    wall = ((samples >= 2) & (samples <= 4)).sum(axis=1)
    scar = ((samples == INFARCT) | (samples == NO_REFLOW)).sum(axis=1)
    hit = wall > 0
    return angle[hit], 100.0 * scar[hit] / wall[hit], wall[hit] * dr


def _check_label(label: Volume) -> np.ndarray:
    array = np.asarray(label.array)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.rint(array)):
            raise InputError("the label holds non-integer values; expected EMIDEC classes 0-4")
    elif array.dtype.kind not in "biu":
        raise InputError(f"the label has dtype {array.dtype}; expected integer EMIDEC classes 0-4")
    low, high = array.min(), array.max()
    if low < 0 or high >= NUM_CLASSES:
        raise InputError(
            f"the label holds values {int(low)}..{int(high)}; expected EMIDEC classes 0 background, "
            "1 cavity, 2 myocardium, 3 infarct, 4 no-reflow"
        )
    return array.astype(np.uint8)


def _check_geometry(label: Volume, image: Volume | None, warnings: list[str]) -> np.ndarray:
    spacing = label.spacing
    if not np.all(np.isfinite(label.affine)) or np.any(spacing <= 0):
        raise InputError(
            f"missing geometry: the label's voxel spacing is {spacing.tolist()} mm; "
            "give an image with PixelSpacing and slice positions (DICOM) or a NIfTI affine"
        )
    if np.allclose(label.affine, np.eye(4)):
        warnings.append("the label has no geometry (identity affine): volumes and masses assume 1 mm voxels")
    if image is not None:
        if image.shape != label.shape:
            raise InputError(f"the label's shape {label.shape} differs from the image's {image.shape}")
        if not image.same_grid(label):
            warnings.append("the label's affine differs from the image's; the label's geometry is used")
    return spacing


def _stats(values: list[np.ndarray]) -> tuple[float | None, float | None, int]:
    if not values:
        return None, None, 0
    v = np.concatenate(values)
    if v.size == 0:
        return None, None, 0
    return float(v.mean()), float(v.max()), int(v.size)


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def quantify(
    image: Volume | None,
    label: Volume,
    *,
    rv_insertion_deg: float | None = None,
    viability_threshold: float = 50.0,
    infarcted_segment_min: float = 5.0,
    pathological_min_percent: float = 1.0,
    base_first: bool | None = None,
    ray_step_deg: float = 2.0,
) -> dict:
    """Quantify the infarct of one study (see the module docstring for the methods).

    Args:
        image: the LGE image on the label's grid, for the classical methods; None skips them.
        label: EMIDEC labels (0 background, 1 cavity, 2 myocardium, 3 infarct, 4 no-reflow).
        rv_insertion_deg: anterior RV insertion angle; None uses the patient-axes default.
        viability_threshold: a segment is viable when its mean transmural extent is at most
            this many %.
        infarcted_segment_min: a segment is infarcted when infarct covers at least this % of
            its myocardium.
        pathological_min_percent: the study is pathological when the infarct is at least this %
            of the LV myocardium.
        base_first: True when slice ``k = 0`` is the most basal; False for apex-first stacks;
            None reads it from the anatomy (:func:`lgemri.aha.apex_first`: the apex is the narrow
            end), slice 0 basal with a warning when the anatomy does not tell.
        ray_step_deg: angle between the radial chords of the transmurality.

    Returns:
        A JSON-ready dict: ``version``, ``parameters``, ``geometry``, ``lv``, ``infarct``,
        ``no_reflow``, ``classification``, ``transmurality``, ``segments`` (17 entries),
        ``infarcted_segments``, ``n_infarcted_segments``, ``nonviable_segments``,
        ``territories``, ``slices``, ``classical`` (None without an image), ``warnings`` and
        ``timing_s``.

    Raises:
        InputError: the label is not EMIDEC classes, holds no myocardium, has no usable geometry
            or does not match the image's shape; or a parameter is out of range.
    """
    tick = time.perf_counter()
    if not 0.0 <= viability_threshold <= 100.0:
        raise InputError(f"viability threshold must be 0-100 %, got {viability_threshold}")
    if not 0.0 <= infarcted_segment_min <= 100.0:
        raise InputError(f"infarcted-segment minimum must be 0-100 %, got {infarcted_segment_min}")
    if not 0.0 < ray_step_deg <= 30.0:
        raise InputError(f"ray step must be in (0, 30] degrees, got {ray_step_deg}")
    warnings: list[str] = []
    spacing = _check_geometry(label, image, warnings)
    lab = _check_label(label)
    myo = myocardium_mask(lab)
    if not myo.any():
        raise InputError("no myocardium in the label (no voxel of class 2, 3 or 4): nothing to quantify")
    rv = aha.DEFAULT_RV_INSERTION_DEG if rv_insertion_deg is None else float(rv_insertion_deg)
    if rv_insertion_deg is None:
        warnings.append(f"no RV insertion point given: AHA segments assume {rv:g} degrees (patient axes)")

    order_source = "given"
    if base_first is None:
        apex = aha.apex_first(lab)
        order_source = "default" if apex is None else "anatomy"
        base_first = apex is not True
        if apex is None:
            warnings.append("the slice order is not clear from the anatomy (no narrow end): slice 0 taken as basal")
    n_slices = lab.shape[2]
    order = np.arange(n_slices) if base_first else np.arange(n_slices)[::-1]
    lab_b = lab[:, :, order]  # base first
    spacing_ij = (float(spacing[0]), float(spacing[1]))
    voxel_ml = float(np.prod(spacing)) / 1000.0
    density = MYOCARDIUM_DENSITY_G_PER_ML

    scar = infarct_mask(lab)
    mvo = lab == NO_REFLOW
    n_myo, n_scar, n_mvo = int(myo.sum()), int(scar.sum()), int(mvo.sum())
    pct = lambda part, whole: round(100.0 * part / whole, 3) if whole else 0.0  # noqa: E731

    # Per-voxel segments and per-ray transmurality, base first.
    segments = aha.assign_segments(lab_b, spacing_ij, rv)
    levels = aha.slice_levels(myocardium_mask(lab_b).any(axis=(0, 1)), (lab_b == CAVITY).any(axis=(0, 1)))
    seg_flat = segments[segments > 0].astype(np.intp)
    seg_myo = np.bincount(seg_flat, minlength=18)
    seg_scar = np.bincount(seg_flat[infarct_mask(lab_b[segments > 0])], minlength=18)
    seg_mvo = np.bincount(seg_flat[lab_b[segments > 0] == NO_REFLOW], minlength=18)
    ray_extent: dict[int, list[np.ndarray]] = {s: [] for s in range(1, 18)}
    ray_wall: dict[int, list[np.ndarray]] = {s: [] for s in range(1, 18)}
    slices = []
    all_extent = []
    for kb, level in enumerate(levels):
        if level is None:
            continue
        angle, extent, wall = ray_transmurality(lab_b[:, :, kb], spacing_ij, ray_step_deg)
        ray_seg = aha.segment_from_angle(angle, level, rv)
        for s in np.unique(ray_seg):
            ray_extent[int(s)].append(extent[ray_seg == s])
            ray_wall[int(s)].append(wall[ray_seg == s])
        all_extent.append(extent)
        k = int(order[kb])
        s_myo = int(myo[:, :, k].sum())
        slices.append(
            {
                "k": k,
                "level": level,
                "myocardium_volume_ml": round(s_myo * voxel_ml, 3),
                "infarct_percent": pct(int(scar[:, :, k].sum()), s_myo),
                "no_reflow_percent": pct(int(mvo[:, :, k].sum()), s_myo),
                "transmurality_mean_percent": _r(extent.mean()) if extent.size else None,
                "transmurality_max_percent": _r(extent.max()) if extent.size else None,
                "rays": int(extent.size),
            }
        )
    slices.sort(key=lambda s: s["k"])

    segment_rows = []
    for s in range(1, 18):
        mean, peak, n_rays = _stats(ray_extent[s])
        wall_mean, _, _ = _stats(ray_wall[s])
        present = bool(seg_myo[s])
        infarct_pct = pct(int(seg_scar[s]), int(seg_myo[s])) if present else None
        if mean is None and present:  # myocardium but no ray landed on it (a tiny segment)
            mean = peak = 100.0 * seg_scar[s] / seg_myo[s]
        segment_rows.append(
            {
                "segment": s,
                "name": aha.SEGMENT_NAMES[s],
                "level": aha.SEGMENT_NAMES[s].split()[0],
                "territory": aha.territory_of_segment(s),
                "present": present,
                "myocardium_volume_ml": round(int(seg_myo[s]) * voxel_ml, 3),
                "myocardium_mass_g": round(int(seg_myo[s]) * voxel_ml * density, 3),
                "infarct_percent": infarct_pct,
                "no_reflow_percent": pct(int(seg_mvo[s]), int(seg_myo[s])) if present else None,
                "transmurality_mean_percent": _r(mean) if present else None,
                "transmurality_max_percent": _r(peak) if present else None,
                "transmurality_bin": transmurality_bin(mean) if present else None,
                "wall_thickness_mm": _r(wall_mean, 2) if present else None,
                "rays": n_rays,
                "infarcted": bool(present and infarct_pct >= infarcted_segment_min and seg_scar[s] > 0),
                "viable": bool(mean <= viability_threshold) if present and mean is not None else None,
            }
        )
    infarcted = [row["segment"] for row in segment_rows if row["infarcted"]]
    nonviable = [row["segment"] for row in segment_rows if row["viable"] is False]
    missing = [row["segment"] for row in segment_rows if not row["present"]]
    if missing:
        warnings.append(f"AHA segments without myocardium in the label: {', '.join(map(str, missing))}")
    if n_slices == 1:
        warnings.append("one slice: its level is taken as mid, other levels are not covered")

    territories = {}
    for name, members in aha.TERRITORIES.items():
        t_myo = int(sum(seg_myo[s] for s in members))
        t_scar = int(sum(seg_scar[s] for s in members))
        territories[name] = {
            "segments": list(members),
            "infarct_volume_ml": round(t_scar * voxel_ml, 3),
            "infarct_percent": pct(t_scar, t_myo),
            "infarcted_segments": [s for s in infarcted if s in members],
        }

    extent_all = np.concatenate(all_extent) if all_extent else np.zeros(0)
    scar_rays = extent_all[extent_all > 0]
    infarct_pct_lv = pct(n_scar, n_myo)
    pathological = n_scar > 0 and infarct_pct_lv >= pathological_min_percent

    classical = None
    if image is not None:
        try:
            classical = classical_infarct_size(np.asarray(image.array), lab, spacing, rv)
        except InputError as exc:
            warnings.append(f"classical methods not computed: {exc}")
        else:
            classical["methods"].insert(
                0,
                {
                    "name": "label",
                    "rule": "segmentation labels 3 (infarct) + 4 (no-reflow)",
                    "threshold": None,
                    "voxels": n_scar,
                    "volume_ml": round(n_scar * voxel_ml, 3),
                    "percent_lv": infarct_pct_lv,
                },
            )

    result = {
        "version": QUANTIFICATION_VERSION,
        "software": {"name": "lgemri", "version": __version__},
        "parameters": {
            "myocardium_density_g_per_ml": density,
            "infarct_labels": [INFARCT, NO_REFLOW],
            "viability_threshold_percent": float(viability_threshold),
            "infarcted_segment_min_percent": float(infarcted_segment_min),
            "pathological_min_percent": float(pathological_min_percent),
            "rv_insertion_deg": rv,
            "rv_insertion_source": "default" if rv_insertion_deg is None else "given",
            "base_first": bool(base_first),
            "slice_order_source": order_source,
            "ray_step_deg": float(ray_step_deg),
            "transmurality_method": (
                f"radial chords from the LV centre every {ray_step_deg:g} degrees on each slice; "
                "infarct (labels 3+4) part of the myocardial chord, mean and max per AHA segment"
            ),
        },
        "geometry": {
            "shape": [int(n) for n in lab.shape],
            "spacing_mm": [round(float(x), 4) for x in spacing],
            "voxel_volume_ml": round(voxel_ml, 6),
            "slices_with_myocardium": int(sum(level is not None for level in levels)),
        },
        "lv": {
            "myocardium_voxels": n_myo,
            "myocardium_volume_ml": round(n_myo * voxel_ml, 3),
            "myocardium_mass_g": round(n_myo * voxel_ml * density, 3),
            "cavity_volume_ml": round(int((lab == CAVITY).sum()) * voxel_ml, 3),
        },
        "infarct": {
            "present": n_scar > 0,
            "voxels": n_scar,
            "volume_ml": round(n_scar * voxel_ml, 3),
            "mass_g": round(n_scar * voxel_ml * density, 3),
            "percent_lv": infarct_pct_lv,
        },
        "no_reflow": {
            "present": n_mvo > 0,
            "voxels": n_mvo,
            "volume_ml": round(n_mvo * voxel_ml, 3),
            "mass_g": round(n_mvo * voxel_ml * density, 3),
            "percent_lv": pct(n_mvo, n_myo),
            "percent_infarct": pct(n_mvo, n_scar),
        },
        "classification": {
            "label": "pathological" if pathological else "normal",
            "rule": f"pathological when the infarct is >= {pathological_min_percent:g} % of the LV myocardium",
        },
        "transmurality": {
            "rays": int(extent_all.size),
            "mean_percent": _r(extent_all.mean()) if extent_all.size else None,
            "mean_infarcted_rays_percent": _r(scar_rays.mean()) if scar_rays.size else None,
            "max_percent": _r(extent_all.max()) if extent_all.size else None,
        },
        "segments": segment_rows,
        "infarcted_segments": infarcted,
        "n_infarcted_segments": len(infarcted),
        "nonviable_segments": nonviable,
        "territories": territories,
        "slices": slices,
        "classical": classical,
        "warnings": warnings,
    }
    result["timing_s"] = round(time.perf_counter() - tick, 4)
    logger.debug("quantified in %.3f s: infarct %.2f %% LV", result["timing_s"], infarct_pct_lv)
    return result
