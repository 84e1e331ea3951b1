"""Selectable feature extractors for FID, KID, IS and LPIPS; no weights are ever downloaded.

Three extractors (:data:`EXTRACTORS`), one module each, all :class:`.extractor.FeatureExtractor`
(the shared part: the three views, the weights files):

``lge-encoder`` (the default)
    :mod:`.lge_encoder`: the project's small CNN trained on LGE ROI crops
    (``cardiac-mi gan encoder``); weights ``$CARDIAC_MI_GAN_ENCODER``, else
    ``gan/weights/lge_encoder.pt``.
``inception``
    :mod:`.inception_v3`: Inception-v3 from torchvision's or pytorch-fid's weights file
    (``--weights FILE``; with pytorch-fid's, FID values are the standard ones).
``alexnet``
    :mod:`.alexnet`: AlexNet from torchvision's weights file, for LPIPS (calibrated with
    ``--lpips-weights FILE``).

:func:`load_extractor` builds one by name. Adding an extractor is adding its module and a line
here.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from lgemri.errors import InputError

from .alexnet import load_alexnet
from .extractor import FeatureExtractor
from .inception_v3 import load_inception
from .lge_encoder import default_encoder_path, load_encoder

__all__ = ["EXTRACTORS", "load_extractor"]

EXTRACTORS = ("lge-encoder", "inception", "alexnet")


def load_extractor(
    kind: str = "lge-encoder",
    weights: str | os.PathLike | None = None,
    lpips_weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> FeatureExtractor:
    """The feature extractor ``kind`` with weights from a local file.

    Args:
        kind: One of :data:`EXTRACTORS`.
        weights: The weights file; for ``lge-encoder`` default :func:`default_encoder_path`,
            required for ``inception`` and ``alexnet`` (see the module docstring for the files).
        lpips_weights: LPIPS linear layers for ``alexnet`` (optional).
        device: Where the network runs.

    Raises:
        InputError: Unknown kind, a missing file (nothing is downloaded), or weights that do not
            fit the network.
    """
    if kind not in EXTRACTORS:
        raise InputError(f"unknown feature extractor {kind!r}; choose from {', '.join(EXTRACTORS)}")
    if lpips_weights is not None and kind != "alexnet":
        raise InputError("--lpips-weights are AlexNet's LPIPS layers; use them with --extractor alexnet")
    if kind == "lge-encoder":
        return load_encoder(Path(weights) if weights else default_encoder_path(), device)
    if weights is None:
        expected = (
            "inception_v3_google-0cc3c7bd.pth or pt_inception-2015-12-05-6726825d.pth"
            if kind == "inception"
            else "alexnet-owt-7be5be79.pth"
        )
        raise InputError(
            f"--extractor {kind} needs --weights FILE, a local copy of {expected} (weights are never downloaded)"
        )
    if kind == "inception":
        return load_inception(Path(weights), device)
    return load_alexnet(Path(weights), Path(lpips_weights) if lpips_weights else None, device)
