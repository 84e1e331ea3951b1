"""Test data of the GAN tests: tiny prepared folders of synthetic ROI pairs (fast, no phantom)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

TINY = {"depth": 3, "ngf": 4, "ndf": 4, "n_layers_d": 2}


def ring_pair(rng: np.random.Generator, cine: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A 128 x 128 EMIDEC mask (cavity, myocardium, infarct, sometimes no-reflow) and an image of it."""
    yy, xx = np.mgrid[:128, :128]
    cy, cx = 64 + rng.integers(-6, 7), 64 + rng.integers(-6, 7)
    r = np.hypot(yy - cy, xx - cx)
    theta = np.degrees(np.arctan2(yy - cy, xx - cx)) % 360
    r_endo, wall = rng.uniform(14, 22), rng.uniform(6, 10)
    mask = np.zeros((128, 128), np.uint8)
    mask[r < r_endo + wall] = 2
    mask[r < r_endo] = 1
    start = rng.uniform(0, 360)
    sector = ((theta - start) % 360 < rng.uniform(40, 120)) & (mask == 2) & (r < r_endo + wall * 0.7)
    mask[sector] = 3
    if rng.random() < 0.5:
        mask[sector & (r < r_endo + wall * 0.3)] = 4
    level = {0: 0.25, 1: 0.9, 2: 0.1, 3: 0.1 if cine else 0.95, 4: 0.1 if cine else 0.15}
    image = np.vectorize(level.get)(mask).astype(np.float32) * 500 + rng.normal(0, 15, (128, 128)).astype(np.float32)
    return mask, np.abs(image).astype(np.float32)


def write_prepared(root: Path, n_train: int, n_val: int, seed: int, cine: bool = False, prefix: str = "Case_P") -> Path:
    """A prepared folder (manifest.csv + roi/{images,labels}) of synthetic ring pairs."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_train + n_val):
        j = i if i < n_train else 200 + i - n_train  # validation cases are numbered alike in every folder
        case = f"{prefix}{j // 2 + 1:03d}"
        name = f"EMIDEC_{case}_slice_{i % 2}_Inf_N"
        mask, image = ring_pair(rng, cine)
        (root / "roi" / "images").mkdir(parents=True, exist_ok=True)
        (root / "roi" / "labels").mkdir(parents=True, exist_ok=True)
        np.save(root / "roi" / "images" / f"{name}.npy", image)
        np.save(root / "roi" / "labels" / f"{name}.npy", mask)
        rows.append({"name": name, "case_id": case, "split": "train" if i < n_train else "val"})
    with (root / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["name", "case_id", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return root
