"""Fully synthetic LV myocardium: base-to-apex stacks of irregular rings at 1 mm.

An LV is a truncated prolate shell (the phantom's shape, :mod:`lgemri.phantom.anatomy`): the
endocardial radius shrinks from the base plane towards the apex, the wall thins linearly from its
basal to its apical thickness and closes over the cavity's tip as the apex cap. Contours are
irregular: a few low angular harmonics shared by every slice (their phases turn slowly from
base to apex, so neighbouring slices agree) plus a small per-slice endocardial roughness
(trabeculae). The LV centre drifts a few millimetres along the stack as in a tilted short axis.

Physiological ranges (end-diastole, adults), the phantom's, with its sources:

- LV end-diastolic inner diameter at the base 42-56 mm in normal hearts, up to 62 mm after
  infarction (Lang et al., JASE 28:1-39, 2015: LVIDd 37.8-52.2 mm in women, 42.0-58.4 mm in men).
- LV wall thickness 7-11 mm at the base, 4.5-7 mm at the apex; LV length (base plane to
  epicardial apex) 75-100 mm (Kawel-Boehm et al., JCMR 22:87, 2020).
- Myocardium-to-blood-pool ratio: the wall area over the cavity area of a mid-ventricular
  slice, ``((r + w)^2 - r^2) / r^2``, kept within 0.55-1.25 by redrawing the wall thickness.
  This is a design range (approximate), not a published one: it is what the diameter and wall
  ranges above give for normal combinations, and it excludes the implausible ones (a 42 mm
  cavity under an 11 mm wall). The ratio of each slice is written to the manifest.
- Slices 8-13 mm apart from 2-8 mm below the base plane to the apex, as in EMIDEC (Lalande et
  al., Data 5(4):89, 2020), which gives 6-12 slices.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from lgemri.labels import CAVITY, MYOCARDIUM

from .wall import Wall, wall_from_label

__all__ = [
    "LVShape",
    "sample_lv_shape",
    "slice_positions",
    "draw_stack",
    "depth_on",
    "make_anatomy",
    "MYO_TO_BLOOD_RANGE",
]

ROI_SIZE = 128
PIXEL_MM = 1.0
MYO_TO_BLOOD_RANGE = (0.55, 1.25)
_BINS = 720  # angular resolution of the contour tables (0.5 degree)
_MARGIN = 16  # largest centre shift in pixels


@dataclasses.dataclass(frozen=True)
class LVShape:
    """One synthetic LV, in millimetres (heart frame: z from the base plane towards the apex)."""

    r_endo_base: float
    wall_base: float
    wall_apex: float
    length: float
    profile: float  # exponent of the cavity's prolate profile
    endo_harmonics: tuple[tuple[float, float], ...]  # (relative amplitude, phase) for m = 2, 3, ...
    epi_harmonics: tuple[tuple[float, float], ...]
    twist: float  # phase turn of the harmonics per mm of z
    tilt: tuple[float, float]  # LV centre drift (x right, y up) per mm of z
    roughness_mm: float  # endocardial roughness amplitude

    @property
    def cavity_length(self) -> float:
        return self.length - self.wall_apex

    def radii(self, z: float) -> tuple[float, float]:
        """Mean endocardial and epicardial radius (mm) at depth ``z`` (endocardium 0 in the cap)."""
        zc = min(max(z, 0.0), self.length)
        cavity = self.cavity_length
        if zc < cavity:
            endo = self.r_endo_base * math.sqrt(max(0.0, 1.0 - (zc / cavity) ** self.profile))
            return endo, endo + self.wall_base + (self.wall_apex - self.wall_base) * zc / cavity
        return 0.0, self.wall_apex * math.sqrt(max(0.0, 1.0 - ((zc - cavity) / self.wall_apex) ** 2))

    def myo_to_blood(self, z: float) -> float:
        endo, epi = self.radii(z)
        return (epi**2 - endo**2) / endo**2 if endo > 0 else math.inf


def _harmonics(rng: np.random.Generator, n: int, scale: float) -> tuple[tuple[float, float], ...]:
    return tuple((float(rng.uniform(0, scale) / (k + 1)), float(rng.uniform(0, 2 * math.pi))) for k in range(n))


def sample_lv_shape(rng: np.random.Generator, pathological: bool) -> LVShape:
    """Draw one LV from the ranges of the module docstring.

    Infarcted hearts draw their diameter from 44-62 mm (remodelling), normal ones from 42-56 mm.
    The wall is redrawn (up to 20 times, then clipped) until the mid-ventricular
    myocardium-to-blood-pool ratio lies in :data:`MYO_TO_BLOOD_RANGE`.
    """
    r_endo = rng.uniform(44.0, 62.0) / 2 if pathological else rng.uniform(42.0, 56.0) / 2
    length = float(rng.uniform(75.0, 100.0))
    wall_apex = float(rng.uniform(4.5, 7.0))
    profile = float(rng.uniform(1.8, 2.6))
    lo, hi = MYO_TO_BLOOD_RANGE
    for _ in range(20):
        wall = float(rng.uniform(7.0, 11.0))
        shape = LVShape(r_endo, wall, wall_apex, length, profile, (), (), 0.0, (0.0, 0.0), 0.0)
        if lo <= shape.myo_to_blood(0.4 * shape.cavity_length) <= hi:
            break
    else:  # no draw fitted: solve the mid-ventricular wall for the nearest ratio in range
        endo, _ = shape.radii(0.4 * shape.cavity_length)
        target = min(max(shape.myo_to_blood(0.4 * shape.cavity_length), lo), hi)
        wall_mid = endo * (math.sqrt(1.0 + target) - 1.0)
        wall = float(np.clip((wall_mid - 0.4 * wall_apex) / 0.6, 7.0, 11.0))
    return LVShape(
        r_endo_base=float(r_endo),
        wall_base=wall,
        wall_apex=wall_apex,
        length=length,
        profile=profile,
        endo_harmonics=_harmonics(rng, 3, 0.08),
        epi_harmonics=_harmonics(rng, 3, 0.05),
        twist=float(rng.uniform(-0.012, 0.012)),
        tilt=(float(rng.uniform(-0.06, 0.06)), float(rng.uniform(-0.06, 0.06))),
        roughness_mm=float(rng.uniform(0.2, 0.8)),
    )


def slice_positions(rng: np.random.Generator, shape: LVShape, n_slices: int | None = None) -> tuple[np.ndarray, float]:
    """Depths ``z`` (mm) of the short-axis slices, base first, and their spacing.

    Without ``n_slices`` the slices lie 8-13 mm apart from 2-8 mm below the base plane to the
    apex. With ``n_slices`` they cover the same span evenly; a single slice is mid-ventricular.
    """
    z0 = float(rng.uniform(2.0, 8.0))
    if n_slices is None:
        spacing = round(float(rng.uniform(8.0, 13.0)), 1)
        count = int(min((shape.length - z0 - 1.0) // spacing + 1, 13))
        return z0 + spacing * np.arange(count), spacing
    if n_slices == 1:
        return np.array([float(rng.uniform(0.35, 0.5)) * shape.cavity_length]), 10.0
    spacing = round((shape.length - z0 - 2.0) / (n_slices - 1), 2)
    return z0 + spacing * np.arange(n_slices), spacing


@functools.lru_cache(maxsize=4)
def _polar_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Radius (mm) and contour-table bin of every pixel of a grid centred between its middle pixels."""
    n = size + 2 * _MARGIN
    c = (n - 1) / 2.0
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    x, y = (ii - c) * PIXEL_MM, -(jj - c) * PIXEL_MM
    radius = np.hypot(x, y).astype(np.float32)
    theta = np.mod(np.arctan2(y, x), 2 * math.pi)
    bins = np.minimum((theta * (_BINS / (2 * math.pi))).astype(np.intp), _BINS - 1)
    radius.flags.writeable = False
    bins.flags.writeable = False
    return radius, bins


_TABLE_ANGLES = (np.arange(_BINS) + 0.5) * (2 * math.pi / _BINS)
_HARMONIC_COS = {m: np.cos(m * _TABLE_ANGLES) for m in range(2, 12)}
_HARMONIC_SIN = {m: np.sin(m * _TABLE_ANGLES) for m in range(2, 12)}


def _contour(harmonics: tuple[tuple[float, float], ...], phase_shift: float) -> np.ndarray:
    """``1 + sum a_m cos(m t + p_m + shift)`` on the table angles (m = 2, 3, ...)."""
    out = np.ones(_BINS)
    for k, (a, p) in enumerate(harmonics):
        m = k + 2
        phase = p + phase_shift
        out += a * (math.cos(phase) * _HARMONIC_COS[m] - math.sin(phase) * _HARMONIC_SIN[m])
    return out


def _roughness(rng: np.random.Generator, amplitude_mm: float) -> np.ndarray:
    """Per-slice endocardial roughness: harmonics 6-9 of random phase, about ``amplitude_mm``."""
    out = np.zeros(_BINS)
    for m in range(6, 10):
        a = rng.uniform(0.0, amplitude_mm) / 2.0
        p = rng.uniform(0.0, 2 * math.pi)
        out += a * (math.cos(p) * _HARMONIC_COS[m] - math.sin(p) * _HARMONIC_SIN[m])
    return out


def draw_stack(
    rng: np.random.Generator, shape: LVShape, z: np.ndarray, size: int = ROI_SIZE
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]]:
    """Draw the cavity (1) and myocardium (2) of every slice at depths ``z``.

    Returns:
        ``(label, tables)``: the uint8 label ``[i, j, k]`` (``i`` the image column, ``j`` the row,
        1 mm pixels, the LV near the centre) and per slice ``(radius, bins, r_endo, r_epi)``: the
        slice's pixel radius and table-bin grids and its endocardial and epicardial contour
        tables, from which :func:`depth_on` reads the wall depth.
    """
    radius_grid, bin_grid = _polar_grid(size)
    label = np.zeros((size, size, len(z)), dtype=np.uint8)
    tables = []
    for k, zk in enumerate(z):
        endo, epi = shape.radii(float(zk))
        shift = shape.twist * zk
        r_epi = epi * _contour(shape.epi_harmonics, shift)
        if endo > 0:
            r_endo = endo * _contour(shape.endo_harmonics, shift) + _roughness(rng, shape.roughness_mm)
            r_epi = np.maximum(r_epi, r_endo + 2.5)
        else:
            r_endo = np.zeros(_BINS)
        di = int(round(shape.tilt[0] * zk / PIXEL_MM))
        dj = int(round(-shape.tilt[1] * zk / PIXEL_MM))
        di, dj = max(-_MARGIN, min(_MARGIN, di)), max(-_MARGIN, min(_MARGIN, dj))
        window = (slice(_MARGIN - di, _MARGIN - di + size), slice(_MARGIN - dj, _MARGIN - dj + size))
        radius, bins = radius_grid[window], bin_grid[window]
        lv = radius < r_epi[bins]
        cavity = radius < r_endo[bins]
        label[:, :, k] = lv * np.uint8(MYOCARDIUM) - cavity * np.uint8(MYOCARDIUM - CAVITY)
        tables.append((radius, bins, r_endo, r_epi))
    return label, tables


def depth_on(
    table: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], ii: np.ndarray, jj: np.ndarray
) -> np.ndarray:
    """Analytic wall depth (0 endocardium, 1 epicardium; 0 at the centre of the apex cap)."""
    radius, bins, r_endo, r_epi = table
    r = radius[ii, jj]
    b = bins[ii, jj]
    inner, outer = r_endo[b], r_epi[b]
    return np.clip((r - inner) / np.maximum(outer - inner, 1e-6), 0.0, 1.0)


def make_anatomy(
    rng: np.random.Generator, pathological: bool, n_slices: int | None = None, rv_insertion_deg: float | None = None
) -> tuple[np.ndarray, Wall, tuple[float, float, float], LVShape]:
    """One synthetic LV stack with its wall coordinates (analytic depth).

    Returns:
        ``(anatomy, wall, spacing, shape)``: the uint8 label ``[128, 128, K]`` of cavity and
        myocardium, its :class:`~simulator.wall.Wall`, the voxel size in mm and the LV drawn.
    """
    shape = sample_lv_shape(rng, pathological)
    z, slice_spacing = slice_positions(rng, shape, n_slices)
    anatomy, tables = draw_stack(rng, shape, z)
    spacing = (PIXEL_MM, PIXEL_MM, float(slice_spacing))
    wall = wall_from_label(anatomy, spacing, rv_insertion_deg, depth_fn=lambda k, ii, jj: depth_on(tables[k], ii, jj))
    return anatomy, wall, spacing, shape
