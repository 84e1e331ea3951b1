"""AlexNet for LPIPS (``alexnet``), from torchvision's ``alexnet-owt-7be5be79.pth`` (``--weights FILE``).

LPIPS uses ReLU 1-5 and, with ``--lpips-weights FILE`` (the LPIPS v0.1 linear layers ``alex.pth``
of the ``lpips`` package, ``lpips/weights/v0.1/alex.pth``), the calibrated LPIPS of Zhang et al.
2018; without it the uncalibrated variant (channel sums), named ``...+uncalibrated``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from lgemri.errors import InputError

from .extractor import FeatureExtractor, fill_state, load_state, sha12

__all__ = ["AlexNet", "load_alexnet"]


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


def lpips_layers(path: Path, channels: Sequence[int]) -> list[torch.Tensor]:
    """The LPIPS v0.1 linear layers (one ``1 x c x 1 x 1`` weight per compared layer) of ``path``."""
    state = load_state(path, "LPIPS linear-layer")
    weights = []
    for i, c in enumerate(channels):
        keys = [k for k in state if k.startswith(f"lin{i}.") and k.endswith("weight")]
        if len(keys) != 1 or tuple(state[keys[0]].shape) != (1, c, 1, 1):
            raise InputError(f"{path}: not LPIPS v0.1 AlexNet weights (lin{i} should be 1 x {c} x 1 x 1)")
        weights.append(state[keys[0]].float().view(1, c, 1, 1))
    return weights


def load_alexnet(path: Path, lpips_path: Path | None, device) -> FeatureExtractor:
    """AlexNet with the weights of ``path`` (and the LPIPS layers of ``lpips_path``) as a feature extractor."""
    state = load_state(path, "AlexNet")
    classes = int(state["classifier.6.weight"].shape[0]) if "classifier.6.weight" in state else 1000
    net = AlexNet(classes)
    fill_state(net, state, path, "AlexNet")
    lin = None
    name = f"alexnet@{sha12(path)}"
    if lpips_path is not None:
        lin = [w.to(device) for w in lpips_layers(lpips_path, (64, 192, 384, 256, 256))]
        name += f"+lpips@{sha12(lpips_path)}"
    else:
        name += "+uncalibrated"
    return FeatureExtractor(name, "alexnet", net.to(device), lpips_weights=lin)
