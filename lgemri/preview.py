"""Montages of short-axis stacks with their label outlines, for people to look at."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .labels import CAVITY, INFARCT, MYOCARDIUM, NO_REFLOW
from .volume import Volume

__all__ = ["save_montage"]

OUTLINE_COLOURS = {CAVITY: "#ff4040", MYOCARDIUM: "#40ff40", INFARCT: "#ffd000", NO_REFLOW: "#00e0ff"}


def save_montage(
    image: Volume, path: str | os.PathLike, label: Volume | None = None, columns: int = 5, title: str = ""
) -> Path:
    """Save every slice of ``image`` as a grid PNG, with outlines of ``label``'s classes.

    Slices are shown as acquired (rows down the screen, columns across), square pixels, and
    windowed from the 0.5th to the 99.8th percentile of the stack.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    array = image.array.astype(np.float32)
    n = array.shape[2]
    rows = -(-n // columns)
    lo, hi = np.percentile(array, [0.5, 99.8])
    aspect = image.spacing[1] / image.spacing[0]
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.6 * rows * aspect), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k in range(n):
        ax = axes.ravel()[k]
        ax.imshow(array[:, :, k].T, cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="bilinear")
        if label is not None:
            lab = label.array[:, :, k].T
            for value, colour in OUTLINE_COLOURS.items():
                if (lab == value).any():
                    ax.contour(lab == value, levels=[0.5], colors=[colour], linewidths=0.7)
        ax.set_title(f"slice {k}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path
