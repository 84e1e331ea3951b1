"""Segmentation metrics on numpy masks and EMIDEC label volumes, distances in millimetres.

Overlap metrics (Dice, IoU, sensitivity, specificity) and the boundary F1 score are those of
Nor Kamal et al. 2026 (two-stage LGE segmentation, Sec. M); :func:`emidec_metrics` gives the
EMIDEC challenge metrics (Lalande et al., Data 5(4):89, 2020, and the challenge evaluation):
3D Dice of myocardium, infarct and no-reflow, their absolute volume differences, the
infarct and no-reflow volume differences relative to the myocardium, and the Hausdorff
distance of the myocardium.

Conventions:

- Masks are arrays of equal shape; non-zero is foreground. ``spacing`` is the voxel size in mm
  along each axis (``Volume.spacing``), one value per array dimension.
- Overlap: two empty masks agree perfectly (Dice and IoU 1.0); one empty mask against a
  non-empty one scores 0.0. Sensitivity is NaN when the truth has no foreground,
  specificity NaN when it has no background (the ratio is 0/0).
- Surfaces: a voxel of a mask is on its surface when one of its face neighbours (4 in 2D, 6 in
  3D) is outside the mask; the array edge counts as outside.
- Hausdorff distance: 0.0 when both masks are empty, ``inf`` when only one is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from .labels import LABEL_NAMES, NO_REFLOW, infarct_mask, myocardium_mask

__all__ = [
    "dice",
    "iou",
    "sensitivity",
    "specificity",
    "hausdorff_distance",
    "boundary_f1",
    "volume_mm3",
    "emidec_metrics",
    "class_metrics",
    "EMIDEC_METRICS",
    "CLASS_METRICS",
]

#: The keys of :func:`emidec_metrics`, in order.
EMIDEC_METRICS = (
    "dice_myocardium",
    "dice_infarct",
    "dice_no_reflow",
    "volume_diff_myocardium_mm3",
    "volume_diff_infarct_mm3",
    "volume_diff_no_reflow_mm3",
    "ratio_diff_infarct_pct",
    "ratio_diff_no_reflow_pct",
    "hausdorff_myocardium_mm",
)
#: The metrics :func:`class_metrics` gives for each class.
CLASS_METRICS = ("dice", "iou", "boundary_f1", "sensitivity", "specificity")


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a).astype(bool, copy=False)
    b = np.asarray(b).astype(bool, copy=False)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} and {b.shape}")
    return a, b


def _spacing(spacing: Sequence[float] | np.ndarray, ndim: int) -> np.ndarray:
    values = np.asarray(spacing, dtype=float).ravel()
    if values.size != ndim or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"spacing must be {ndim} positive voxel sizes in mm, got {spacing}")
    return values


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient ``2|A∩B| / (|A| + |B|)``; 1.0 when both are empty, 0.0 when one is."""
    a, b = _pair(a, b)
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a, b).sum()) / total


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union (Jaccard) ``|A∩B| / |A∪B|``; 1.0 when both are empty."""
    a, b = _pair(a, b)
    union = int(np.logical_or(a, b).sum())
    if union == 0:
        return 1.0
    return int(np.logical_and(a, b).sum()) / union


def sensitivity(pred: np.ndarray, truth: np.ndarray) -> float:
    """True-positive rate ``TP / (TP + FN)``; NaN when ``truth`` is empty."""
    pred, truth = _pair(pred, truth)
    positives = int(truth.sum())
    if positives == 0:
        return float("nan")
    return int(np.logical_and(pred, truth).sum()) / positives


def specificity(pred: np.ndarray, truth: np.ndarray) -> float:
    """True-negative rate ``TN / (TN + FP)``; NaN when ``truth`` covers the whole array."""
    pred, truth = _pair(pred, truth)
    negatives = int(truth.size - truth.sum())
    if negatives == 0:
        return float("nan")
    return int(np.logical_and(~pred, ~truth).sum()) / negatives


def volume_mm3(mask: np.ndarray, spacing: Sequence[float] | np.ndarray) -> float:
    """Volume of the non-zero voxels of ``mask`` in mm^3 (area in mm^2 for a 2D mask)."""
    mask = np.asarray(mask)
    return float(np.count_nonzero(mask) * np.prod(_spacing(spacing, mask.ndim)))


def _surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a face neighbour outside it (the array edge is outside)."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """The smallest box holding every non-zero voxel of ``mask`` (which must not be empty)."""
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def _surface_distances(a: np.ndarray, b: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each surface voxel of ``a`` to ``b``'s surface, and back.

    Both masks must be non-empty. The work is done in the two masks' joint bounding box: every
    surface voxel lies in it, so the nearest ones found there are the nearest overall.
    """
    box = _bounding_box(a | b)
    a, b = a[box], b[box]
    surface_a, surface_b = _surface(a), _surface(b)
    to_b = ndimage.distance_transform_edt(~surface_b, sampling=spacing)
    to_a = ndimage.distance_transform_edt(~surface_a, sampling=spacing)
    return to_b[surface_a], to_a[surface_b]


def hausdorff_distance(a: np.ndarray, b: np.ndarray, spacing: Sequence[float] | np.ndarray) -> float:
    """Symmetric Hausdorff distance in mm between the surfaces of two masks.

    The largest distance from a surface voxel of either mask to the nearest surface voxel of
    the other (``scipy.ndimage.distance_transform_edt`` with ``sampling=spacing``, so
    anisotropic voxels are measured in mm). For a 3D volume the surface is 3D: EMIDEC
    reports the myocardium's Hausdorff distance in 3D.

    Returns:
        The distance in mm; 0.0 when both masks are empty, ``inf`` when exactly one is.
    """
    a, b = _pair(a, b)
    spacing = _spacing(spacing, a.ndim)
    has_a, has_b = bool(a.any()), bool(b.any())
    if not has_a and not has_b:
        return 0.0
    if not has_a or not has_b:
        return float("inf")
    a_to_b, b_to_a = _surface_distances(a, b, spacing)
    return float(max(a_to_b.max(), b_to_a.max()))


def boundary_f1(
    a: np.ndarray,
    b: np.ndarray,
    spacing: Sequence[float] | np.ndarray,
    tolerance_mm: float = 2.0,
) -> float:
    """Boundary F1 (BF) score of Csurka et al. 2013, as used by the two-stage paper.

    Precision is the fraction of ``a``'s boundary pixels that lie within ``tolerance_mm`` of
    ``b``'s boundary, recall the fraction of ``b``'s boundary pixels within ``tolerance_mm`` of
    ``a``'s; BF is their harmonic mean ``2PR / (P + R)``. The score is symmetric, so either
    argument may be the prediction.

    Boundaries are 2D contours, as in the paper (MATLAB ``bfscore`` on 2D slices): a 3D volume
    ``[i, j, k]`` is scored slice by slice along ``k`` with in-plane distances (EMIDEC slices lie
    8-13 mm apart, so matching across slices would mean nothing at a 2 mm tolerance), and the
    boundary pixels of all slices are pooled before P and R are taken.

    Args:
        a, b: 2D or 3D masks of equal shape.
        spacing: Voxel size in mm, one per dimension (only the in-plane two are used).
        tolerance_mm: Largest distance (inclusive) at which two boundary pixels match.

    Returns:
        BF in [0, 1]; 1.0 when neither mask has a boundary (both empty), 0.0 when only one has.
    """
    a, b = _pair(a, b)
    if a.ndim not in (2, 3):
        raise ValueError(f"boundary_f1 expects 2D or 3D masks, got shape {a.shape}")
    spacing = _spacing(spacing, a.ndim)[:2]
    if not np.isfinite(tolerance_mm) or tolerance_mm < 0:
        raise ValueError(f"tolerance_mm must be a non-negative number, got {tolerance_mm}")
    if a.ndim == 2:
        a, b = a[..., np.newaxis], b[..., np.newaxis]
    matched_a = matched_b = count_a = count_b = 0
    for k in range(a.shape[2]):
        sa, sb = a[..., k], b[..., k]
        has_a, has_b = bool(sa.any()), bool(sb.any())
        if has_a:
            count_a += int(_surface(sa).sum())
        if has_b:
            count_b += int(_surface(sb).sum())
        if has_a and has_b:
            a_to_b, b_to_a = _surface_distances(sa, sb, spacing)
            matched_a += int((a_to_b <= tolerance_mm).sum())
            matched_b += int((b_to_a <= tolerance_mm).sum())
    if count_a == 0 and count_b == 0:
        return 1.0
    if count_a == 0 or count_b == 0:
        return 0.0
    precision, recall = matched_a / count_a, matched_b / count_b
    if precision + recall == 0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


def _ratio_pct(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole > 0 else 0.0


def emidec_metrics(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] | np.ndarray) -> dict[str, float]:
    """The EMIDEC challenge metrics of one case.

    Structures: myocardium = {2, 3, 4}, infarct = {3, 4}, no-reflow = {4}
    (:mod:`lgemri.labels`).

    Args:
        pred: Predicted label volume (values 0..4).
        truth: Reference label volume of the same shape.
        spacing: Voxel size in mm per axis.

    Returns:
        The keys of :data:`EMIDEC_METRICS`:

        - ``dice_<structure>``: 3D Dice (1.0 when both are empty).
        - ``volume_diff_<structure>_mm3``: ``|V_pred - V_truth|`` in mm^3.
        - ``ratio_diff_<infarct|no_reflow>_pct``: ``|r_pred - r_truth|`` in percentage points,
          where ``r = 100 * V_structure / V_myocardium`` of the same label (EMIDEC's volume
          ratio; 0 when that label has no myocardium, as it then has no infarct either).
        - ``hausdorff_myocardium_mm``: 3D symmetric Hausdorff distance of the myocardium
          (``inf`` when exactly one label has no myocardium, 0 when neither has).
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"labels differ in shape: {pred.shape} and {truth.shape}")
    structures = {
        "myocardium": (myocardium_mask(pred), myocardium_mask(truth)),
        "infarct": (infarct_mask(pred), infarct_mask(truth)),
        "no_reflow": (pred == NO_REFLOW, truth == NO_REFLOW),
    }
    volumes = {name: (volume_mm3(p, spacing), volume_mm3(t, spacing)) for name, (p, t) in structures.items()}
    result = {f"dice_{name}": dice(p, t) for name, (p, t) in structures.items()}
    for name, (vp, vt) in volumes.items():
        result[f"volume_diff_{name}_mm3"] = abs(vp - vt)
    myo_pred, myo_truth = volumes["myocardium"]
    for name in ("infarct", "no_reflow"):
        vp, vt = volumes[name]
        result[f"ratio_diff_{name}_pct"] = abs(_ratio_pct(vp, myo_pred) - _ratio_pct(vt, myo_truth))
    result["hausdorff_myocardium_mm"] = hausdorff_distance(*structures["myocardium"], spacing)
    return {key: float(result[key]) for key in EMIDEC_METRICS}


def class_metrics(
    pred: np.ndarray,
    truth: np.ndarray,
    spacing: Sequence[float] | np.ndarray,
    tolerance_mm: float = 2.0,
) -> dict[str, dict[str, float]]:
    """Per-class metrics of the two-stage paper for each EMIDEC class 0-4.

    Each class ``c`` is scored as the mask ``label == c`` (exclusive classes, unlike the nested
    EMIDEC structures of :func:`emidec_metrics`).

    Args:
        pred: Predicted label volume (values 0..4).
        truth: Reference label volume of the same shape.
        spacing: Voxel size in mm per axis.
        tolerance_mm: Boundary F1 tolerance.

    Returns:
        ``{class name: {metric: value}}`` with class names from :data:`lgemri.labels.LABEL_NAMES`
        (``background``, ``lv_cavity``, ``myocardium``, ``infarct``, ``no_reflow``) and metrics
        :data:`CLASS_METRICS` (``dice``, ``iou``, ``boundary_f1``, ``sensitivity``,
        ``specificity``), with the empty-mask conventions of this module.
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"labels differ in shape: {pred.shape} and {truth.shape}")
    result: dict[str, dict[str, float]] = {}
    for value, name in LABEL_NAMES.items():
        p, t = pred == value, truth == value
        result[name] = {
            "dice": dice(p, t),
            "iou": iou(p, t),
            "boundary_f1": boundary_f1(p, t, spacing, tolerance_mm),
            "sensitivity": sensitivity(p, t),
            "specificity": specificity(p, t),
        }
    return result
