"""The EMIDEC label convention used everywhere in cardiac_mi.

Lalande et al., "Emidec: a database usable for the automatic evaluation of myocardial infarction
from delayed-enhancement cardiac MRI", Data 5(4):89, 2020: 0 background, 1 LV cavity,
2 healthy myocardium, 3 infarct, 4 no-reflow (microvascular obstruction). Infarct and no-reflow
lie inside the myocardial wall; EMIDEC counts no-reflow as part of the infarct.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BACKGROUND",
    "CAVITY",
    "MYOCARDIUM",
    "INFARCT",
    "NO_REFLOW",
    "LABEL_NAMES",
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


def myocardium_mask(label: np.ndarray) -> np.ndarray:
    """The whole LV wall, EMIDEC's "myocardium" = {2, 3, 4}."""
    return np.isin(label, (MYOCARDIUM, INFARCT, NO_REFLOW))


def infarct_mask(label: np.ndarray) -> np.ndarray:
    """EMIDEC's "infarct" = {3, 4} (no-reflow counts as infarct)."""
    return np.isin(label, (INFARCT, NO_REFLOW))


def lv_mask(label: np.ndarray) -> np.ndarray:
    """Cavity and wall together, {1, 2, 3, 4}."""
    return label > BACKGROUND
