"""Infarct and no-reflow grown from seed points along the myocardium, in wall coordinates.

An infarct starts at the subendocardium and spreads outward and sideways (the wavefront of
Reimer and Jennings, Lab Invest 40:633, 1979). The simulator places one to three seed points on
the subendocardium (depth <= 0.25) of the requested location and lets every wall voxel join the
infarct at its *arrival time*::

    T = min over seeds s of ( dtheta_s / (90 deg * spread_s) + |z - z_s| / Z + taper * depth / cap )
        + heterogeneity * (0.35 * smooth_noise + 0.03 * pixel_noise)

with ``dtheta_s`` the angular distance to the seed, ``z`` the slice position in mm, ``cap`` the
local transmurality limit (the requested transmurality, roughened by the heterogeneity),
``smooth_noise`` a random field smooth in angle, slice position and depth (per-slice tables of
angular harmonics, read with one gather per voxel) and ``pixel_noise`` uniform per voxel.
Voxels deeper than ``cap`` or outside the allowed AHA segments never join. Growing the region
until it holds the requested share of the LV myocardium is then a partial sort of ``T``: the
voxels join in the order a priority-queue region grower would take them, without a per-pixel
queue (``bench/simulator_speed.py`` compares the two). Slices hit by the infarct are kept
contiguous along the stack.

No-reflow (microvascular obstruction) is the core of the infarct: the infarct voxels with the
earliest arrival under a steeper depth term (it starts subendocardially), relabelled infarct
wherever they would touch healthy myocardium. It appears only in infarcts of at least 50 %
transmurality.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated

import numpy as np
from pydantic import AfterValidator, Field, model_validator

from lgemri import aha
from lgemri.config import Checked
from lgemri.errors import InputError

from .wall import Wall

__all__ = ["InfarctSpec", "Growth", "grow_infarct", "allowed_segments", "check_segments", "TERRITORY_PREVALENCE"]

# Culprit-artery shares used to place an infarct when no territory is asked for (LAD most
# often; approximate, design values shared with the phantom, lgemri.phantom.anatomy).
TERRITORY_PREVALENCE = {"LAD": 0.5, "RCA": 0.3, "LCX": 0.2}
SUBENDOCARDIAL_DEPTH = 0.25
NO_REFLOW_MIN_TRANSMURALITY = 50.0
_LEVEL_OF_SEGMENT = {
    s: ("basal" if s <= 6 else "mid" if s <= 12 else "apical" if s <= 16 else "apex") for s in range(1, 18)
}


def check_segments(segments: tuple[int, ...]) -> tuple[int, ...]:
    """Validate an AHA segment list: numbers 1-17 on adjacent levels (a contiguous infarct).

    Raises:
        InputError: empty list, a number outside 1-17, or levels with a gap (basal and apical
            without mid).
    """
    segments = tuple(sorted({int(s) for s in segments}))
    if not segments:
        raise InputError("the segment list is empty; give AHA segments 1-17")
    bad = [s for s in segments if not 1 <= s <= 17]
    if bad:
        raise InputError(f"AHA segments must be 1-17, got {bad}")
    ranks = sorted({aha.LEVELS.index(_LEVEL_OF_SEGMENT[s]) for s in segments})
    if ranks != list(range(ranks[0], ranks[-1] + 1)):
        names = ", ".join(aha.LEVELS[r] for r in ranks)
        raise InputError(
            f"segments {list(segments)} lie on {names} levels with a gap between them; an infarct is "
            "contiguous along the stack, so add segments of the levels in between"
        )
    return segments


Percent = Annotated[float, Field(le=100, allow_inf_nan=False)]


@dataclasses.dataclass(frozen=True)
class InfarctSpec(Checked):
    """What to grow in one case (checked by :meth:`validate`, :mod:`lgemri.config`).

    Attributes:
        size_pct: Infarct (no-reflow included) as a share of the LV myocardium, 0-100.
        transmurality_pct: Largest extent across the wall, % of the wall thickness, 0-100.
        heterogeneity: 0 (smooth, regular borders) to 1 (ragged borders, patchy depth).
        no_reflow_pct: No-reflow core as a share of the infarct, 0-100 (0: none).
        territory: Confine the infarct to a coronary territory (LAD, RCA, LCX), or None.
        segments: Confine it to these AHA segments, or None.
    """

    size_pct: Annotated[Percent, Field(gt=0, title="infarct size (% of the LV)")]
    transmurality_pct: Annotated[Percent, Field(gt=0, title="transmurality (%)")]
    heterogeneity: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.3
    no_reflow_pct: Annotated[Percent, Field(ge=0, title="no-reflow share (% of the infarct)")] = 0.0
    territory: Annotated[str, AfterValidator(lambda t: aha.parse_territory(t) and t)] | None = None
    segments: Annotated[tuple[int, ...], AfterValidator(check_segments)] | None = None

    @model_validator(mode="after")
    def _one_confinement(self) -> InfarctSpec:
        if self.territory is not None and self.segments is not None:
            raise InputError("ask for a territory or for a segment list, not both")
        return self


def allowed_segments(spec: InfarctSpec) -> tuple[int, ...] | None:
    """The segments the infarct may occupy, or None when it is not confined."""
    if spec.segments is not None:
        return tuple(spec.segments)
    if spec.territory is not None:
        return aha.TERRITORIES[aha.parse_territory(spec.territory)]
    return None


@dataclasses.dataclass
class Growth:
    """An infarct grown on a wall: masks over the wall voxels and how it was placed."""

    infarct: np.ndarray  # bool, no-reflow included
    no_reflow: np.ndarray  # bool
    seed_territory: str
    seed_slice: int
    seed_deg: float
    n_seeds: int
    capacity_pct: float  # the largest infarct the constraints allowed, % of the LV myocardium
    note: str = ""


def _angular_distance(a: np.ndarray, b: float) -> np.ndarray:
    return np.abs(np.mod(a - b + 180.0, 360.0) - 180.0)


_NOISE_BINS = 180  # 2-degree bins of the smooth noise tables
_NOISE_ANGLES = (np.arange(_NOISE_BINS) + 0.5) * (2 * math.pi / _NOISE_BINS)


def _noise_tables(rng: np.random.Generator, z_mm: np.ndarray, layers: int) -> np.ndarray:
    """Smooth random fields on the wall, ``[layer, slice, angle bin]`` of unit standard deviation:
    harmonics 2, 3, 5 and 7 of the angle whose phases turn with slice position, so neighbouring
    slices look alike. Read per voxel with :func:`_on_wall` (one gather, no per-voxel cosines)."""
    draws = rng.random((layers, 4, 2))
    out = np.zeros((layers, z_mm.size, _NOISE_BINS))
    total = 0.0
    for h, m in enumerate((2, 3, 5, 7)):
        a = 1.0 / math.sqrt(m)
        total += a * a
        turn = (draws[:, h, 1, None, None] - 0.5) * 0.12 * z_mm[None, :, None]
        phase = 2 * math.pi * draws[:, h, 0, None, None] + turn
        out += a * np.cos(m * _NOISE_ANGLES[None, None, :] + phase)
    return out / math.sqrt(total / 2.0)


def _on_wall(table: np.ndarray, kk: np.ndarray, angle_bin: np.ndarray) -> np.ndarray:
    return table[kk, angle_bin]


def _segment_lut(segments) -> np.ndarray:
    lut = np.zeros(18, dtype=bool)
    lut[list(segments)] = True
    return lut


_TERRITORY_CDF = np.cumsum(list(TERRITORY_PREVALENCE.values()))


def _draw_territory(rng: np.random.Generator) -> str:
    """A culprit territory drawn by :data:`TERRITORY_PREVALENCE`."""
    names = list(TERRITORY_PREVALENCE)
    pick = int(np.searchsorted(_TERRITORY_CDF, rng.random() * _TERRITORY_CDF[-1], side="right"))
    return names[min(pick, len(names) - 1)]


def _empty(wall: Wall, note: str, territory: str = "") -> Growth:
    none = np.zeros(wall.n, dtype=bool)
    return Growth(none, none.copy(), territory, -1, float("nan"), 0, 0.0, note)


def grow_infarct(wall: Wall, spec: InfarctSpec, rng: np.random.Generator) -> Growth:
    """Grow ``spec``'s infarct and no-reflow core on ``wall`` (see the module docstring).

    When the constraints (segments, transmurality) leave less myocardium than the requested
    size, the infarct takes all of it; ``capacity_pct`` and the measured size tell.

    Raises:
        InputError: a bad ``spec`` (:meth:`InfarctSpec.validate`).
    """
    spec.validate()
    if wall.n == 0:
        return _empty(wall, "no myocardium")
    allowed = allowed_segments(spec)
    if allowed is not None:
        seed_territory = spec.territory.upper() if spec.territory else ""
        region = _segment_lut(allowed)[wall.segment]
    else:
        seed_territory = _draw_territory(rng)
        region = np.ones(wall.n, dtype=bool)
    seed_region = _segment_lut(aha.TERRITORIES[seed_territory])[wall.segment] if allowed is None else region

    h = spec.heterogeneity
    tau = spec.transmurality_pct / 100.0
    z = wall.kk * wall.spacing[2]
    depth = wall.depth
    angle_bin = np.minimum((wall.theta * (_NOISE_BINS / 360.0)).astype(np.intp), _NOISE_BINS - 1)
    noise = _noise_tables(rng, np.arange(wall.shape[2]) * wall.spacing[2], 3)
    cap = np.clip(tau + 0.1 * h * _on_wall(noise[0], wall.kk, angle_bin), 0.05, 1.0)
    eligible = region & (depth <= cap)
    n_target = int(round(spec.size_pct / 100.0 * wall.n))
    capacity = 100.0 * int(eligible.sum()) / wall.n
    candidates = np.flatnonzero(eligible & seed_region & (depth <= SUBENDOCARDIAL_DEPTH))
    if candidates.size == 0:
        candidates = np.flatnonzero(eligible & seed_region)
    if candidates.size == 0 or n_target == 0:
        reason = "requested size rounds to 0 voxels" if n_target == 0 else "no myocardium in the requested segments"
        return _empty(wall, reason, seed_territory)

    first = int(candidates[rng.integers(candidates.size)])
    close = _angular_distance(wall.theta[candidates], wall.theta[first]) <= 35.0
    near = candidates[close & (np.abs(wall.kk[candidates] - wall.kk[first]) <= 1)]
    n_seeds = 1 + int(rng.integers(0, 3))
    seeds = [first] + [int(s) for s in near[rng.integers(near.size, size=n_seeds - 1)]]
    taper = rng.uniform(0.08, 0.3)
    z_scale = rng.uniform(18.0, 35.0)
    idx = np.flatnonzero(eligible)
    th, zz, dd = wall.theta[idx], z[idx], depth[idx] / cap[idx]
    arrival = np.full(idx.size, np.inf)
    arrival_core = np.full(idx.size, np.inf)
    for s in seeds:
        spread = rng.uniform(0.7, 1.3)
        lateral = _angular_distance(th, wall.theta[s]) / (90.0 * spread) + np.abs(zz - z[s]) / z_scale
        np.minimum(arrival, lateral + taper * dd, out=arrival)
        np.minimum(arrival_core, lateral + 0.6 * dd, out=arrival_core)
    if h > 0:
        kk_idx, bin_idx = wall.kk[idx], angle_bin[idx]
        field = _on_wall(noise[1], kk_idx, bin_idx) + 1.5 * (dd - 0.5) * _on_wall(noise[2], kk_idx, bin_idx)
        rough = h * (0.35 * field + 0.03 * rng.random(idx.size))
        arrival += rough
        arrival_core += 0.3 * rough

    if n_target < idx.size:
        order = np.argpartition(arrival, n_target - 1)[:n_target]
    else:
        order = np.arange(idx.size)
    # Keep the slices hit contiguous along the stack, around the first seed's slice.
    hit = np.zeros(wall.shape[2], dtype=bool)
    hit[wall.kk[idx[order]]] = True
    k0 = int(wall.kk[first])
    lo, hi = k0, k0
    while lo > 0 and hit[lo - 1]:
        lo -= 1
    while hi < wall.shape[2] - 1 and hit[hi + 1]:
        hi += 1
    kk_sel = wall.kk[idx[order]]
    order = order[(kk_sel >= lo) & (kk_sel <= hi)]

    infarct = np.zeros(wall.n, dtype=bool)
    infarct[idx[order]] = True
    no_reflow = np.zeros(wall.n, dtype=bool)
    n_core = int(round(spec.no_reflow_pct / 100.0 * order.size))
    if spec.transmurality_pct >= NO_REFLOW_MIN_TRANSMURALITY and n_core > 0:
        core_times = arrival_core[order]
        pick = np.argpartition(core_times, n_core - 1)[:n_core] if n_core < order.size else np.arange(order.size)
        no_reflow[idx[order[pick]]] = True
    return Growth(infarct, no_reflow, seed_territory, k0, float(wall.theta[first]), len(seeds), capacity)
