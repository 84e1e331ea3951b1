"""Mask -> LGE (Pix2Pix) and cine -> LGE (modified CycleGAN) synthesis, and image-quality metrics.

Layout (after junyanz/pytorch-CycleGAN-and-pix2pix): ``networks`` (``define_G``, ``define_D``,
``GANLoss``), ``base_model`` (the contract every model follows, checkpoints, models by name),
one ``<name>_model.py`` per model (``pix2pix``, ``cyclegan``), ``data`` (datasets), ``train``
(:func:`train_gan`), ``synthesize`` (masks -> image/label pairs the segmentation trainer reads),
``metrics/`` (FID, KID, IS, LPIPS, PSNR, SSIM; selectable feature extractor) and ``cli``
(``cardiac-mi gan train|metrics|synthesize|encoder``).

The public names below load on first use, so ``import gan`` (and ``cardiac_mi.commands.gan``) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "available_models",
    "find_model",
    "create_model",
    "load_model",
    "GanTrainConfig",
    "train_gan",
    "synthesize",
    "compute_metrics",
]

_LAZY = {
    "available_models": "base_model",
    "find_model": "base_model",
    "create_model": "base_model",
    "load_model": "base_model",
    "GanTrainConfig": "train",
    "train_gan": "train",
    "synthesize": "synthesize",
    "compute_metrics": "metrics",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
