"""LPIPS, the learned perceptual image patch similarity (Zhang et al., CVPR 2018).

For each compared layer ``l`` the feature maps of both images are unit-normalised over channels,
their squared difference is weighted per channel (``w_l``) and summed over channels, averaged
over positions, and the layers are summed:

    LPIPS(x, y) = sum_l mean_hw( sum_c w_lc (f^_l(x) - f^_l(y))^2_c )

With AlexNet and the LPIPS v0.1 linear layers (``--lpips-weights``) this is the published
LPIPS; without them (and with the project's LGE encoder, the default) ``w = 1``, the
uncalibrated variant (``lpips=False`` in the ``lpips`` package). 0 for identical images, larger is
more different; values compare only between results of the same extractor (named in each result).
"""

from __future__ import annotations

import numpy as np
import torch

from lgemri.errors import InputError

from .extractor import FeatureExtractor

__all__ = ["lpips_distance", "lpips"]


def _unit(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


@torch.no_grad()
def lpips_distance(fake: torch.Tensor, real: torch.Tensor, extractor: FeatureExtractor) -> torch.Tensor:
    """Per-pair LPIPS of ``(N, 1, H, W)`` images in [-1, 1]; a float64 ``(N,)`` tensor on the CPU."""
    fake, real = torch.as_tensor(fake), torch.as_tensor(real)
    if fake.shape != real.shape:
        raise InputError(f"LPIPS: generated images {tuple(fake.shape)} and references {tuple(real.shape)} differ")
    maps_a, maps_b = extractor.feature_maps(fake), extractor.feature_maps(real)
    weights = extractor.lpips_weights
    total = torch.zeros(len(fake), dtype=torch.float64, device=maps_a[0].device)
    for i, (a, b) in enumerate(zip(maps_a, maps_b)):
        diff = (_unit(a) - _unit(b)) ** 2
        diff = (diff * weights[i]).sum(1) if weights is not None else diff.sum(1)
        total += diff.mean(dim=(1, 2)).double()
    return total.cpu()


def lpips(fake: np.ndarray, real: np.ndarray, extractor: FeatureExtractor, batch_size: int = 16) -> dict:
    """Mean LPIPS over paired images, batched.

    Returns:
        ``{"lpips", "lpips_std", "n", "extractor", "calibrated"}``.
    """
    values = (
        torch.cat(
            [
                lpips_distance(
                    torch.as_tensor(fake[i : i + batch_size]), torch.as_tensor(real[i : i + batch_size]), extractor
                )
                for i in range(0, len(fake), batch_size)
            ]
        )
        if len(fake)
        else torch.zeros(0, dtype=torch.float64)
    )
    return {
        "lpips": float(values.mean()) if len(values) else float("nan"),
        "lpips_std": float(values.std()) if len(values) > 1 else 0.0,
        "n": int(len(values)),
        "extractor": extractor.name,
        "calibrated": extractor.lpips_weights is not None,
    }
