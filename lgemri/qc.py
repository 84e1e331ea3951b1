"""Plausibility checks of a segmentation: is this result one a clinician may trust at a glance?

A model that has gone wrong rarely says so: on a scan unlike its training data it paints the kidney
or a sliver of chest wall and reports a confident infarct size. These checks look at the label only
(and its geometry) and flag what a left ventricle cannot look like:

* ``lv_at_border``: the LV touches the edge of the image (cut by the field of view, or not the LV);
* ``open_ring``: on the mid-ventricular slices the myocardium does not enclose the blood pool;
* ``wall_thickness_mm``: the mean wall thickness is outside what hearts have;
* ``myocardium_ml``: the myocardial volume is outside what hearts have;
* ``cavity_ratio``: blood pool / myocardium volume ratio outside what hearts have;
* ``infarct_percent``: infarct over an implausible share of the myocardium;
* ``lv_jump_mm``: the LV centre jumps between neighbouring slices with a substantial LV (different
  structures on different slices);
* ``no_lv``: nothing of the LV was segmented;
* ``uncertain``: the model's own uncertainty, the Monte-Carlo dropout mutual information over the
  predicted LV (:mod:`lgemri.uncertainty`), is above :data:`UNCERTAINTY_LIMIT`.

The limits were chosen on data with ``experiments/qc_thresholds.py``: the range of each measure over
the reference labels of the real EMIDEC training split and the phantom calibration studies (158
cases), widened by :data:`MARGIN` (x 2 for the slice-to-slice jump, which grows with slice thickness
and sites use 5-23 mm slices); the shape measures are 0 on every reference label. How often a flag
is raised on good and on failed results is in docs/quality.md. The uncertainty limit was chosen on
results, not labels: the real validation split's and held-out phantom studies' results (see
:data:`UNCERTAINTY_LIMIT` and docs/quality.md).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import ndimage

from .labels import CAVITY, infarct_mask, myocardium_mask
from .volume import Volume

__all__ = ["LIMITS", "MARGIN", "UNCERTAINTY_LIMIT", "Finding", "measure", "quality_checks", "uncertainty_check"]

MARGIN = 1.5  # limits: reference minimum / MARGIN and maximum * MARGIN
# (low, high) per measure; None: no limit on that side (experiments/qc_thresholds.py)
LIMITS: dict[str, tuple[float | None, float | None]] = {
    "lv_at_border": (None, 0.0),  # share of LV voxels on the outermost 2 voxels of the slice
    "open_ring": (None, 0.1),  # largest share of the blood pool's rim touching background, mid slices
    "wall_thickness_mm": (4.0, 21.1),  # reference 6.05-14.10 mm
    "myocardium_ml": (37.4, 219.4),  # reference 56.2-146.3 ml
    "cavity_ratio": (0.26, 2.63),  # reference 0.385-1.755
    "infarct_percent": (None, 72.1),  # reference up to 48.1 %
    "lv_jump_mm": (None, 11.9),  # reference up to 5.96 mm, x 2
}

# mean MC-dropout mutual information over the predicted LV (nats; 3 passes of the narrow member, the
# default of lgemri.inference), above which a result is doubtful: the largest of a good result on the
# real validation split, its degraded copies and 40 held-out phantom studies (0.0498), rounded up
# (experiments/qc_thresholds.py --uncertainty-from; docs/quality.md)
UNCERTAINTY_LIMIT = 0.05

_MESSAGES = {
    "lv_at_border": "the LV touches the edge of the image: it may be cut by the field of view, or not be the LV",
    "open_ring": "on mid-ventricular slices the myocardium does not enclose the blood pool",
    "wall_thickness_mm": "the mean wall thickness ({value:.1f} mm) is outside {low}-{high} mm",
    "myocardium_ml": "the myocardial volume ({value:.0f} ml) is outside {low:.0f}-{high:.0f} ml",
    "cavity_ratio": "the blood pool is {value:.2f} times the myocardial volume, outside {low}-{high}",
    "infarct_percent": "infarct over {value:.0f} % of the myocardium is beyond the plausible range (up to {high:.0f} %)",
    "lv_jump_mm": "the LV centre jumps {value:.0f} mm between neighbouring slices: different structures may be segmented",
    "no_lv": "no left ventricle was segmented",
    "uncertain": "the model is unsure of this result (uncertainty {value:.3f}, above {high:.3f}): check it slice by slice",
}

BORDER_VOXELS = 2
SUBSTANTIAL_LV = 0.3  # slices whose LV area is below this fraction of the largest do not count for the jump


@dataclasses.dataclass(frozen=True)
class Finding:
    """One failed check: its code, its value and limits, and what it means in words."""

    code: str
    value: float
    low: float | None
    high: float | None
    message: str

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _rim_open_fraction(cavity: np.ndarray, background: np.ndarray) -> float:
    """Share of the blood pool's rim (cavity pixels next to non-cavity) that touches background."""
    rim = cavity & ~ndimage.binary_erosion(cavity)
    if not rim.any():
        return 0.0
    open_rim = rim & ndimage.binary_dilation(background)
    return float(open_rim.sum()) / float(rim.sum())


def measure(label: Volume) -> dict[str, float]:
    """The measures :data:`LIMITS` bounds, for a label ``[i, j, k]`` (k: slices). Empty dict: no LV."""
    arr = np.asarray(label.array)
    si, sj, sk = (float(s) for s in label.spacing)
    cavity = arr == CAVITY
    myo = myocardium_mask(arr)
    lv = cavity | myo
    if not myo.any() or not cavity.any():
        return {}
    voxel_ml = si * sj * sk / 1000.0
    values: dict[str, float] = {}

    border = np.zeros(arr.shape[:2], dtype=bool)
    b = BORDER_VOXELS
    border[:b, :] = border[-b:, :] = border[:, :b] = border[:, -b:] = True
    values["lv_at_border"] = float(lv[border].sum()) / float(lv.sum())

    with_cavity = [k for k in range(arr.shape[2]) if cavity[:, :, k].any()]
    n = len(with_cavity)
    mid = with_cavity[n // 3 : n - n // 3] if n >= 3 else with_cavity
    values["open_ring"] = max(_rim_open_fraction(cavity[:, :, k], ~lv[:, :, k]) for k in mid)

    thickness = []
    for k in with_cavity:
        a_cav = float(cavity[:, :, k].sum()) * si * sj
        a_myo = float(myo[:, :, k].sum()) * si * sj
        if a_myo > 0:
            thickness.append(math.sqrt((a_cav + a_myo) / math.pi) - math.sqrt(a_cav / math.pi))
    values["wall_thickness_mm"] = float(np.mean(thickness)) if thickness else 0.0

    myo_ml = float(myo.sum()) * voxel_ml
    values["myocardium_ml"] = myo_ml
    values["cavity_ratio"] = float(cavity.sum()) * voxel_ml / myo_ml
    values["infarct_percent"] = 100.0 * float(infarct_mask(arr).sum()) / float(myo.sum())

    # apical and basal slices with little LV have unsteady centres: only substantial slices count
    areas = lv.sum(axis=(0, 1))
    substantial = [k for k in range(arr.shape[2]) if areas[k] >= SUBSTANTIAL_LV * areas.max()]
    centres = [ndimage.center_of_mass(lv[:, :, k]) for k in substantial]
    jumps = [math.hypot((a[0] - c[0]) * si, (a[1] - c[1]) * sj) for a, c in zip(centres, centres[1:])]
    values["lv_jump_mm"] = max(jumps) if jumps else 0.0
    return values


def uncertainty_check(mutual_information: float | None, limit: float | None = None) -> Finding | None:
    """The ``uncertain`` finding when the model's uncertainty is above ``limit`` (:data:`UNCERTAINTY_LIMIT`)."""
    limit = UNCERTAINTY_LIMIT if limit is None else float(limit)
    if mutual_information is None or not mutual_information > limit:
        return None
    value = float(mutual_information)
    return Finding("uncertain", round(value, 4), None, limit, _MESSAGES["uncertain"].format(value=value, high=limit))


def quality_checks(label: Volume, uncertainty: float | None = None) -> list[Finding]:
    """The checks this label fails (an empty list: nothing implausible found).

    ``uncertainty``: the model's mean MI over the predicted LV (None: not measured, not checked).
    """
    values = measure(label)
    if not values:
        return [Finding("no_lv", 0.0, None, None, _MESSAGES["no_lv"])]
    findings = []
    uncertain = uncertainty_check(uncertainty)
    for code, value in values.items():
        low, high = LIMITS[code]
        if (low is not None and value < low) or (high is not None and value > high):
            message = _MESSAGES[code].format(value=value, low=low, high=high)
            findings.append(Finding(code, round(value, 3), low, high, message))
    if uncertain is not None:
        findings.append(uncertain)
    return findings
