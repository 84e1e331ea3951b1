"""Selectable feature extractors for FID, KID, IS and LPIPS; no weights are ever downloaded.

Three extractors (``EXTRACTORS``), each a :class:`FeatureExtractor` with

- ``pooled(x)``: one feature vector per image (FID, KID);
- ``probabilities(x)``: class probabilities (Inception Score);
- ``feature_maps(x)``: a list of feature maps (LPIPS);
- ``name``: the string every metric result carries, e.g. ``lge-encoder@3f2a9c01d4e7``
  (``@`` + the first 12 hex digits of the weights file's SHA-256).

``lge-encoder`` (the default)
    :class:`LgeEncoder`, a small CNN trained by this project on LGE ROI crops
    (:func:`train_encoder`, ``cardiac-mi gan encoder``): five stride-2 stages (32-256 channels,
    128 -> 4 pixels), a 3-class head (slice category normal / infarct / no-reflow) and, while
    training only, a decoder that reconstructs the image (so the features keep texture and
    intensity, not just the category). FID/KID use the 256-d global average of the last
    stage; IS the 3-class head; LPIPS the five stage outputs (uncalibrated: unit-normalised
    channels, squared differences summed over channels). Default weights file:
    ``$CARDIAC_MI_GAN_ENCODER``, else ``gan/weights/lge_encoder.pt``.

``inception``
    Inception-v3 from a local state-dict file the user provides (``--weights FILE``), either

    - torchvision's ImageNet weights ``inception_v3_google-0cc3c7bd.pth`` (1000 classes;
      ``torch.hub`` stores it in ``~/.cache/torch/hub/checkpoints/``), named
      ``inception-v3-torchvision@...``, or
    - the FID reference weights of pytorch-fid, ``pt_inception-2015-12-05-6726825d.pth``
      (1008 classes, the TensorFlow graph ported; the architecture then switches to
      pytorch-fid's FID blocks), named ``inception-v3-fid@...``: with these, FID values are
      the standard ones.

    Images are repeated to 3 channels and resized to 299 x 299 (bilinear); the networks take
    [-1, 1] input, the GAN range. Pooled features: 2048-d ``pool3``. IS: softmax of ``fc``.

``alexnet``
    AlexNet from torchvision's ``alexnet-owt-7be5be79.pth`` (``--weights FILE``); LPIPS uses
    ReLU 1-5 and, with ``--lpips-weights FILE`` (the LPIPS v0.1 linear layers ``alex.pth`` of the
    ``lpips`` package, ``lpips/weights/v0.1/alex.pth``), the calibrated LPIPS of Zhang et al.
    2018; without it the uncalibrated variant (channel sums), named ``...+uncalibrated``.

The state dicts are read with ``torch.load(weights_only=True)``; key names are those of
torchvision (auxiliary-classifier keys are ignored).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lgemri.errors import InputError
from lgemri.labels import INFARCT, NO_REFLOW

__all__ = [
    "EXTRACTORS",
    "ENCODER_CLASSES",
    "FeatureExtractor",
    "LgeEncoder",
    "InceptionV3",
    "AlexNet",
    "default_encoder_path",
    "load_extractor",
    "encoder_extractor",
    "extract",
    "slice_category",
    "train_encoder",
    "save_encoder",
]

logger = logging.getLogger(__name__)

EXTRACTORS = ("lge-encoder", "inception", "alexnet")
ENCODER_CLASSES = ("normal", "infarct", "no_reflow")
ENCODER_ENV = "CARDIAC_MI_GAN_ENCODER"
_DEFAULT_ENCODER = Path(__file__).resolve().parents[1] / "weights" / "lge_encoder.pt"


def default_encoder_path() -> Path:
    """``$CARDIAC_MI_GAN_ENCODER`` if set, else ``gan/weights/lge_encoder.pt``."""
    env = os.environ.get(ENCODER_ENV)
    return Path(env) if env else _DEFAULT_ENCODER


def _sha12(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


def slice_category(mask: np.ndarray) -> int:
    """Index in :data:`ENCODER_CLASSES` of a mask: no-reflow present, else infarct present, else normal."""
    mask = np.asarray(mask)
    if (mask == NO_REFLOW).any():
        return 2
    return 1 if (mask == INFARCT).any() else 0


# --------------------------------------------------------------------------------------------
# the project's LGE encoder


class LgeEncoder(nn.Module):
    """Small CNN encoder of 128 x 128 LGE ROIs with a category head (and a training decoder).

    Args:
        channels: Channels of the stride-2 stages.
        num_classes: Classes of the head (:data:`ENCODER_CLASSES`).
        decoder: Also build the reconstruction decoder (training only; not saved).
    """

    def __init__(
        self, channels: Sequence[int] = (32, 64, 128, 256, 256), num_classes: int = 3, decoder: bool = False
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) < 2 or min(channels) < 1:
            raise InputError(f"encoder channels must be two or more positive numbers, got {channels}")
        stages, prev = [], 1
        for c in channels:
            stages.append(
                nn.Sequential(
                    nn.Conv2d(prev, c, 3, 2, 1, bias=False),
                    nn.BatchNorm2d(c),
                    nn.LeakyReLU(0.2),
                    nn.Conv2d(c, c, 3, 1, 1, bias=False),
                    nn.BatchNorm2d(c),
                    nn.LeakyReLU(0.2),
                )
            )
            prev = c
        self.stages = nn.ModuleList(stages)
        self.head = nn.Linear(channels[-1], num_classes)
        self.decoder = None
        if decoder:
            layers: list[nn.Module] = []
            rev = list(reversed(channels))
            for c_in, c_out in zip(rev, rev[1:] + [16]):
                layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
            layers += [nn.Conv2d(16, 1, 3, 1, 1), nn.Tanh()]
            self.decoder = nn.Sequential(*layers)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(class logits, pooled features, reconstruction or None)``."""
        last = self.feature_maps(x)[-1]
        pooled = last.mean(dim=(2, 3))
        recon = self.decoder(last) if self.decoder is not None else None
        return self.head(pooled), pooled, recon


# --------------------------------------------------------------------------------------------
# Inception-v3 (torchvision layout; pytorch-fid's FID blocks with the 1008-class weights)


class _Conv(nn.Module):
    def __init__(self, c_in: int, c_out: int, **kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(c_out, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg(x: torch.Tensor, fid: bool) -> torch.Tensor:
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=not fid)


class _InceptionA(nn.Module):
    def __init__(self, c_in: int, pool_features: int, fid: bool) -> None:
        super().__init__()
        self.fid = fid
        self.branch1x1 = _Conv(c_in, 64, kernel_size=1)
        self.branch5x5_1 = _Conv(c_in, 48, kernel_size=1)
        self.branch5x5_2 = _Conv(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = _Conv(c_in, 64, kernel_size=1)
        self.branch3x3dbl_2 = _Conv(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, kernel_size=3, padding=1)
        self.branch_pool = _Conv(c_in, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(_avg(x, self.fid)),
            ],
            1,
        )


class _InceptionB(nn.Module):
    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3 = _Conv(c_in, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = _Conv(c_in, 64, kernel_size=1)
        self.branch3x3dbl_2 = _Conv(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                F.max_pool2d(x, 3, 2),
            ],
            1,
        )


class _InceptionC(nn.Module):
    def __init__(self, c_in: int, c7: int, fid: bool) -> None:
        super().__init__()
        self.fid = fid
        self.branch1x1 = _Conv(c_in, 192, kernel_size=1)
        self.branch7x7_1 = _Conv(c_in, c7, kernel_size=1)
        self.branch7x7_2 = _Conv(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = _Conv(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _Conv(c_in, c7, kernel_size=1)
        self.branch7x7dbl_2 = _Conv(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _Conv(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _Conv(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _Conv(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = _Conv(c_in, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg(x, self.fid))], 1)


class _InceptionD(nn.Module):
    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3_1 = _Conv(c_in, 192, kernel_size=1)
        self.branch3x3_2 = _Conv(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = _Conv(c_in, 192, kernel_size=1)
        self.branch7x7x3_2 = _Conv(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _Conv(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _Conv(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, 2)], 1)


class _InceptionE(nn.Module):
    def __init__(self, c_in: int, pool: str) -> None:
        super().__init__()
        self.pool = pool  # "avg" (torchvision), "avg_fid" (Mixed_7b of FID), "max" (Mixed_7c of FID)
        self.branch1x1 = _Conv(c_in, 320, kernel_size=1)
        self.branch3x3_1 = _Conv(c_in, 384, kernel_size=1)
        self.branch3x3_2a = _Conv(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = _Conv(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _Conv(c_in, 448, kernel_size=1)
        self.branch3x3dbl_2 = _Conv(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = _Conv(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _Conv(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = _Conv(c_in, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        if self.pool == "max":
            pooled = F.max_pool2d(x, 3, 1, 1)
        else:
            pooled = _avg(x, self.pool == "avg_fid")
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(pooled)], 1)


class InceptionV3(nn.Module):
    """Inception-v3 with torchvision's parameter names (no auxiliary classifier).

    Args:
        num_classes: 1000 (torchvision weights) or 1008 (pytorch-fid weights).
        fid: Use pytorch-fid's FID blocks (pooling without padded zeros, max pooling in
            ``Mixed_7c``), as the TensorFlow FID graph does.
    """

    def __init__(self, num_classes: int = 1000, fid: bool = False) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _Conv(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = _Conv(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = _Conv(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = _Conv(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = _Conv(80, 192, kernel_size=3)
        self.Mixed_5b = _InceptionA(192, 32, fid)
        self.Mixed_5c = _InceptionA(256, 64, fid)
        self.Mixed_5d = _InceptionA(288, 64, fid)
        self.Mixed_6a = _InceptionB(288)
        self.Mixed_6b = _InceptionC(768, 128, fid)
        self.Mixed_6c = _InceptionC(768, 160, fid)
        self.Mixed_6d = _InceptionC(768, 160, fid)
        self.Mixed_6e = _InceptionC(768, 192, fid)
        self.Mixed_7a = _InceptionD(768)
        self.Mixed_7b = _InceptionE(1280, "avg_fid" if fid else "avg")
        self.Mixed_7c = _InceptionE(2048, "max" if fid else "avg")
        self.fc = nn.Linear(2048, num_classes)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of ``Conv2d_2b``, ``Conv2d_4a``, ``Mixed_5d``, ``Mixed_6e`` and ``Mixed_7c``."""
        maps = []
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        maps.append(x)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, 3, 2)))
        maps.append(x)
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(F.max_pool2d(x, 3, 2))))
        maps.append(x)
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(self.Mixed_6a(x)))))
        maps.append(x)
        maps.append(self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x))))
        return maps

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, 2048-d pool3 features)`` of 3 x 299 x 299 input in [-1, 1]."""
        pooled = self.feature_maps(x)[-1].mean(dim=(2, 3))
        return self.fc(pooled), pooled


class AlexNet(nn.Module):
    """AlexNet with torchvision's parameter names (``features.*``, ``classifier.*``)."""

    TAPS = (1, 4, 7, 9, 11)  # ReLU 1-5, the layers LPIPS compares

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(),
            nn.Linear(256 * 36, 4096),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Linear(4096, num_classes),
        )

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.TAPS:
                maps.append(x)
            if i == self.TAPS[-1]:
                break
        return maps

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, 256-d global average of ReLU 5)``."""
        relu5 = self.feature_maps(x)[-1]
        logits = self.classifier(torch.flatten(self.avgpool(F.max_pool2d(relu5, 3, 2)), 1))
        return logits, relu5.mean(dim=(2, 3))


# --------------------------------------------------------------------------------------------
# extractors


class FeatureExtractor(nn.Module):
    """A network behind the three views the metrics need; ``name`` goes into every result.

    Inputs are ``(N, 1, H, W)`` (or ``(N, H, W)``) images in [-1, 1], the GAN range.
    """

    def __init__(
        self,
        name: str,
        kind: str,
        net: nn.Module,
        classes: Sequence[str] | None = None,
        lpips_weights: list[torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.name, self.kind, self.net = name, kind, net.eval()
        self.classes = list(classes) if classes is not None else None
        self.lpips_weights = lpips_weights
        for p in self.net.parameters():
            p.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def _prepare(self, x: torch.Tensor, size: int | None) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.float32, device=self.device)
        if x.ndim == 3:
            x = x[:, None]
        if self.kind == "lge-encoder":
            return x
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        if size is not None and tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        if self.kind == "alexnet":  # ImageNet normalisation expressed for [-1, 1] input (LPIPS)
            shift = torch.tensor([-0.030, -0.088, -0.188], device=x.device).view(1, 3, 1, 1)
            scale = torch.tensor([0.458, 0.448, 0.450], device=x.device).view(1, 3, 1, 1)
            x = (x - shift) / scale
        return x

    @property
    def _size(self) -> int | None:
        return {"inception": 299, "alexnet": 224}.get(self.kind)

    @torch.no_grad()
    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self._prepare(x, self._size))[1].float()

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(self._prepare(x, self._size))[0].float(), dim=1)

    @torch.no_grad()
    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        # LPIPS compares at the input resolution (no resizing), as the lpips package does
        return [m.float() for m in self.net.feature_maps(self._prepare(x, None))]


def extract(
    extractor: FeatureExtractor, images: np.ndarray | torch.Tensor, what: str = "pooled", batch_size: int = 32
) -> np.ndarray:
    """``pooled`` features or class ``probabilities`` of ``(N, 1, H, W)`` images, batched, as numpy."""
    if what not in ("pooled", "probabilities"):
        raise InputError(f"unknown feature kind {what!r}; choose from pooled, probabilities")
    fn = getattr(extractor, what)
    out = [fn(torch.as_tensor(images[i : i + batch_size])).cpu().numpy() for i in range(0, len(images), batch_size)]
    return np.concatenate(out, 0).astype(np.float64)


def _load_state(path: Path, what: str) -> dict:
    if not path.is_file():
        raise InputError(f"{path}: {what} weights file not found (weights are never downloaded; give a local file)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is bad input here
        raise InputError(
            f"{path}: cannot read {what} weights as a weights-only state dict ({type(exc).__name__})"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InputError(f"{path}: expected a {what} state dict (torch hub format), got {type(state).__name__}")
    return state


def _fill(net: nn.Module, state: dict, path: Path, what: str, ignore_prefixes: tuple[str, ...] = ()) -> None:
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith(ignore_prefixes)}
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputError(f"{path}: weights do not fit {what}: {first}") from None
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise InputError(
            f"{path}: not {what} weights: {len(missing)} missing key(s) (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )


def _inception(path: Path, device) -> FeatureExtractor:
    state = _load_state(path, "Inception-v3")
    fc = state.get("fc.weight")
    if fc is None:
        raise InputError(
            f"{path}: not Inception-v3 weights (no 'fc.weight'; expected torchvision's or pytorch-fid's file)"
        )
    classes = int(fc.shape[0])
    fid = classes == 1008
    net = InceptionV3(classes, fid=fid)
    _fill(net, state, path, "Inception-v3", ignore_prefixes=("AuxLogits.",))
    name = f"inception-v3-{'fid' if fid else 'torchvision'}@{_sha12(path)}"
    return FeatureExtractor(name, "inception", net.to(device))


def _lpips_weights(path: Path, channels: Sequence[int]) -> list[torch.Tensor]:
    state = _load_state(path, "LPIPS linear-layer")
    weights = []
    for i, c in enumerate(channels):
        keys = [k for k in state if k.startswith(f"lin{i}.") and k.endswith("weight")]
        if len(keys) != 1 or tuple(state[keys[0]].shape) != (1, c, 1, 1):
            raise InputError(f"{path}: not LPIPS v0.1 AlexNet weights (lin{i} should be 1 x {c} x 1 x 1)")
        weights.append(state[keys[0]].float().view(1, c, 1, 1))
    return weights


def _alexnet(path: Path, lpips_path: Path | None, device) -> FeatureExtractor:
    state = _load_state(path, "AlexNet")
    classes = int(state["classifier.6.weight"].shape[0]) if "classifier.6.weight" in state else 1000
    net = AlexNet(classes)
    _fill(net, state, path, "AlexNet")
    lin = None
    name = f"alexnet@{_sha12(path)}"
    if lpips_path is not None:
        lin = [w.to(device) for w in _lpips_weights(lpips_path, (64, 192, 384, 256, 256))]
        name += f"+lpips@{_sha12(lpips_path)}"
    else:
        name += "+uncalibrated"
    return FeatureExtractor(name, "alexnet", net.to(device), lpips_weights=lin)


def encoder_extractor(net: LgeEncoder, name: str = "lge-encoder@untrained", device="cpu") -> FeatureExtractor:
    """Wrap an in-memory :class:`LgeEncoder` (e.g. an untrained one in tests)."""
    return FeatureExtractor(name, "lge-encoder", net.to(device), classes=ENCODER_CLASSES)


def _encoder(path: Path, device) -> FeatureExtractor:
    if not path.is_file():
        raise InputError(
            f"{path}: no LGE encoder weights; train them with 'cardiac-mi gan encoder --data PREPARED_DIR "
            f"--out {path}' (or set ${ENCODER_ENV}), or choose --extractor inception/alexnet with --weights FILE"
        )
    from ..base_model import read_gan_file

    payload = read_gan_file(path, kind="encoder")
    kwargs = dict(payload.get("arch") or {})
    kwargs["decoder"] = False
    try:
        net = LgeEncoder(**kwargs)
        net.load_state_dict(payload["state_dict"], strict=True)
    except (TypeError, RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputError(f"{path}: LGE encoder weights do not fit their architecture: {first}") from None
    classes = (payload.get("extra") or {}).get("classes") or ENCODER_CLASSES
    return FeatureExtractor(f"lge-encoder@{_sha12(path)}", "lge-encoder", net.to(device), classes=classes)


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
        return _encoder(Path(weights) if weights else default_encoder_path(), device)
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
        return _inception(Path(weights), device)
    return _alexnet(Path(weights), Path(lpips_weights) if lpips_weights else None, device)


# --------------------------------------------------------------------------------------------
# training the LGE encoder


def save_encoder(path: str | os.PathLike, net: LgeEncoder, arch: dict, extra: dict | None = None) -> Path:
    """Write an encoder file (``kind == "encoder"``, no decoder weights) atomically."""
    from lgemri.atomic import atomic_path
    from lgemri.nets.checkpoint import to_plain

    from ..base_model import FORMAT, FORMAT_VERSION

    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items() if not k.startswith("decoder.")}
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "kind": "encoder",
        "model": "lge_encoder",
        "arch": to_plain(arch),
        "state_dict": state,
        "extra": to_plain(dict(extra or {})),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def train_encoder(
    data,
    out: str | os.PathLike,
    *,
    epochs: int = 6,
    batch_size: int = 32,
    lr: float = 1e-3,
    channels: Sequence[int] = (32, 64, 128, 256, 256),
    recon_weight: float = 1.0,
    seed: int = 0,
    augment: bool = True,
    device: str = "auto",
    max_steps_per_epoch: int | None = None,
    progress: bool = True,
) -> dict:
    """Train the default feature extractor, :class:`LgeEncoder`, on LGE ROI crops.

    The loss is class-weighted cross-entropy of the slice category (:data:`ENCODER_CLASSES`,
    weights :func:`lgemri.losses.class_weights` of the category frequencies) plus
    ``recon_weight`` times the L1 reconstruction error of the image by the decoder, Adam with a
    cosine schedule; the train split trains, the val split reports accuracy.

    Args:
        data: Sources as for the trainer (prepared folders, datalists).
        out: The encoder file to write (e.g. ``gan/weights/lge_encoder.pt``).
        epochs, batch_size, lr, channels, recon_weight, seed, augment, device,
        max_steps_per_epoch, progress: The usual training knobs.

    Returns:
        ``{"path", "name", "epochs", "val_accuracy", "train_loss", "seconds", "classes"}``.
    """
    from tqdm import tqdm

    from lgemri.losses import class_weights

    from ..data import PairedRoiDataset

    if epochs < 1 or batch_size < 1 or not (math.isfinite(lr) and lr > 0):
        raise InputError(f"epochs and batch size must be >= 1 and lr > 0, got {epochs}, {batch_size}, {lr}")
    dev = torch.device("cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    if device == "cuda" and dev.type != "cuda":
        raise InputError("--device cuda: no CUDA device is available")
    torch.manual_seed(seed)
    train_ds = PairedRoiDataset(data, "train", augment, seed=seed)
    try:
        val_ds = PairedRoiDataset(data, "val", False, seed=seed)
    except InputError:
        val_ds = None
    categories = np.array([slice_category(m) for m in train_ds.target_arrays()])
    counts = np.bincount(categories, minlength=len(ENCODER_CLASSES))
    weights = torch.tensor(class_weights(counts + 1e-9), dtype=torch.float32, device=dev)
    arch = {"channels": list(channels), "num_classes": len(ENCODER_CLASSES)}
    net = LgeEncoder(channels, len(ENCODER_CLASSES), decoder=True).to(dev)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(train_ds, batch_size=batch_size, shuffle=True, generator=generator)
    started = time.perf_counter()
    train_loss = float("nan")
    for epoch in range(epochs):
        train_ds.set_epoch(epoch)
        net.train()
        steps = len(loader) if max_steps_per_epoch is None else min(len(loader), max_steps_per_epoch)
        total, seen = 0.0, 0
        bar = tqdm(total=steps, desc=f"encoder epoch {epoch + 1}/{epochs}", leave=False, disable=not progress)
        for step, batch in enumerate(loader):
            if step >= steps:
                break
            x = batch["image"].to(dev)
            y = torch.tensor([slice_category(m) for m in batch["mask"].numpy()], device=dev)
            logits, _, recon = net(x)
            loss = F.cross_entropy(logits, y, weight=weights) + recon_weight * (recon - x).abs().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(x)
            seen += len(x)
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        bar.close()
        scheduler.step()
        train_loss = total / max(seen, 1)
        logger.info("encoder epoch %d/%d: loss %.4f", epoch + 1, epochs, train_loss)
    accuracy = None
    if val_ds is not None:
        net.eval()
        correct = 0
        with torch.no_grad():
            for batch in torch.utils.data.DataLoader(val_ds, batch_size=2 * batch_size):
                y = torch.tensor([slice_category(m) for m in batch["mask"].numpy()], device=dev)
                correct += int((net(batch["image"].to(dev))[0].argmax(1) == y).sum())
        accuracy = correct / len(val_ds)
    extra = {
        "classes": list(ENCODER_CLASSES),
        "trained_on": train_ds.describe(),
        "epochs": epochs,
        "val_accuracy": accuracy,
        "train_loss": train_loss,
        "recon_weight": recon_weight,
        "seed": seed,
    }
    path = save_encoder(out, net, arch, extra)
    return {
        "path": str(path),
        "name": f"lge-encoder@{_sha12(path)}",
        "epochs": epochs,
        "val_accuracy": accuracy,
        "train_loss": train_loss,
        "seconds": round(time.perf_counter() - started, 1),
        "classes": list(ENCODER_CLASSES),
    }
