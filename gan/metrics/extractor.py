"""What every feature extractor of the metrics shares: the three views and the weights files.

A :class:`FeatureExtractor` wraps one network (:mod:`.lge_encoder`, :mod:`.inception_v3`,
:mod:`.alexnet`) behind

- ``pooled(x)``: one feature vector per image (FID, KID);
- ``probabilities(x)``: class probabilities (Inception Score);
- ``feature_maps(x)``: a list of feature maps (LPIPS);
- ``name``: the string every metric result carries, e.g. ``lge-encoder@3f2a9c01d4e7``
  (``@`` + :func:`sha12` of the weights file).

The state dicts are read with ``torch.load(weights_only=True)`` (:func:`load_state`); key names
are those of torchvision (:func:`fill_state`). No weights are ever downloaded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lgemri.errors import InputError

__all__ = ["FeatureExtractor", "extract", "sha12", "load_state", "fill_state"]


def sha12(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


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


def load_state(path: Path, what: str) -> dict:
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


def fill_state(net: nn.Module, state: dict, path: Path, what: str, ignore_prefixes: tuple[str, ...] = ()) -> None:
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
