"""The AHA 17-segment model of the left ventricle.

Cerqueira et al., "Standardized myocardial segmentation and nomenclature for tomographic imaging
of the heart", Circulation 105:539-542, 2002. The LV is cut into basal (segments 1-6), mid (7-12)
and apical (13-16) thirds of short-axis slices plus the apex cap (17). Basal and mid rings have
six 60-degree segments starting at the anterior RV insertion point and going counter-clockwise
as seen from the apex (anteroseptal, inferoseptal, inferior, inferolateral, anterolateral,
anterior); the apical ring has four 90-degree segments centred on the septum. Coronary
territories follow the same statement's Figure 2.

Angles here are in degrees, measured in the short-axis image plane counter-clockwise from the
image's right (the lateral wall in the usual display) with the anterior wall up.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

__all__ = [
    "SEGMENT_NAMES",
    "TERRITORIES",
    "LEVELS",
    "DEFAULT_RV_INSERTION_DEG",
    "segment_from_angle",
    "slice_levels",
    "apex_first",
    "APEX_AREA_RATIO",
    "territory_of_segment",
    "myocardium_angles",
    "assign_segments",
    "parse_territory",
]

SEGMENT_NAMES: dict[int, str] = {
    1: "basal anterior",
    2: "basal anteroseptal",
    3: "basal inferoseptal",
    4: "basal inferior",
    5: "basal inferolateral",
    6: "basal anterolateral",
    7: "mid anterior",
    8: "mid anteroseptal",
    9: "mid inferoseptal",
    10: "mid inferior",
    11: "mid inferolateral",
    12: "mid anterolateral",
    13: "apical anterior",
    14: "apical septal",
    15: "apical inferior",
    16: "apical lateral",
    17: "apex",
}

TERRITORIES: dict[str, tuple[int, ...]] = {
    "LAD": (1, 2, 7, 8, 13, 14, 17),
    "RCA": (3, 4, 9, 10, 15),
    "LCX": (5, 6, 11, 12, 16),
}

LEVELS = ("basal", "mid", "apical", "apex")

# Anterior RV insertion point assumed when a study gives none ("patient axes"): with the anterior
# wall up and the lateral wall at image right, the anterior RV insertion sits up and to the left
# of the LV centre; 120 degrees puts the inferior insertion near 240 degrees, so the septum
# (180 degrees) is centred between the two insertions, as in the usual short-axis display.
DEFAULT_RV_INSERTION_DEG = 120.0

# Six-segment rings, in counter-clockwise order from the anterior RV insertion point.
_RING6 = {"basal": (2, 3, 4, 5, 6, 1), "mid": (8, 9, 10, 11, 12, 7)}
# Apical ring, counter-clockwise from 15 degrees past the anterior insertion (septum centred
# when the two insertion points are about 120 degrees apart).
_RING4 = (14, 15, 16, 13)
_APICAL_OFFSET_DEG = 15.0


def segment_from_angle(angle_deg: np.ndarray, level: str, rv_insertion_deg: float) -> np.ndarray:
    """AHA segment numbers for image-plane angles on one short-axis level.

    Args:
        angle_deg: angles of myocardium points around the LV centre (see module docstring).
        level: one of ``basal``, ``mid``, ``apical``, ``apex``.
        rv_insertion_deg: angle of the anterior RV insertion point on this slice.

    Returns:
        An integer array shaped like ``angle_deg`` with segments 1-17.
    """
    rel = np.mod(np.asarray(angle_deg, dtype=np.float64) - rv_insertion_deg, 360.0)
    if level in _RING6:
        return np.asarray(_RING6[level])[np.minimum((rel // 60).astype(int), 5)]
    if level == "apical":
        idx = (np.mod(rel - _APICAL_OFFSET_DEG, 360.0) // 90).astype(int)
        return np.asarray(_RING4)[np.minimum(idx, 3)]
    if level == "apex":
        return np.full(np.shape(rel), 17, dtype=int)
    raise InputError(f"unknown AHA level {level!r}; choose one of {', '.join(LEVELS)}")


def slice_levels(has_myocardium: np.ndarray, has_cavity: np.ndarray) -> list[str | None]:
    """Assign AHA levels to the slices of a base-to-apex short-axis stack.

    Slices with myocardium but no cavity at the apical end form the apex cap (17); the other
    myocardial slices are split into basal, mid and apical thirds (the extra slice of an uneven
    split goes to the mid, then the basal third). Slices without myocardium get ``None``.

    Args:
        has_myocardium: per slice, ordered from base to apex.
        has_cavity: per slice, same order.
    """
    has_myo = np.asarray(has_myocardium, dtype=bool)
    has_cav = np.asarray(has_cavity, dtype=bool)
    if has_myo.shape != has_cav.shape or has_myo.ndim != 1:
        raise InputError("slice flags must be two 1D sequences of equal length")
    levels: list[str | None] = [None] * len(has_myo)
    myo_slices = list(np.flatnonzero(has_myo))
    while myo_slices and not has_cav[myo_slices[-1]]:
        levels[myo_slices.pop()] = "apex"
    n = len(myo_slices)
    if n == 0:
        return levels
    n_basal = n_apical = n // 3
    if n % 3 == 2:
        n_basal += 1
    for rank, k in enumerate(myo_slices):
        if rank < n_basal:
            levels[k] = "basal"
        elif rank >= n - n_apical:
            levels[k] = "apical"
        else:
            levels[k] = "mid"
    return levels


#: The narrow end of a short-axis stack is the apex: a stack is read apex to base when the mean LV
#: area (cavity + myocardium) of its first third of LV slices is below this share of its last
#: third's, and base to apex when the last third's is below this share of the first's. The ratio
#: is about 0.3-0.5 on real EMIDEC stacks (58 training cases); stacks without a clear narrow end
#: are left to the caller's default.
APEX_AREA_RATIO = 0.8


def apex_first(label: np.ndarray) -> bool | None:
    """Whether a label stack ``[i, j, k]`` (EMIDEC classes) runs from apex to base, read from its
    anatomy: True when slice 0 is at the apex end, False when at the base end, None when neither
    end is clearly narrower (:data:`APEX_AREA_RATIO`) nor holds the apex cap alone.

    The apex cap (myocardium without cavity, at one end of the LV slices only) decides first;
    otherwise the narrow end is the apex. Slice positions cannot tell: scanners stack short-axis
    slices either way (EMIDEC's volumes run apex to base).
    """
    label = np.asarray(label)
    if label.ndim != 3:
        raise InputError(f"expected a 3D label stack [i, j, k], got shape {label.shape}")
    lv = (label >= 1) & (label <= 4)
    area = lv.sum(axis=(0, 1))
    slices = np.flatnonzero(area)
    if len(slices) < 2:
        return None
    cavity = (label == 1).any(axis=(0, 1))
    cap_first, cap_last = not cavity[slices[0]], not cavity[slices[-1]]
    if cap_first != cap_last:
        return bool(cap_first)
    third = max(1, len(slices) // 3)
    first, last = area[slices[:third]].mean(), area[slices[-third:]].mean()
    if first < APEX_AREA_RATIO * last:
        return True
    if last < APEX_AREA_RATIO * first:
        return False
    return None


def territory_of_segment(segment: int) -> str:
    """The coronary territory (LAD, RCA or LCX) that usually supplies ``segment``."""
    for name, segments in TERRITORIES.items():
        if segment in segments:
            return name
    raise InputError(f"AHA segment must be 1-17, got {segment}")


def parse_territory(name: str) -> str:
    """The canonical territory name (``LAD``, ``RCA``, ``LCX``) for ``name`` in any case (``LCx``).

    Raises:
        InputError: ``name`` is not a coronary territory; the message names the choices.
    """
    key = str(name).strip().upper()
    if key not in TERRITORIES:
        raise InputError(f"unknown coronary territory {name!r}; choose one of {', '.join(TERRITORIES)}")
    return key


def myocardium_angles(
    label2d: np.ndarray, spacing_ij: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices and image-plane angles of the myocardium pixels of one short-axis slice.

    The angle is measured about the slice's LV centre, the mean position of its LV pixels
    (label > 0), counter-clockwise from image right with anterior up (module docstring):
    ``atan2(-(j - cj) * sj, (i - ci) * si)`` in degrees, in (-180, 180].

    Args:
        label2d: An EMIDEC label slice ``[i, j]`` (``i`` the image column, ``j`` the row).
        spacing_ij: Pixel size in mm along ``i`` and ``j``.

    Returns:
        ``(ii, jj, angle_deg)`` for the myocardium pixels (labels 2, 3, 4) in ``np.nonzero``
        order; empty arrays when the slice holds no myocardium.
    """
    label2d = np.asarray(label2d)
    myo = (label2d >= 2) & (label2d <= 4)
    ii, jj = np.nonzero(myo)
    if ii.size == 0:
        return ii, jj, np.zeros(0)
    ci, cj = np.argwhere(label2d > 0).mean(axis=0)
    angle = np.degrees(np.arctan2(-(jj - cj) * spacing_ij[1], (ii - ci) * spacing_ij[0]))
    return ii, jj, angle


def assign_segments(
    label: np.ndarray, spacing_ij: tuple[float, float], rv_insertion_deg: float | None = None
) -> np.ndarray:
    """The AHA segment (1-17) of every myocardium voxel of a base-to-apex label volume.

    Levels come from :func:`slice_levels` (slice position: basal, mid and apical thirds of the
    slices with cavity, the apex cap after them); angles from :func:`myocardium_angles`, about
    each slice's own LV centre.

    Args:
        label: EMIDEC labels ``[i, j, k]``, slice 0 the most basal; a 2D ``[i, j]`` slice is
            taken as a one-slice stack (a mid slice when it has a cavity).
        spacing_ij: Pixel size in mm along ``i`` and ``j``.
        rv_insertion_deg: Angle of the anterior RV insertion point; None uses the patient-axes
            default :data:`DEFAULT_RV_INSERTION_DEG` (120 degrees).

    Returns:
        An int array shaped like ``label``: the segment number on myocardium (labels 2, 3, 4),
        0 elsewhere.

    Raises:
        InputError: ``label`` is not 2D or 3D.
    """
    label = np.asarray(label)
    if label.ndim == 2:
        return assign_segments(label[:, :, np.newaxis], spacing_ij, rv_insertion_deg)[:, :, 0]
    if label.ndim != 3:
        raise InputError(f"expected a 2D or 3D label array, got shape {label.shape}")
    rv = DEFAULT_RV_INSERTION_DEG if rv_insertion_deg is None else float(rv_insertion_deg)
    myo = (label >= 2) & (label <= 4)
    levels = slice_levels(myo.any(axis=(0, 1)), (label == 1).any(axis=(0, 1)))
    segments = np.zeros(label.shape, dtype=np.int16)
    for k, level in enumerate(levels):
        if level is None:
            continue
        ii, jj, angle = myocardium_angles(label[:, :, k], spacing_ij)
        segments[ii, jj, k] = segment_from_angle(angle, level, rv)
    return segments
