"""Cross-subject fusion: a donor's infarct moved into the myocardium of a similar recipient.

1. A donor is drawn among the subjects with an infarct (of the requested territory, if any).
2. Its recipients are its k nearest neighbours (Euclidean, on z-scored
   :data:`simulator.hybrid.DESCRIPTOR_NAMES`: cavity diameter, wall thickness, eccentricity,
   LV length, myocardium-to-blood ratio), never the donor itself.
3. For each of them and a few random jitters the donor infarct is mapped by an affine transform:
   through-plane, the LV slices of the two stacks are matched linearly from base to apex;
   in-plane, ``x_r = c_r + s * S_r R(phi) S_d^-1 (x_d - c_d)`` with ``c`` each slice's LV
   centre, ``S`` the square root of the LV's in-plane covariance (it maps the donor's LV
   ellipse onto the recipient's), ``R(phi)`` a rotation by -10..10 degrees and ``s`` a
   0.95-1.05 scale. Recipient wall voxels take the donor class found at their pre-image, so the
   infarct never leaves the recipient wall.
4. A cost scores each result (weights :data:`COST_WEIGHTS`):
   ``outside_wall`` the share of the donor infarct whose image falls off the recipient wall
   (cavity or background); ``size`` the relative change of infarct size (% of LV);
   ``sparing`` the increase in infarcted sectors without subendocardial infarct (a wavefront
   infarct starts at the endocardium) and ``transmurality`` the change of mean sector
   transmurality (/100), both implausible transmurality; ``overlap`` the share of the moved
   infarct that lands on an infarct the recipient already has (only when it is kept).
   The cheapest result is kept if its cost is at most ``max_cost``; otherwise the donor is
   rejected and another one drawn (four attempts, then the case is skipped with a logged reason).
5. Repair: no-reflow touching healthy myocardium becomes infarct, in-plane infarct fragments of
   under 4 voxels are dropped, and only the longest run of infarcted slices is kept.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
from scipy import ndimage

from lgemri.labels import INFARCT, MYOCARDIUM, NO_REFLOW

from .hybrid import Subject
from .wall import N_SECTORS, SECTOR_DEG, enclose_no_reflow, measure

__all__ = ["Fusion", "COST_WEIGHTS", "nearest_recipients", "transfer", "fuse"]

logger = logging.getLogger(__name__)

COST_WEIGHTS = {"outside_wall": 1.0, "size": 0.5, "sparing": 0.5, "transmurality": 0.5, "overlap": 1.0}
JITTERS = 2
ATTEMPTS = 4
MIN_FRAGMENT = 4


@dataclasses.dataclass
class Fusion:
    """The fused label and how it was made."""

    label: np.ndarray
    donor: str
    recipient: str
    cost: float
    parts: dict[str, float]
    donor_infarct_pct: float
    rotation_deg: float
    scale: float
    repaired: int  # voxels changed by the repair


def nearest_recipients(subjects: list[Subject], donor: int, k: int) -> list[int]:
    """Indices of the ``k`` subjects nearest to ``subjects[donor]`` on z-scored descriptors."""
    features = np.stack([s.descriptors for s in subjects])
    sd = features.std(axis=0)
    z = (features - features.mean(axis=0)) / np.where(sd > 1e-9, sd, 1.0)
    dist = np.linalg.norm(z - z[donor], axis=1)
    dist[donor] = np.inf
    order = np.argsort(dist, kind="stable")
    return [int(i) for i in order[: min(k, len(subjects) - 1)]]


def _lv_frame(anatomy: np.ndarray) -> tuple[list[int], np.ndarray, np.ndarray]:
    """LV slices, their LV centres ``(i, j)`` and the square root of the pooled in-plane
    covariance of LV positions about each slice's centre (mm, in the x-right/y-up frame)."""
    slices, centres, offsets = [], [], []
    for k in range(anatomy.shape[2]):
        pts = np.argwhere(anatomy[:, :, k] > 0)
        if len(pts) == 0:
            continue
        c = pts.mean(axis=0)
        slices.append(k)
        centres.append(c)
        offsets.append(np.stack([pts[:, 0] - c[0], -(pts[:, 1] - c[1])], axis=1))
    xy = np.concatenate(offsets)
    cov = np.cov(xy.T) + 1e-6 * np.eye(2)
    vals, vecs = np.linalg.eigh(cov)
    root = vecs @ np.diag(np.sqrt(vals)) @ vecs.T
    return slices, np.asarray(centres), root


def _sparing(wall, infarct: np.ndarray) -> float:
    """Share of infarcted sectors with no infarct in the inner third of the wall."""
    if not infarct.any():
        return 0.0
    sector = np.minimum((wall.theta // SECTOR_DEG).astype(np.intp), N_SECTORS - 1) + wall.kk * N_SECTORS
    hit = np.bincount(sector[infarct], minlength=wall.shape[2] * N_SECTORS) > 0
    inner = np.bincount(sector[infarct & (wall.depth <= 1.0 / 3.0)], minlength=wall.shape[2] * N_SECTORS) > 0
    return float((hit & ~inner).sum() / hit.sum())


def transfer(
    donor: Subject,
    recipient: Subject,
    rotation_deg: float = 0.0,
    scale: float = 1.0,
    keep_recipient_infarct: bool = False,
) -> tuple[np.ndarray, dict[str, float], float]:
    """Map ``donor``'s infarct into ``recipient`` (module docstring, steps 3-4), before repair.

    Returns:
        ``(label, parts, cost)``: the recipient's label with the moved infarct, the cost terms
        and their weighted sum (infinite when nothing lands on the wall).
    """
    d_slices, d_centres, d_root = _lv_frame(donor.anatomy)
    r_slices, r_centres, r_root = _lv_frame(recipient.anatomy)
    nd, nr = len(d_slices), len(r_slices)
    if nr > 1:
        ranks = np.rint(np.arange(nr) * (nd - 1) / (nr - 1)).astype(int)
    else:
        ranks = np.array([(nd - 1) // 2])
    phi = math.radians(rotation_deg)
    rot = np.array([[math.cos(phi), -math.sin(phi)], [math.sin(phi), math.cos(phi)]])
    forward = scale * r_root @ rot @ np.linalg.inv(d_root)
    inverse = np.linalg.inv(forward)

    # Inverse mapping: every recipient wall voxel reads the donor class at its pre-image.
    wall = recipient.wall
    slot = np.full(recipient.anatomy.shape[2], -1)
    slot[r_slices] = np.arange(nr)
    rank = slot[wall.kk]
    x = wall.ii - r_centres[rank, 0]
    y = -(wall.jj - r_centres[rank, 1])
    qx, qy = inverse @ np.stack([x, y])
    di = np.rint(d_centres[ranks[rank], 0] + qx).astype(np.intp)
    dj = np.rint(d_centres[ranks[rank], 1] - qy).astype(np.intp)
    dk = np.asarray(d_slices)[ranks[rank]]
    ni, nj, _ = donor.label.shape
    inside = (di >= 0) & (di < ni) & (dj >= 0) & (dj < nj)
    value = np.zeros(wall.n, dtype=np.uint8)
    value[inside] = donor.label[di[inside], dj[inside], dk[inside]]
    moved = value >= INFARCT
    moved_nr = value == NO_REFLOW

    # Forward mapping of the donor infarct, to see how much of it falls off the recipient wall.
    landed = off = 0
    for r_rank, kr in enumerate(r_slices):
        kd = d_slices[ranks[r_rank]]
        pts = np.argwhere(donor.label[:, :, kd] >= INFARCT)
        if len(pts) == 0:
            continue
        offs = np.stack([pts[:, 0] - d_centres[ranks[r_rank], 0], -(pts[:, 1] - d_centres[ranks[r_rank], 1])])
        fx, fy = forward @ offs
        ri = np.rint(r_centres[r_rank, 0] + fx).astype(np.intp)
        rj = np.rint(r_centres[r_rank, 1] - fy).astype(np.intp)
        ok = (ri >= 0) & (ri < recipient.anatomy.shape[0]) & (rj >= 0) & (rj < recipient.anatomy.shape[1])
        on_wall = np.zeros(len(pts), dtype=bool)
        on_wall[ok] = recipient.anatomy[ri[ok], rj[ok], kr] == MYOCARDIUM
        landed += len(pts)
        off += int((~on_wall).sum())

    base = recipient.label if keep_recipient_infarct else recipient.anatomy
    label = base.copy()
    fresh = moved & (wall.values(base) == MYOCARDIUM)
    label[wall.ii[fresh], wall.jj[fresh], wall.kk[fresh]] = INFARCT
    label[wall.ii[moved_nr], wall.jj[moved_nr], wall.kk[moved_nr]] = NO_REFLOW
    if not moved.any() or landed == 0:
        return label, {name: math.inf for name in COST_WEIGHTS}, math.inf

    d_meas = measure(donor.wall, donor.label)
    r_meas = measure(wall, label)
    already = wall.values(recipient.label) >= INFARCT if keep_recipient_infarct else np.zeros(wall.n, dtype=bool)
    parts = {
        "outside_wall": off / landed,
        "size": abs(r_meas.infarct_pct - d_meas.infarct_pct) / max(d_meas.infarct_pct, 1e-9),
        "sparing": max(0.0, _sparing(wall, moved) - _sparing(donor.wall, donor.wall.values(donor.label) >= INFARCT)),
        "transmurality": abs(r_meas.case_transmurality_mean - d_meas.case_transmurality_mean) / 100.0,
        "overlap": float((moved & already).sum() / moved.sum()),
    }
    cost = sum(COST_WEIGHTS[name] * value for name, value in parts.items())
    return label, parts, float(cost)


def _repair(label: np.ndarray) -> int:
    """Repair a fused label in place (module docstring, step 5); returns the voxels changed."""
    before = label.copy()
    enclose_no_reflow(label)
    infarct = label >= INFARCT
    for k in np.flatnonzero(infarct.any(axis=(0, 1))):
        parts, n = ndimage.label(infarct[:, :, k])
        sizes = np.bincount(parts.ravel(), minlength=n + 1)
        small = np.isin(parts, np.flatnonzero(sizes < MIN_FRAGMENT)) & (parts > 0)
        label[:, :, k][small] = MYOCARDIUM
    counts = (label >= INFARCT).sum(axis=(0, 1))
    runs, start = [], None
    for k, c in enumerate(list(counts) + [0]):
        if c and start is None:
            start = k
        elif not c and start is not None:
            runs.append((int(counts[start:k].sum()), start, k))
            start = None
    if len(runs) > 1:
        _, lo, hi = max(runs)
        outside = np.ones(label.shape[2], dtype=bool)
        outside[lo:hi] = False
        sub = label[:, :, outside]
        sub[sub >= INFARCT] = MYOCARDIUM
        label[:, :, outside] = sub
    return int((label != before).sum())


def fuse(
    subjects: list[Subject],
    donors: list[int],
    rng: np.random.Generator,
    k: int = 3,
    max_cost: float = 0.5,
    keep_recipient_infarct: bool = False,
) -> Fusion | None:
    """One fused case (module docstring); None when every attempt cost more than ``max_cost``.

    Args:
        subjects: the pool (donors and recipients).
        donors: indices into ``subjects`` of the allowed donors (each has an infarct).
        rng: the case's random generator.
        k: number of nearest recipients tried per donor.
        max_cost: the largest acceptable cost.
        keep_recipient_infarct: merge into the recipient's own infarct instead of its anatomy.
    """
    for attempt in range(ATTEMPTS):
        d = donors[int(rng.integers(len(donors)))]
        best = None
        for r in nearest_recipients(subjects, d, k):
            for _ in range(JITTERS):
                rotation, scale = float(rng.uniform(-10.0, 10.0)), float(rng.uniform(0.95, 1.05))
                label, parts, cost = transfer(subjects[d], subjects[r], rotation, scale, keep_recipient_infarct)
                if best is None or cost < best[0]:
                    best = (cost, r, label, parts, rotation, scale)
        if best is None:
            break
        cost, r, label, parts, rotation, scale = best
        if cost <= max_cost:
            repaired = _repair(label)
            donor_pct = measure(subjects[d].wall, subjects[d].label).infarct_pct
            donor_id, recipient_id = subjects[d].subject_id, subjects[r].subject_id
            return Fusion(label, donor_id, recipient_id, cost, parts, donor_pct, rotation, scale, repaired)
        logger.debug(
            "fusion attempt %d: donor %s rejected (best cost %.3f > %.3f)",
            attempt + 1,
            subjects[d].subject_id,
            cost,
            max_cost,
        )
    return None
