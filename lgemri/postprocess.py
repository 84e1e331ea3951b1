"""Morphological clean-up of predicted LV labels: the cavity mask and whole EMIDEC label volumes.

:func:`clean_cavity` is the cavity refinement of Nor Kamal et al. 2026 (two-stage LGE
segmentation, Fig. 4): fill holes, keep the largest connected component, open then close with a
disk. :func:`enforce_anatomy` makes a five-class EMIDEC label (:mod:`lgemri.labels`)
anatomically plausible slice by slice: one LV, one myocardial ring, cavity inside the ring,
infarct inside the wall and no-reflow inside the infarct.

Connectivity: foreground components are fully connected (8 in 2D, 26 in 3D, MATLAB's
``bwconncomp`` default); holes are background regions not 4-connected to the array edge
(``scipy.ndimage.binary_fill_holes``).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.morphology import closing, convex_hull_image, disk, opening

from .errors import InputError
from .labels import CAVITY, INFARCT, MYOCARDIUM, NO_REFLOW, NUM_CLASSES, as_label, lv_mask, myocardium_mask

__all__ = ["largest_component", "clean_cavity", "enforce_anatomy", "remove_small_infarcts"]

_EIGHT = np.ones((3, 3), dtype=bool)


def largest_component(mask: np.ndarray, connectivity: int | None = None) -> np.ndarray:
    """The largest connected component of a binary mask of any dimension.

    Args:
        mask: Array; non-zero is foreground.
        connectivity: Neighbourhood as in ``scipy.ndimage.generate_binary_structure``: 1 for
            face neighbours only (4 in 2D, 6 in 3D) up to ``mask.ndim`` for all neighbours
            (8 in 2D, 26 in 3D, the default).

    Returns:
        A bool array of ``mask``'s shape; empty when ``mask`` is. Ties go to the component
        found first in C order.
    """
    mask = np.asarray(mask).astype(bool, copy=False)
    if not mask.any():
        return np.zeros(mask.shape, dtype=bool)
    rank = mask.ndim
    connectivity = rank if connectivity is None else int(connectivity)
    if not 1 <= connectivity <= max(rank, 1):
        raise ValueError(f"connectivity must lie in 1..{rank} for a {rank}D mask, got {connectivity}")
    labels, count = ndimage.label(mask, structure=ndimage.generate_binary_structure(rank, connectivity))
    if count == 1:
        return labels == 1
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def clean_cavity(mask2d: np.ndarray, radius: int = 2) -> np.ndarray:
    """Refine a predicted 2D LV-cavity mask as in Nor Kamal et al. 2026 (two-stage paper, Fig. 4).

    The steps are the paper's ``imfill(M, 'holes')``, ``largestCC``, then
    ``imclose(imopen(M, disk(r)), disk(r))``: holes are filled, only the largest 8-connected
    component is kept, an opening with a disk of ``radius`` pixels removes spurs and thin
    bridges narrower than the disk, and a closing with the same disk smooths notches. Because
    the opening may split the blob or the closing enclose a new hole, the result is hole-filled
    and reduced to its largest component once more, so it is always one hole-free blob (or
    empty). A cavity narrower than the disk everywhere (a tiny apical slice) is removed, as the
    paper's opening would. The array edge is mirrored (``mode='reflect'``), so a cavity cut by
    the field of view is not eroded along the edge.

    Args:
        mask2d: 2D array; non-zero is cavity.
        radius: Disk radius in pixels (``skimage.morphology.disk``); 0 skips the opening and
            closing.

    Returns:
        A bool array of ``mask2d``'s shape; empty in gives empty out.

    Raises:
        InputError: ``mask2d`` is not 2D or ``radius`` is negative.
    """
    mask = np.asarray(mask2d)
    if mask.ndim != 2:
        raise InputError(f"clean_cavity expects a 2D mask, got an array of shape {mask.shape}")
    if int(radius) != radius or radius < 0:
        raise InputError(f"clean_cavity radius must be a non-negative integer number of pixels, got {radius}")
    mask = mask.astype(bool)
    if not mask.any():
        return mask
    mask = largest_component(ndimage.binary_fill_holes(mask))
    if radius > 0:
        footprint = disk(int(radius))
        mask = closing(opening(mask, footprint), footprint)
    return largest_component(ndimage.binary_fill_holes(mask))


def enforce_anatomy(label: np.ndarray) -> np.ndarray:
    """Make an EMIDEC label anatomically plausible, slice by slice.

    The rules, applied to each 2D slice ``label[:, :, k]`` (a 2D label is one slice):

    1. **One LV per slice.** The LV is labels 1-4. On every slice the 8-connected LV
       components are found; the reference centre is the median, over slices, of the centroid
       of each slice's largest component, and the tolerance is the equivalent radius
       ``sqrt(A / pi)`` of the median largest-component area ``A`` (at least 2 px). Each
       slice keeps the largest component whose centroid lies within the tolerance of the
       reference centre, or, when none does, the component nearest to it; all other LV
       pixels become background. A stray blob (the RV, a false positive outside the heart)
       therefore loses even when it is the larger one on a slice, provided it lies away from
       where the LV is on most slices.
    2. **One myocardial ring.** Within the kept LV the largest 8-connected component of the
       wall {2, 3, 4} is the ring; other wall pixels are not wall (see 3). The ring's
       interior is ``binary_fill_holes(ring)``; each hole (4-connected background of the ring)
       that holds a cavity pixel is lumen, every other hole is a hole in the wall and is
       filled as myocardium (2), keeping 3 or 4 where the pixel already had it. A ring open
       on the slice (no hole, e.g. a gap in a predicted wall) has no lumen to fill: its
       interior is then the ring's convex hull.
    3. **Cavity inside the ring.** In a closed ring every lumen pixel becomes cavity (1),
       whatever it was (background, papillary "myocardium", stray infarct). In an open ring
       the LV pixels off the ring inside the convex hull become cavity when 8-connected to
       the ring, background otherwise. All LV pixels outside the interior become background;
       a slice without myocardium keeps no cavity.
    4. **Infarct only in the wall** follows from 2-3: infarct (3) and no-reflow (4) survive
       only on the ring; elsewhere they became cavity (inside) or background (outside).
    5. **No-reflow only in infarct.** Each 8-connected no-reflow component of a slice that
       touches no infarct pixel (8-neighbourhood) becomes infarct.

    The result has at most one 8-connected LV component per slice, and applying the function
    again changes nothing (idempotent). A label already obeying the rules (the usual
    ground-truth label) is returned unchanged.

    Args:
        label: 2D ``[i, j]`` or 3D ``[i, j, k]`` array of integer values 0..4 (any numeric
            dtype; EMIDEC stores float64).

    Returns:
        A uint8 array of ``label``'s shape.

    Raises:
        InputError: ``label`` is not 2D or 3D, or holds a value that is not an integer 0..4.
    """
    values = np.asarray(label)
    if values.ndim not in (2, 3):
        raise InputError(f"enforce_anatomy expects a 2D or 3D label, got an array of shape {values.shape}")
    values = _as_label(values)
    stack = values[..., np.newaxis] if values.ndim == 2 else values
    out = np.zeros_like(stack)
    kept = _select_lv(lv_mask(stack))
    for k in range(stack.shape[2]):
        if kept[k] is not None:
            out[..., k] = _clean_slice(np.where(kept[k], stack[..., k], 0))
    return out[..., 0] if values.ndim == 2 else out


def _as_label(values: np.ndarray) -> np.ndarray:
    return as_label(values, "enforce_anatomy")
    if not np.issubdtype(values.dtype, np.integer):
        if not np.isfinite(values).all() or np.any(values != np.round(values)):
            raise InputError("enforce_anatomy: label values must be integers 0..4, found non-integer values")
    if values.size and (values.min() < 0 or values.max() >= NUM_CLASSES):
        raise InputError(
            f"enforce_anatomy: label values must lie in 0..{NUM_CLASSES - 1}, found {values.min():g}..{values.max():g}"
        )
    return values.astype(np.uint8)


def _select_lv(lv: np.ndarray) -> list[np.ndarray | None]:
    """Rule 1: the kept LV component of every slice of ``lv`` [i, j, k], None for empty slices."""
    per_slice = []  # (labels, sizes, centroids) per slice, None when empty
    for k in range(lv.shape[2]):
        if not lv[..., k].any():
            per_slice.append(None)
            continue
        labels, count = ndimage.label(lv[..., k], structure=_EIGHT)
        index = np.arange(1, count + 1)
        sizes = ndimage.sum_labels(np.ones(labels.shape), labels, index)
        centroids = np.array(ndimage.center_of_mass(np.ones(labels.shape), labels, index), dtype=float)
        per_slice.append((labels, sizes, centroids.reshape(count, 2)))
    present = [s for s in per_slice if s is not None]
    if not present:
        return [None] * lv.shape[2]
    biggest = [int(np.argmax(sizes)) for _, sizes, _ in present]
    reference = np.median([c[b] for (_, _, c), b in zip(present, biggest)], axis=0)
    median_area = float(np.median([s[b] for (_, s, _), b in zip(present, biggest)]))
    tolerance = max(np.sqrt(median_area / np.pi), 2.0)
    kept: list[np.ndarray | None] = []
    for entry in per_slice:
        if entry is None:
            kept.append(None)
            continue
        labels, sizes, centroids = entry
        distance = np.hypot(*(centroids - reference).T)
        near = distance <= tolerance
        if near.any():
            choice = int(np.argmax(np.where(near, sizes, -1)))
        else:
            choice = int(np.argmin(distance))
        kept.append(labels == choice + 1)
    return kept


def _clean_slice(lab: np.ndarray) -> np.ndarray:
    """Rules 2-5 on one slice holding a single LV component (other pixels 0)."""
    out = np.zeros_like(lab)
    ring = largest_component(myocardium_mask(lab))
    if not ring.any():
        return out
    holes = ndimage.binary_fill_holes(ring) & ~ring
    wall = ring.copy()
    lumen = np.zeros_like(ring)
    if holes.any():
        hole_labels, count = ndimage.label(holes)  # 4-connected, as binary_fill_holes sees them
        with_cavity = ndimage.maximum(lab == CAVITY, hole_labels, np.arange(1, count + 1))
        cavity_holes = np.flatnonzero(np.asarray(with_cavity, dtype=bool)) + 1
        lumen = np.isin(hole_labels, cavity_holes)
        wall |= holes & ~lumen
    else:
        inside = convex_hull_image(ring) & ~ring & (lab > 0)
        if inside.any():
            parts, _ = ndimage.label(inside, structure=_EIGHT)
            touching = np.unique(parts[ndimage.binary_dilation(ring, structure=_EIGHT) & inside])
            lumen = np.isin(parts, touching[touching > 0])
    out[lumen] = CAVITY
    out[wall] = np.where(myocardium_mask(lab[wall]), lab[wall], MYOCARDIUM)

    no_reflow = out == NO_REFLOW
    if no_reflow.any():
        parts, count = ndimage.label(no_reflow, structure=_EIGHT)
        near_infarct = ndimage.binary_dilation(out == INFARCT, structure=_EIGHT)
        touching = ndimage.maximum(near_infarct, parts, np.arange(1, count + 1))
        isolated = np.flatnonzero(~np.asarray(touching, dtype=bool)) + 1
        out[np.isin(parts, isolated)] = INFARCT
    return out


def remove_small_infarcts(label: np.ndarray, voxel_ml: float, min_ml: float) -> np.ndarray:
    """Relabel infarct components smaller than ``min_ml`` (with their no-reflow) as healthy myocardium.

    Components of infarct {3, 4} are found in 3D with full (26-) connectivity, so an infarct
    continued on the next slice is one component. A speck below ``min_ml`` millilitres is
    treated as noise. The cascade's default, 1 ml (``lgemri.inference.MIN_INFARCT_ML``), was
    chosen with ``experiments/min_infarct_tuning.py`` on 60 phantom studies used neither for
    training nor testing: it removed false-positive specks on normal studies without changing
    the Dice of true infarcts, which are several ml in the phantom. It is a trade-off: a real
    infarct under 1 ml (well under 1 % of a normal LV's myocardium) is not reported.

    Args:
        label: 3D EMIDEC label ``[i, j, k]`` (values 0..4).
        voxel_ml: Volume of one voxel in millilitres.
        min_ml: Smallest infarct component kept; 0 keeps everything.

    Returns:
        A uint8 copy of ``label``.
    """
    out = np.array(label, dtype=np.uint8, copy=True)
    if min_ml <= 0:
        return out
    scar = (out == INFARCT) | (out == NO_REFLOW)
    components, count = ndimage.label(scar, structure=np.ones((3,) * out.ndim, dtype=bool))
    if count == 0:
        return out
    sizes = ndimage.sum_labels(scar, components, index=np.arange(1, count + 1)) * voxel_ml
    small = np.flatnonzero(sizes < min_ml) + 1
    out[np.isin(components, small)] = MYOCARDIUM
    return out
