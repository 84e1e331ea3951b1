"""Wall coordinates of a label volume, and the infarct measurements made on them.

The simulator grows infarcts in the coordinates of the LV wall rather than in pixels: every
myocardium voxel gets its angle about the slice's LV centre (:func:`lgemri.aha.myocardium_angles`),
its normalised depth across the wall (0 at the endocardium, 1 at the epicardium) and its AHA
segment (:func:`lgemri.aha.assign_segments`, the same module the clinical report uses).

:func:`measure` turns a label volume into the figures written to the manifest and compared by
the realism report: infarct and no-reflow share of the LV myocardium, transmurality per 6-degree
sector (the infarct share of the sector's myocardium; the apex cap, which has no endocardium, is
left out), and the AHA segments hit (infarct on at
least 5 % of the segment's myocardium, the rule of the phantom's ground truth).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from lgemri import aha
from lgemri.labels import CAVITY, INFARCT, MYOCARDIUM, NO_REFLOW

__all__ = ["Wall", "Measurement", "wall_from_label", "measure", "strip_infarct", "enclose_no_reflow"]

SECTOR_DEG = 6.0
N_SECTORS = int(360 / SECTOR_DEG)
MIN_SEGMENT_FRACTION = 0.05

DepthFn = Callable[[int, np.ndarray, np.ndarray], np.ndarray]


@dataclasses.dataclass
class Wall:
    """The myocardium voxels of a label volume with their wall coordinates (flat arrays)."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    ii: np.ndarray
    jj: np.ndarray
    kk: np.ndarray
    theta: np.ndarray  # degrees in [0, 360), counter-clockwise from image right, anterior up
    depth: np.ndarray  # 0 endocardium .. 1 epicardium
    segment: np.ndarray  # AHA segment 1-17
    levels: list[str | None]
    rv_insertion_deg: float

    @property
    def n(self) -> int:
        return int(self.ii.size)

    def values(self, label: np.ndarray) -> np.ndarray:
        """The label values on the wall voxels."""
        return label[self.ii, self.jj, self.kk]

    def paint(self, anatomy: np.ndarray, infarct: np.ndarray, no_reflow: np.ndarray) -> np.ndarray:
        """A copy of ``anatomy`` with ``infarct`` (3) and ``no_reflow`` (4) painted on the wall."""
        label = anatomy.copy()
        label[self.ii[infarct], self.jj[infarct], self.kk[infarct]] = INFARCT
        label[self.ii[no_reflow], self.jj[no_reflow], self.kk[no_reflow]] = NO_REFLOW
        return label


def _edt_depth(
    lv: np.ndarray, cavity: np.ndarray, ii: np.ndarray, jj: np.ndarray, spacing: tuple[float, float]
) -> np.ndarray:
    """Normalised wall depth from two distance transforms, on the LV's bounding box."""
    rows, cols = np.nonzero(lv.any(axis=1))[0], np.nonzero(lv.any(axis=0))[0]
    i0, i1 = max(rows[0] - 1, 0), rows[-1] + 2
    j0, j1 = max(cols[0] - 1, 0), cols[-1] + 2
    box_lv = lv[i0:i1, j0:j1]
    d_out = ndimage.distance_transform_edt(box_lv, sampling=spacing)[ii - i0, jj - j0]
    pixel = float(min(spacing))
    if cavity.any():
        d_cav = ndimage.distance_transform_edt(~cavity[i0:i1, j0:j1], sampling=spacing)[ii - i0, jj - j0]
        depth = (d_cav - 0.5 * pixel) / np.maximum(d_cav + d_out - pixel, 1e-6)
    else:  # apex cap: 0 at its centre, 1 at its rim
        depth = 1.0 - (d_out - 0.5 * pixel) / max(float(d_out.max()), 1e-6)
    return np.clip(depth, 0.0, 1.0)


def wall_from_label(
    label: np.ndarray,
    spacing: tuple[float, float, float],
    rv_insertion_deg: float | None = None,
    depth_fn: DepthFn | None = None,
) -> Wall:
    """Wall coordinates of the myocardium (labels 2, 3, 4) of a base-to-apex label volume.

    Args:
        label: EMIDEC labels ``[i, j, k]``.
        spacing: Voxel size in mm along ``i``, ``j``, ``k``.
        rv_insertion_deg: Anterior RV insertion angle; None for the patient-axes default.
        depth_fn: ``depth_fn(k, ii, jj)`` giving the wall depth of slice ``k``'s myocardium
            pixels when it is known analytically; otherwise it comes from distance transforms
            (distance to the cavity and to the outside of the LV).
    """
    rv = aha.DEFAULT_RV_INSERTION_DEG if rv_insertion_deg is None else float(rv_insertion_deg)
    myo = (label >= MYOCARDIUM) & (label <= NO_REFLOW)
    cavity = label == CAVITY
    levels = aha.slice_levels(myo.any(axis=(0, 1)), cavity.any(axis=(0, 1)))
    parts: dict[str, list[np.ndarray]] = {key: [] for key in ("ii", "jj", "kk", "theta", "depth", "segment")}
    spacing_ij = (float(spacing[0]), float(spacing[1]))
    for k, level in enumerate(levels):
        if level is None:
            continue
        ii, jj, angle = aha.myocardium_angles(label[:, :, k], spacing_ij)
        if depth_fn is not None:
            depth = depth_fn(k, ii, jj)
        else:
            depth = _edt_depth(label[:, :, k] > 0, cavity[:, :, k], ii, jj, spacing_ij)
        parts["ii"].append(ii)
        parts["jj"].append(jj)
        parts["kk"].append(np.full(ii.size, k, dtype=np.intp))
        parts["theta"].append(np.mod(angle, 360.0))
        parts["depth"].append(depth)
        parts["segment"].append(aha.segment_from_angle(angle, level, rv))
    empty = {"ii": np.intp, "jj": np.intp, "kk": np.intp, "theta": float, "depth": float, "segment": int}
    arrays = {key: np.concatenate(v) if v else np.zeros(0, dtype=empty[key]) for key, v in parts.items()}
    return Wall(
        shape=tuple(label.shape),  # type: ignore[arg-type]
        spacing=tuple(float(s) for s in spacing),  # type: ignore[arg-type]
        levels=levels,
        rv_insertion_deg=rv,
        **arrays,
    )


def strip_infarct(label: np.ndarray) -> np.ndarray:
    """A copy of ``label`` with infarct and no-reflow turned back into myocardium (the anatomy)."""
    anatomy = label.copy()
    anatomy[(anatomy == INFARCT) | (anatomy == NO_REFLOW)] = MYOCARDIUM
    return anatomy


def enclose_no_reflow(label: np.ndarray) -> int:
    """Relabel as infarct (in place) the no-reflow voxels that touch healthy myocardium in-plane.

    No-reflow is the core of the infarct: it may touch the cavity (it starts subendocardially)
    but is ringed by infarct towards the healthy wall. Returns how many voxels changed.
    """
    nr = label == NO_REFLOW
    if not nr.any():
        return 0
    healthy = label == MYOCARDIUM
    touch = np.zeros_like(nr)
    touch[1:] |= healthy[:-1]
    touch[:-1] |= healthy[1:]
    touch[:, 1:] |= healthy[:, :-1]
    touch[:, :-1] |= healthy[:, 1:]
    bad = nr & touch
    label[bad] = INFARCT
    return int(bad.sum())


@dataclasses.dataclass
class Measurement:
    """Infarct figures of one label volume: case totals and per-slice arrays."""

    myocardium: np.ndarray  # per slice, voxels
    cavity: np.ndarray
    infarct: np.ndarray  # infarct including no-reflow
    no_reflow: np.ndarray
    transmurality_mean: np.ndarray  # per slice, % (0 without infarct)
    transmurality_max: np.ndarray
    slice_segments: list[tuple[int, ...]]
    infarct_pct: float  # % of the LV myocardium
    no_reflow_pct: float
    case_transmurality_mean: float
    case_transmurality_max: float
    segments: tuple[int, ...]
    territory: str  # the coronary territory holding most infarct, '' without infarct


def _share(part, whole) -> np.ndarray:
    return 100.0 * np.asarray(part, float) / np.maximum(np.asarray(whole, float), 1.0)


def measure(wall: Wall, label: np.ndarray) -> Measurement:
    """Measure the infarct of ``label`` on the wall coordinates of its anatomy.

    ``wall`` must describe ``label``'s myocardium (infarct painting keeps the anatomy, so the
    wall of the anatomy serves every infarct painted on it).
    """
    n_k = wall.shape[2]
    values = wall.values(label)
    inf = values >= INFARCT
    nr = values == NO_REFLOW
    kk = wall.kk
    myo_k = np.bincount(kk, minlength=n_k)
    inf_k = np.bincount(kk[inf], minlength=n_k)
    nr_k = np.bincount(kk[nr], minlength=n_k)
    cav_k = (label == CAVITY).sum(axis=(0, 1))

    sector = np.minimum((wall.theta // SECTOR_DEG).astype(np.intp), N_SECTORS - 1) + kk * N_SECTORS
    myo_s = np.bincount(sector, minlength=n_k * N_SECTORS).reshape(n_k, N_SECTORS)
    inf_s = np.bincount(sector[inf], minlength=n_k * N_SECTORS).reshape(n_k, N_SECTORS)
    # Transmurality needs an endocardium: leave out the apex cap and sectors of under 3 voxels.
    ring = np.array([level not in (None, "apex") for level in wall.levels], dtype=bool)[:, np.newaxis]
    hit = (inf_s > 0) & (myo_s >= 3) & ring
    frac = np.where(hit, 100.0 * inf_s / np.maximum(myo_s, 1), 0.0)
    tm_mean = frac.sum(axis=1) / np.maximum(hit.sum(axis=1), 1)
    tm_max = frac.max(axis=1) if n_k else np.zeros(0)

    seg_key = kk * 18 + wall.segment
    seg_myo = np.bincount(seg_key, minlength=n_k * 18).reshape(n_k, 18)
    seg_inf = np.bincount(seg_key[inf], minlength=n_k * 18).reshape(n_k, 18)
    slice_hit = seg_inf >= MIN_SEGMENT_FRACTION * np.maximum(seg_myo, 1)
    slice_segments = [tuple(int(s) for s in np.flatnonzero(row & (hits > 0))) for row, hits in zip(slice_hit, seg_inf)]
    case_myo, case_inf = seg_myo.sum(axis=0), seg_inf.sum(axis=0)
    case_hit = (case_inf > 0) & (case_inf >= MIN_SEGMENT_FRACTION * np.maximum(case_myo, 1))
    segments = tuple(int(s) for s in np.flatnonzero(case_hit))
    territory = ""
    if case_inf.sum():
        totals = {name: int(case_inf[list(segs)].sum()) for name, segs in aha.TERRITORIES.items()}
        territory = max(totals, key=lambda name: totals[name])

    n_myo, n_inf = int(myo_k.sum()), int(inf_k.sum())
    return Measurement(
        myocardium=myo_k,
        cavity=cav_k,
        infarct=inf_k,
        no_reflow=nr_k,
        transmurality_mean=tm_mean,
        transmurality_max=tm_max,
        slice_segments=slice_segments,
        infarct_pct=float(_share(n_inf, n_myo)) if n_myo else 0.0,
        no_reflow_pct=float(_share(int(nr_k.sum()), n_myo)) if n_myo else 0.0,
        case_transmurality_mean=float(frac[hit].mean()) if hit.any() else 0.0,
        case_transmurality_max=float(frac[hit].max()) if hit.any() else 0.0,
        segments=segments,
        territory=territory,
    )
