"""Classical signal-threshold infarct sizing inside a given myocardium, for comparison.

Clinical LGE software sizes an infarct by thresholding the signal inside the (drawn or
predicted) myocardium; Flett et al., "Evaluation of techniques for the quantification of
myocardial scar of differing etiology using cardiac magnetic resonance", JACC Cardiovasc Imaging
4(2):150-156, 2011, compare such methods. Two kinds are implemented here:

* **n-SD** (2, 3 and 5 SD): a myocardium voxel is infarct when its signal exceeds the mean of
  remote (normal) myocardium by more than ``n`` standard deviations of that remote signal.
* **FWHM** (full width at half maximum): a myocardium voxel is infarct when its signal is at
  least half of the maximum signal of the hyperenhanced region.

Remote myocardium is chosen per slice, as a reader does with one remote ROI per slice: the
myocardium of the slice is cut into six 60-degree sectors starting at the anterior RV insertion
point (on basal and mid slices these are the AHA segments) and the sector with the lowest mean
signal, among those with at least :data:`MIN_REMOTE_VOXELS` voxels, is remote. A slice with no
such sector (a small apex cap) uses the remote voxels of all other slices pooled.

The hyperenhanced region for FWHM is the 5-SD region (a strict threshold, so that noise alone
rarely reaches it); its maximum over the study sets one threshold for all slices. When there is
no 5-SD voxel there is no hyperenhancement and the FWHM infarct is empty.

Arrays follow :mod:`lgemri.volume` (``[i, j, k]``) and must be ordered base to apex only for the
sector start (the RV insertion point); the thresholds do not depend on slice levels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from . import aha
from .errors import InputError
from .labels import myocardium_mask

__all__ = [
    "N_SD_LEVELS",
    "MIN_REMOTE_VOXELS",
    "REMOTE_METHOD",
    "remote_statistics",
    "threshold_masks",
    "classical_infarct_size",
]

logger = logging.getLogger(__name__)

N_SD_LEVELS: tuple[int, ...] = (2, 3, 5)
MIN_REMOTE_VOXELS = 10  # a remote sector needs this many voxels for a usable mean and SD
FWHM_CORE_SD = 5  # the hyperenhanced region whose maximum sets the FWHM threshold
_SECTOR_DEG = 60.0

REMOTE_METHOD = (
    "per slice, the 60-degree myocardial sector (six sectors from the anterior RV insertion point, "
    "the AHA segments on basal and mid slices) with the lowest mean signal; slices without a sector "
    f"of at least {MIN_REMOTE_VOXELS} voxels use the pooled remote voxels of the other slices"
)


def remote_statistics(
    image: np.ndarray, label: np.ndarray, spacing_ij: tuple[float, float], rv_insertion_deg: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-slice remote myocardium mean and SD, and the remote voxel mask.

    Args:
        image: LGE signal ``[i, j, k]``.
        label: EMIDEC labels on the same grid.
        spacing_ij: in-plane pixel size in mm (for the sector angles).
        rv_insertion_deg: angle of the anterior RV insertion point (see :mod:`lgemri.aha`).

    Returns:
        ``(mean, sd, remote)``: ``mean`` and ``sd`` per slice (NaN on slices without myocardium),
        ``remote`` a boolean mask of the remote voxels.

    Raises:
        InputError: no slice has a sector with enough myocardium voxels for a remote region.
    """
    n_slices = label.shape[2]
    mean = np.full(n_slices, np.nan)
    sd = np.full(n_slices, np.nan)
    remote = np.zeros(label.shape, dtype=bool)
    has_myo = np.zeros(n_slices, dtype=bool)
    for k in range(n_slices):
        ii, jj, angle = aha.myocardium_angles(label[:, :, k], spacing_ij)
        if ii.size == 0:
            continue
        has_myo[k] = True
        values = image[ii, jj, k].astype(np.float64)
        sector = (np.mod(angle - rv_insertion_deg, 360.0) // _SECTOR_DEG).astype(int)
        best, best_mean = None, np.inf
        for s in np.unique(sector):
            members = sector == s
            if members.sum() >= MIN_REMOTE_VOXELS and values[members].mean() < best_mean:
                best, best_mean = s, values[members].mean()
        if best is None:
            continue
        members = sector == best
        remote[ii[members], jj[members], k] = True
        mean[k], sd[k] = values[members].mean(), values[members].std(ddof=1)
    if not remote.any():
        raise InputError(
            f"no remote myocardium: no slice has a 60-degree sector with at least {MIN_REMOTE_VOXELS} myocardium voxels"
        )
    missing = has_myo & np.isnan(mean)
    if missing.any():
        pooled = image[remote].astype(np.float64)
        mean[missing], sd[missing] = pooled.mean(), pooled.std(ddof=1)
        logger.debug("slices %s: remote from the pooled remote voxels", np.flatnonzero(missing).tolist())
    return mean, sd, remote


def threshold_masks(
    image: np.ndarray,
    label: np.ndarray,
    spacing_ij: tuple[float, float],
    rv_insertion_deg: float,
    n_sd: Sequence[int] = N_SD_LEVELS,
) -> tuple[dict[str, np.ndarray], dict]:
    """The infarct mask of each classical method inside the label's myocardium.

    Returns:
        ``(masks, info)``: masks named ``"2SD"``, ``"3SD"``, ``"5SD"`` ... and ``"FWHM"``; ``info``
        holds the remote statistics and the FWHM maximum and threshold (None without a
        hyperenhanced region).
    """
    image = np.asarray(image, dtype=np.float64)
    myo = myocardium_mask(label)
    mean, sd, remote = remote_statistics(image, label, spacing_ij, rv_insertion_deg)
    safe_mean, safe_sd = np.nan_to_num(mean, nan=np.inf), np.nan_to_num(sd, nan=0.0)
    masks = {f"{n}SD": myo & (image > safe_mean + n * safe_sd) for n in n_sd}
    core = myo & (image > safe_mean + FWHM_CORE_SD * safe_sd)
    fwhm_max = fwhm_threshold = None
    if core.any():
        fwhm_max = float(image[core].max())
        fwhm_threshold = fwhm_max / 2.0
        masks["FWHM"] = myo & (image >= fwhm_threshold)
    else:
        masks["FWHM"] = np.zeros_like(myo)
    info = {
        "remote_mean": mean,
        "remote_sd": sd,
        "remote_voxels": int(remote.sum()),
        "fwhm_max": fwhm_max,
        "fwhm_threshold": fwhm_threshold,
    }
    return masks, info


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def classical_infarct_size(
    image: np.ndarray,
    label: np.ndarray,
    spacing: Sequence[float],
    rv_insertion_deg: float,
    n_sd: Sequence[int] = N_SD_LEVELS,
) -> dict:
    """Infarct size of each classical method as volume and % of the label's LV myocardium.

    Args:
        image: LGE signal ``[i, j, k]``.
        label: EMIDEC labels on the same grid (the myocardium to threshold in: labels 2, 3, 4).
        spacing: voxel size in mm along ``i``, ``j``, ``k``.
        rv_insertion_deg: anterior RV insertion angle, for the remote sectors.
        n_sd: the n of the n-SD methods.

    Returns:
        A JSON-ready dict: ``remote`` (method and per-slice mean and SD) and ``methods``, one
        entry per method with ``name``, ``rule``, ``threshold`` (the FWHM signal threshold, None
        for n-SD whose thresholds are per slice), ``voxels``, ``volume_ml`` and ``percent_lv``.
    """
    if image.shape != label.shape:
        raise InputError(f"image shape {image.shape} differs from label shape {label.shape}")
    masks, info = threshold_masks(image, label, (spacing[0], spacing[1]), rv_insertion_deg, n_sd)
    myo_voxels = int(myocardium_mask(label).sum())
    voxel_ml = float(np.prod(spacing[:3])) / 1000.0
    rules = {f"{n}SD": f"signal > remote mean + {n} SD (per slice)" for n in n_sd}
    if info["fwhm_threshold"] is None:
        rules["FWHM"] = f"no hyperenhanced region (no voxel > remote mean + {FWHM_CORE_SD} SD): none"
    else:
        rules["FWHM"] = (
            f"signal >= 50 % of the maximum ({info['fwhm_max']:.1f}) of the hyperenhanced region "
            f"(> remote mean + {FWHM_CORE_SD} SD)"
        )
    methods = []
    for name, mask in masks.items():
        voxels = int(mask.sum())
        methods.append(
            {
                "name": name,
                "rule": rules[name],
                "threshold": _round(info["fwhm_threshold"]) if name == "FWHM" else None,
                "voxels": voxels,
                "volume_ml": round(voxels * voxel_ml, 3),
                "percent_lv": round(100.0 * voxels / myo_voxels, 3) if myo_voxels else 0.0,
            }
        )
    slices = np.flatnonzero(np.isfinite(info["remote_mean"]))
    return {
        "remote": {
            "method": REMOTE_METHOD,
            "voxels": info["remote_voxels"],
            "slices": [
                {"k": int(k), "mean": _round(info["remote_mean"][k]), "sd": _round(info["remote_sd"][k])}
                for k in slices
            ],
        },
        "methods": methods,
    }
