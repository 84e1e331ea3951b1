"""The project's LGE encoder, the metrics' default feature extractor (``lge-encoder``).

:class:`LgeEncoder`, a small CNN trained by this project on LGE ROI crops (:func:`train_encoder`,
``cardiac-mi gan encoder``): five stride-2 stages (32-256 channels, 128 -> 4 pixels), a 3-class
head (slice category normal / infarct / no-reflow) and, while training only, a decoder that
reconstructs the image (so the features keep texture and intensity, not just the category).
FID/KID use the 256-d global average of the last stage; IS the 3-class head; LPIPS the five stage
outputs (uncalibrated: unit-normalised channels, squared differences summed over channels).
Default weights file: ``$CARDIAC_MI_GAN_ENCODER``, else ``gan/weights/lge_encoder.pt``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lgemri.errors import InputError
from lgemri.labels import INFARCT, NO_REFLOW

from .extractor import FeatureExtractor, sha12

__all__ = [
    "ENCODER_CLASSES",
    "ENCODER_ENV",
    "LgeEncoder",
    "default_encoder_path",
    "slice_category",
    "encoder_extractor",
    "load_encoder",
    "save_encoder",
    "train_encoder",
]

logger = logging.getLogger(__name__)

ENCODER_CLASSES = ("normal", "infarct", "no_reflow")
ENCODER_ENV = "CARDIAC_MI_GAN_ENCODER"
_DEFAULT_ENCODER = Path(__file__).resolve().parents[1] / "weights" / "lge_encoder.pt"


def default_encoder_path() -> Path:
    """``$CARDIAC_MI_GAN_ENCODER`` if set, else ``gan/weights/lge_encoder.pt``."""
    env = os.environ.get(ENCODER_ENV)
    return Path(env) if env else _DEFAULT_ENCODER


def slice_category(mask: np.ndarray) -> int:
    """Index in :data:`ENCODER_CLASSES` of a mask: no-reflow present, else infarct present, else normal."""
    mask = np.asarray(mask)
    if (mask == NO_REFLOW).any():
        return 2
    return 1 if (mask == INFARCT).any() else 0


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


def encoder_extractor(net: LgeEncoder, name: str = "lge-encoder@untrained", device="cpu") -> FeatureExtractor:
    """Wrap an in-memory :class:`LgeEncoder` (e.g. an untrained one in tests)."""
    return FeatureExtractor(name, "lge-encoder", net.to(device), classes=ENCODER_CLASSES)


def load_encoder(path: Path, device) -> FeatureExtractor:
    """The LGE encoder of weights file ``path`` (written by :func:`save_encoder`) as a feature extractor."""
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
    return FeatureExtractor(f"lge-encoder@{sha12(path)}", "lge-encoder", net.to(device), classes=classes)


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
        "name": f"lge-encoder@{sha12(path)}",
        "epochs": epochs,
        "val_accuracy": accuracy,
        "train_loss": train_loss,
        "seconds": round(time.perf_counter() - started, 1),
        "classes": list(ENCODER_CLASSES),
    }
