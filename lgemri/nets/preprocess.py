"""What the networks see: the one place where inputs are shaped and normalised.

Training (``lgemri.training``) and inference (``lgemri.inference``) both call these functions, so
the two can never drift apart.

- Segmentation sees a ``ROI_SIZE`` x ``ROI_SIZE`` crop at 1 x 1 mm centred on the LV.
- Localization sees the whole slice at ``LOC_FACTOR`` mm (block means of the 1 mm slice), padded
  or cropped about its centre to ``LOC_SIZE`` x ``LOC_SIZE`` (a 384 mm field of view).
- Intensities are scaled per 2D input from its 1st and 99th percentiles to about 0-1, which
  absorbs the arbitrary scaling of MR magnitude images and the coil bias of one slice.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ROI_SIZE",
    "LOC_FACTOR",
    "LOC_SIZE",
    "normalize",
    "localization_input",
    "localization_to_slice",
    "localization_target",
]

ROI_SIZE = 128
LOC_FACTOR = 3
LOC_SIZE = 128


def normalize(array: np.ndarray) -> np.ndarray:
    """Scale a 2D input so that its 1st and 99th percentiles map to 0 and 1 (float32)."""
    array = np.asarray(array, dtype=np.float32)
    lo, hi = np.percentile(array, [1.0, 99.0])
    scale = hi - lo if hi > lo else 1.0
    return ((array - lo) / scale).astype(np.float32)


def _block_mean(array: np.ndarray, factor: int) -> np.ndarray:
    ni, nj = (-(-array.shape[0] // factor)) * factor, (-(-array.shape[1] // factor)) * factor
    padded = np.pad(array, ((0, ni - array.shape[0]), (0, nj - array.shape[1])), mode="edge")
    return padded.reshape(ni // factor, factor, nj // factor, factor).mean(axis=(1, 3))


def _centre_fit(array: np.ndarray, size: int, fill: float) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad or crop about the centre to ``size`` x ``size``; returns the array and the offset
    (index in the output of the input's index 0, per axis)."""
    out = np.full((size, size), fill, dtype=array.dtype)
    offsets = []
    src, dst = [], []
    for n in array.shape:
        off = (size - n) // 2
        offsets.append(off)
        src.append(slice(max(0, -off), max(0, -off) + min(n, size)))
        dst.append(slice(max(0, off), max(0, off) + min(n, size)))
    out[tuple(dst)] = array[tuple(src)]
    return out, (offsets[0], offsets[1])


def localization_input(slice_1mm: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """The localization network's input for one 1 mm slice [i, j], and the offset of the
    coarse grid (pass it to :func:`localization_to_slice`)."""
    coarse = _block_mean(np.asarray(slice_1mm, dtype=np.float32), LOC_FACTOR)
    fitted, offset = _centre_fit(coarse, LOC_SIZE, float(coarse.min()))
    return normalize(fitted), offset


def localization_to_slice(ij: np.ndarray, offset: tuple[int, int]) -> np.ndarray:
    """Map coarse localization-grid indices (..., 2) back to 1 mm slice indices (block centres)."""
    ij = np.asarray(ij, dtype=np.float64)
    return (ij - np.asarray(offset)) * LOC_FACTOR + (LOC_FACTOR - 1) / 2.0


def localization_target(label_1mm: np.ndarray) -> np.ndarray:
    """The localization network's target for one 1 mm label slice: LV (labels 1-4) on the coarse
    grid, a voxel counted as LV when at least half of its block is."""
    lv = (np.asarray(label_1mm) > 0).astype(np.float32)
    coarse = _block_mean(lv, LOC_FACTOR)
    fitted, _ = _centre_fit(coarse, LOC_SIZE, 0.0)
    return (fitted >= 0.5).astype(np.uint8)
