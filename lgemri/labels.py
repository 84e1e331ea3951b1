"""The EMIDEC label convention used everywhere in cardiac_mi.

Lalande et al., "Emidec: a database usable for the automatic evaluation of myocardial infarction
from delayed-enhancement cardiac MRI", Data 5(4):89, 2020: 0 background, 1 LV cavity,
2 healthy myocardium, 3 infarct, 4 no-reflow (microvascular obstruction). Infarct and no-reflow
lie inside the myocardial wall; EMIDEC counts no-reflow as part of the infarct.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

__all__ = [
    "as_label",
    "BACKGROUND",
    "CAVITY",
    "MYOCARDIUM",
    "INFARCT",
    "NO_REFLOW",
    "LABEL_NAMES",
    "DISPLAY_NAMES",
    "NUM_CLASSES",
    "myocardium_mask",
    "infarct_mask",
    "lv_mask",
]

BACKGROUND = 0
CAVITY = 1
MYOCARDIUM = 2
INFARCT = 3
NO_REFLOW = 4

LABEL_NAMES: dict[int, str] = {
    BACKGROUND: "background",
    CAVITY: "lv_cavity",
    MYOCARDIUM: "myocardium",
    INFARCT: "infarct",
    NO_REFLOW: "no_reflow",
}
NUM_CLASSES = len(LABEL_NAMES)
#: The names a clinician reads (viewer, reports); LABEL_NAMES are the identifiers.
DISPLAY_NAMES: dict[int, str] = {
    CAVITY: "LV blood pool",
    MYOCARDIUM: "Myocardium",
    INFARCT: "Infarct",
    NO_REFLOW: "MVO",
}


def myocardium_mask(label: np.ndarray) -> np.ndarray:
    """The whole LV wall, EMIDEC's "myocardium" = {2, 3, 4}."""
    return np.isin(label, (MYOCARDIUM, INFARCT, NO_REFLOW))


def infarct_mask(label: np.ndarray) -> np.ndarray:
    """EMIDEC's "infarct" = {3, 4} (no-reflow counts as infarct)."""
    return np.isin(label, (INFARCT, NO_REFLOW))


def lv_mask(label: np.ndarray) -> np.ndarray:
    """Cavity and wall together, {1, 2, 3, 4}."""
    return label > BACKGROUND


LABEL_TOLERANCE = 1e-3


def as_label(values: np.ndarray, where: object) -> np.ndarray:
    """``values`` as a uint8 EMIDEC label, after checking they are integers 0-4.

    Float storage (EMIDEC ships float64 labels) is accepted when every value is within 1e-3 of
    an integer. ``where`` (a file or a description) is named in the error.

    Raises:
        InputError: a value is not finite, not an integer, or outside 0-4.
    """
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.integer) and values.dtype != bool:
        bad = ~np.isfinite(values)
        if not bad.any():
            bad = np.abs(values - np.round(values)) > LABEL_TOLERANCE
        if bad.any():
            at = tuple(int(x) for x in np.argwhere(bad)[0])
            raise InputError(f"{where}: label values must be integers, found {float(values[at]):g} at voxel {at}")
        values = np.round(values)
    outside = np.unique(values[(values < 0) | (values >= NUM_CLASSES)])
    if outside.size:
        shown = ", ".join(f"{v:g}" for v in outside[:10].astype(float))
        raise InputError(f"{where}: label values must lie in 0..{NUM_CLASSES - 1}, found {shown}")
    return values.astype(np.uint8)
