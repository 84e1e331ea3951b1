"""Inception-v3 for FID, KID and IS (``inception``), from a local state-dict file the user provides.

Either

- torchvision's ImageNet weights ``inception_v3_google-0cc3c7bd.pth`` (1000 classes; ``torch.hub``
  stores it in ``~/.cache/torch/hub/checkpoints/``), named ``inception-v3-torchvision@...``, or
- the FID reference weights of pytorch-fid, ``pt_inception-2015-12-05-6726825d.pth`` (1008
  classes, the TensorFlow graph ported; the architecture then switches to pytorch-fid's FID
  blocks), named ``inception-v3-fid@...``: with these, FID values are the standard ones.

Images are repeated to 3 channels and resized to 299 x 299 (bilinear); the networks take [-1, 1]
input, the GAN range. Pooled features: 2048-d ``pool3``. IS: softmax of ``fc``. The layout is
torchvision's (auxiliary-classifier keys are ignored).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from lgemri.errors import InputError

from .extractor import FeatureExtractor, fill_state, load_state, sha12

__all__ = ["InceptionV3", "load_inception"]


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


def load_inception(path: Path, device) -> FeatureExtractor:
    """Inception-v3 with the weights of ``path`` (torchvision's or pytorch-fid's) as a feature extractor."""
    state = load_state(path, "Inception-v3")
    fc = state.get("fc.weight")
    if fc is None:
        raise InputError(
            f"{path}: not Inception-v3 weights (no 'fc.weight'; expected torchvision's or pytorch-fid's file)"
        )
    classes = int(fc.shape[0])
    fid = classes == 1008
    net = InceptionV3(classes, fid=fid)
    fill_state(net, state, path, "Inception-v3", ignore_prefixes=("AuxLogits.",))
    name = f"inception-v3-{'fid' if fid else 'torchvision'}@{sha12(path)}"
    return FeatureExtractor(name, "inception", net.to(device))
