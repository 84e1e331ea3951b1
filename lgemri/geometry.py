"""In-plane resampling, the left-ventricle centre and fixed-size regions of interest around it.

All functions follow the :mod:`lgemri.volume` convention: ``array[i, j, k]`` with ``i`` and ``j``
in the slice plane and ``k`` across slices. 2D arrays are ``[i, j]``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .errors import InputError
from .volume import Volume

__all__ = ["resample_inplane", "lv_centre", "crop_roi", "paste_roi"]

Box = tuple[int, int, int, int]


def _source_coordinates(n: int, dx: float, spacing: float) -> np.ndarray:
    """Old continuous indices of the new voxel centres along one axis (first FOV edge kept)."""
    n_new = max(1, math.floor(n * dx / spacing + 1e-6))
    return (np.arange(n_new) + 0.5) * (spacing / dx) - 0.5


def resample_inplane(volume: Volume, spacing: float = 1.0, order: int = 3) -> Volume:
    """Resample every slice in-plane to ``spacing`` mm along ``i`` and ``j``; slices are untouched.

    The new grid covers the old field of view from its first edge: an axis of ``n`` voxels of
    ``dx`` mm becomes ``floor(n * dx / spacing)`` voxels (at least one) and new index ``i'`` sits
    at old continuous index ``(i' + 0.5) * spacing / dx - 0.5``. The returned affine is exact for
    that mapping, so every voxel keeps its place in the patient.

    Args:
        volume: The image or label volume.
        spacing: The new in-plane voxel size in mm.
        order: Spline order for ``scipy.ndimage.map_coordinates``: 3 (cubic, for images; the result
            is clipped to the input's range to remove overshoot) or 0 (nearest, for labels; the
            dtype is kept). Orders above 0 give a floating result.

    Returns:
        The resampled volume with the same number of slices and the same slice spacing.

    Raises:
        InputError: ``spacing`` is not a positive number or ``order`` is not in 0..5.
    """
    if not (math.isfinite(spacing) and spacing > 0):
        raise InputError(f"in-plane spacing must be a positive number of mm, got {spacing}")
    if order not in range(6):
        raise InputError(f"spline order must be in 0..5, got {order}")
    ni, nj, nk = volume.shape
    dx, dy = (float(s) for s in volume.spacing[:2])
    ci = _source_coordinates(ni, dx, spacing)
    cj = _source_coordinates(nj, dy, spacing)
    grid = np.stack(np.meshgrid(ci, cj, indexing="ij"))

    source = volume.array
    if order == 0:
        dtype = source.dtype
    else:
        dtype = source.dtype if np.issubdtype(source.dtype, np.floating) else np.float64
    out = np.empty((ci.size, cj.size, nk), dtype=dtype)
    for k in range(nk):
        out[..., k] = ndimage.map_coordinates(
            source[..., k].astype(dtype, copy=False), grid, order=order, mode="nearest"
        )
    if order > 0:
        np.clip(out, source.min(), source.max(), out=out)

    affine = volume.affine.copy()
    col_i, col_j = volume.affine[:3, 0], volume.affine[:3, 1]
    affine[:3, 0] = col_i * (spacing / dx)
    affine[:3, 1] = col_j * (spacing / dy)
    affine[:3, 3] += ci[0] * col_i + cj[0] * col_j
    return Volume(out, affine)


def lv_centre(label: np.ndarray) -> tuple[float, float] | None:
    """The left-ventricle centre of a case in ``(i, j)`` voxel indices.

    Each slice holding LV (``label > 0``) contributes its LV centroid; the centre is the median
    of those centroids per axis, which ignores a few odd basal or apical slices.

    Args:
        label: A 3D label array ``[i, j, k]``.

    Returns:
        ``(i, j)`` as floats, or None when no slice holds LV.
    """
    centroids = []
    for k in range(label.shape[2]):
        ii, jj = np.nonzero(label[..., k] > 0)
        if ii.size:
            centroids.append((ii.mean(), jj.mean()))
    if not centroids:
        return None
    ci, cj = np.median(np.asarray(centroids), axis=0)
    return float(ci), float(cj)


def _overlap(box: Box, shape: tuple[int, ...]) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Slices into the source grid and into the crop for the part of ``box`` inside ``shape``."""
    i0, j0, i1, j1 = box
    si0, sj0 = max(i0, 0), max(j0, 0)
    si1, sj1 = min(i1, shape[0]), min(j1, shape[1])
    if si1 <= si0 or sj1 <= sj0:
        return (slice(0, 0), slice(0, 0)), (slice(0, 0), slice(0, 0))
    src = (slice(si0, si1), slice(sj0, sj1))
    dst = (slice(si0 - i0, si1 - i0), slice(sj0 - j0, sj1 - j0))
    return src, dst


def crop_roi(
    array: np.ndarray, centre_ij: tuple[float, float], size: int = 128, fill: float = 0
) -> tuple[np.ndarray, Box]:
    """Cut a ``size`` x ``size`` window on the first two axes, centred on the rounded centre.

    Args:
        array: A 2D ``[i, j]`` or 3D ``[i, j, k]`` array.
        centre_ij: The window centre in ``(i, j)`` voxel indices (rounded half up).
        size: The window side in voxels.
        fill: The value for the parts of the window outside the array.

    Returns:
        ``(crop, box)`` where ``box = (i0, j0, i1, j1)`` is the window in the source grid
        (``i1 - i0 == j1 - j0 == size``); it may reach outside the array.
    """
    if size < 1:
        raise InputError(f"ROI size must be at least 1 voxel, got {size}")
    ci, cj = (math.floor(c + 0.5) for c in centre_ij)
    i0, j0 = ci - size // 2, cj - size // 2
    box = (i0, j0, i0 + size, j0 + size)
    crop = np.full((size, size) + array.shape[2:], fill, dtype=array.dtype)
    src, dst = _overlap(box, array.shape)
    crop[dst] = array[src]
    return crop, box


def paste_roi(crop: np.ndarray, box: Box, shape: tuple[int, ...], fill: float = 0) -> np.ndarray:
    """Put a :func:`crop_roi` window back into a new array of ``shape`` (inverse of the crop).

    Args:
        crop: The window, ``[size_i, size_j, ...]``.
        box: ``(i0, j0, i1, j1)`` as returned by :func:`crop_roi`.
        shape: The shape of the full array; its trailing axes must match the crop's.
        fill: The value outside the window.

    Returns:
        An array of ``shape`` and the crop's dtype; parts of the window beyond the borders are
        dropped.
    """
    i0, j0, i1, j1 = box
    if crop.shape[:2] != (i1 - i0, j1 - j0) or crop.shape[2:] != tuple(shape[2:]):
        raise InputError(f"crop of shape {crop.shape} does not fit box {box} in shape {shape}")
    out = np.full(shape, fill, dtype=crop.dtype)
    src, dst = _overlap(box, shape)
    out[src] = crop[dst]
    return out
