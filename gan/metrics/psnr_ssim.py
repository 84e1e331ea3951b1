"""PSNR and SSIM between generated and reference images, batched in torch.

Both follow scikit-image (``skimage.metrics.peak_signal_noise_ratio`` and
``structural_similarity`` with its defaults: a 7 x 7 uniform window, sample covariance,
``K1 = 0.01``, ``K2 = 0.03``, the mean over the windows that lie inside the image) and agree with
it to floating-point precision (tested). Computed in float64. ``data_range`` is the span of the
intensity scale, 2 for the GANs' [-1, 1] images (fixed, never inferred from the data, so that
values compare across images).

Reference: Wang, Bovik, Sheikh and Simoncelli, "Image quality assessment: from error visibility
to structural similarity", IEEE TIP 13:600-612, 2004.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lgemri.errors import InputError

__all__ = ["psnr", "ssim", "psnr_ssim", "lv_region", "LV_MARGIN_PX"]

LV_MARGIN_PX = 5


def _as_batch(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``(N, C, H, W)`` float64 from ``(H, W)``, ``(N, H, W)`` or ``(N, C, H, W)``."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().double()
    if t.ndim == 2:
        t = t[None, None]
    elif t.ndim == 3:
        t = t[:, None]
    if t.ndim != 4:
        raise InputError(f"images must be (H, W), (N, H, W) or (N, C, H, W), got shape {tuple(t.shape)}")
    return t


def _pair(fake, real) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = _as_batch(fake), _as_batch(real)
    if a.shape != b.shape:
        raise InputError(f"generated images {tuple(a.shape)} and references {tuple(b.shape)} differ in shape")
    return a, b.to(a.device)


def _region(region, like: torch.Tensor) -> torch.Tensor | None:
    if region is None:
        return None
    r = _as_batch(region).to(like.device) > 0
    if r.shape[0] != like.shape[0] or r.shape[-2:] != like.shape[-2:]:
        raise InputError(f"region {tuple(r.shape)} does not fit images {tuple(like.shape)}")
    return r[:, :1]


def psnr(fake, real, data_range: float = 2.0, region=None) -> torch.Tensor:
    """Per-image peak signal-to-noise ratio in dB, ``10 log10(data_range^2 / MSE)``; ``inf`` for
    identical images. With ``region`` (``(N, H, W)`` or ``(N, 1, H, W)``, non-zero = inside)
    the MSE is taken over the region's pixels only (NaN for an empty region).
    Returns a float64 ``(N,)`` tensor."""
    a, b = _pair(fake, real)
    sq = (a - b) ** 2
    r = _region(region, a)
    if r is None:
        mse = sq.flatten(1).mean(1)
    else:
        w = r.expand_as(sq).double()
        mse = (sq * w).flatten(1).sum(1) / w.flatten(1).sum(1)
    return 10.0 * torch.log10(data_range**2 / mse)  # inf where mse == 0


def ssim(
    fake, real, data_range: float = 2.0, win_size: int = 7, k1: float = 0.01, k2: float = 0.03, region=None
) -> torch.Tensor:
    """Per-image mean structural similarity (channels averaged), as scikit-image computes it;
    with ``region``, the mean of the SSIM map over the region's window centres (NaN if empty).
    Returns a float64 ``(N,)`` tensor."""
    a, b = _pair(fake, real)
    r = _region(region, a)
    if win_size % 2 != 1 or min(a.shape[-2:]) < win_size:
        raise InputError(f"SSIM window {win_size} must be odd and fit the image {tuple(a.shape[-2:])}")
    n, c = a.shape[:2]
    a = a.reshape(n * c, 1, *a.shape[-2:])
    b = b.reshape(n * c, 1, *b.shape[-2:])

    def mean(x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, win_size, stride=1)

    cov_norm = win_size**2 / (win_size**2 - 1)
    ux, uy = mean(a), mean(b)
    vx = cov_norm * (mean(a * a) - ux * ux)
    vy = cov_norm * (mean(b * b) - uy * uy)
    vxy = cov_norm * (mean(a * b) - ux * uy)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    if r is None:
        return s.flatten(1).mean(1).reshape(n, c).mean(1)
    pad = (win_size - 1) // 2
    w = r[..., pad : r.shape[-2] - pad, pad : r.shape[-1] - pad].double().repeat_interleave(c, 0)
    return ((s * w).flatten(1).sum(1) / w.flatten(1).sum(1)).reshape(n, c).mean(1)


def _mean(values: torch.Tensor) -> tuple[float, float, int]:
    """Mean and std over finite values (``inf`` when all are infinite), and the infinite count."""
    values = values[~torch.isnan(values)]
    finite = values[torch.isfinite(values)]
    mean = float(finite.mean()) if len(finite) else (float("inf") if len(values) else float("nan"))
    return mean, float(finite.std()) if len(finite) > 1 else 0.0, int((~torch.isfinite(values)).sum())


def psnr_ssim(fake, real, data_range: float = 2.0, region=None) -> dict:
    """Mean PSNR (over images with a finite value; ``inf`` when all are identical) and SSIM.

    With ``region`` (e.g. the LV of each mask, dilated) also ``psnr_region`` and ``ssim_region``
    over those pixels only.

    Returns:
        ``{"psnr", "psnr_std", "ssim", "ssim_std", "n", "identical", "data_range"}`` (+ the
        region figures).
    """
    p, s = psnr(fake, real, data_range), ssim(fake, real, data_range)
    mean_p, std_p, identical = _mean(p)
    out = {
        "psnr": mean_p,
        "psnr_std": std_p,
        "ssim": float(s.mean()),
        "ssim_std": float(s.std()) if len(s) > 1 else 0.0,
        "n": int(len(p)),
        "identical": identical,
        "data_range": float(data_range),
    }
    if region is not None:
        out["psnr_region"] = _mean(psnr(fake, real, data_range, region))[0]
        out["ssim_region"] = _mean(ssim(fake, real, data_range, region=region))[0]
    return out


def lv_region(mask, margin_px: int = LV_MARGIN_PX) -> torch.Tensor:
    """The LV (labels 1-4) of ``(N, H, W)`` masks dilated by ``margin_px`` pixels (square), as a
    bool ``(N, 1, H, W)`` tensor: where the mask constrains the image. PSNR and SSIM over the
    whole 128 x 128 ROI are dominated by the thorax around the heart (chest wall, RV, lungs),
    which a 5-class mask does not describe; the LV figures measure what it does."""
    m = _as_batch(mask) > 0
    k = 2 * margin_px + 1
    return F.max_pool2d(m[:, :1].double(), k, stride=1, padding=margin_px) > 0
