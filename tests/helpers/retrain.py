"""Retraining tests (``cardiac_mi.retrain`` and its review in the viewer): tiny segmentation checkpoints and
training pairs of the session's phantom studies (``phantom_dir`` of tests/conftest.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

CASES = ("Case_P001", "Case_P002", "Case_N003")
# a segmentation network small enough to train in a few seconds on a CPU
TINY = {
    "spatial_dims": 2,
    "in_channels": 1,
    "out_channels": 5,
    "dropout": 0.0,
    "channels": (4, 8, 8),
    "strides": (2, 2),
}


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tiny_checkpoint(path: Path, seed: int) -> Path:
    """A ``TINY`` segmentation checkpoint at ``path``, its weights drawn with ``seed``."""
    import torch

    from lgemri.nets import build_network
    from lgemri.nets.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    return save_checkpoint(
        path, build_network("resatt_unet", **TINY), task="segmentation", network={"name": "resatt_unet", "kwargs": TINY}
    )


def phantom_pairs(phantom_dir: Path, cases=CASES, image_ids: bool = False) -> list[dict]:
    """``{"image", "label"}`` of ``cases`` of the phantom's EMIDEC folder; with ``image_ids``, ``"image_id"``
    too (the case name: what the datastore would give), else ``prepare_pairs`` derives it from the file."""
    emidec = phantom_dir / "emidec"
    pairs = [
        {"image": str(emidec / c / "Images" / f"{c}.nii.gz"), "label": str(emidec / c / "Contours" / f"{c}.nii.gz")}
        for c in cases
    ]
    if image_ids:
        for case, pair in zip(cases, pairs):
            pair["image_id"] = case
    return pairs
