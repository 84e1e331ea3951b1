"""Inception Score (Salimans et al., "Improved techniques for training GANs", NeurIPS 2016).

``IS = exp(E_x KL(p(y | x) || p(y)))`` over the class probabilities a classifier gives the
generated images, the mean and standard deviation over ``splits`` equal parts of the set. It
lies between 1 (every image gets the same prediction) and the number of classes (confident and
evenly spread predictions). With the default extractor, the project's LGE encoder, the classes
are the slice categories normal / infarct / no-reflow (at most 3), not ImageNet's 1000, so values
compare only between results of the same extractor (which every result names).
"""

from __future__ import annotations

import numpy as np

from lgemri.errors import InputError

__all__ = ["inception_score"]


def inception_score(probabilities: np.ndarray, splits: int = 10, extractor: str | None = None) -> dict:
    """The Inception Score of ``(N, K)`` class probabilities (rows summing to 1).

    Args:
        probabilities: Softmax outputs of the extractor's classifier for the generated images.
        splits: Number of parts (reduced to ``N`` when there are fewer images).
        extractor: Name recorded in the result.

    Returns:
        ``{"is", "is_std", "splits", "classes", "n", "extractor"}``.

    Raises:
        InputError: Not an ``(N, K)`` array of probabilities.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or len(p) == 0 or np.any(p < -1e-6) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise InputError(f"Inception Score needs (N, K) class probabilities, got shape {p.shape}")
    p = np.clip(p, 1e-12, 1.0)
    splits = max(1, min(int(splits), len(p)))
    scores = []
    for part in np.array_split(p, splits):
        marginal = part.mean(axis=0, keepdims=True)
        kl = (part * (np.log(part) - np.log(marginal))).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return {
        "is": float(np.mean(scores)),
        "is_std": float(np.std(scores)),
        "splits": splits,
        "classes": int(p.shape[1]),
        "n": int(len(p)),
        "extractor": extractor,
    }
