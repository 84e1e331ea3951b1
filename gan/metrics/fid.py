"""Fréchet Inception Distance (FID) and Kernel Inception Distance (KID) on feature vectors.

FID (Heusel et al., NeurIPS 2017): the Fréchet distance between Gaussians fitted to the
features of two image sets,

    d^2 = |mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)).

The trace of the matrix square root is computed as the sum of the square roots of the
eigenvalues of ``S_1^(1/2) S_2 S_1^(1/2)`` (symmetric, positive semi-definite, with the same
eigenvalues as ``S_1 S_2``), which needs no complex ``sqrtm`` and is exact for identical sets.

KID (Bińkowski et al., "Demystifying MMD GANs", ICLR 2018): the unbiased estimate of the squared
maximum mean discrepancy with the cubic polynomial kernel ``k(x, y) = (x.y / d + 1)^3``, averaged
over random subsets; unbiased, so it can be slightly negative and is about 0 for sets from the
same distribution.

The features come from a :class:`gan.metrics.extractor.FeatureExtractor` (``pooled``); every
result names the extractor, since values from different extractors do not compare.
"""

from __future__ import annotations

import numpy as np

from lgemri.errors import InputError

__all__ = ["gaussian_stats", "frechet_distance", "fid_from_features", "kid_from_features", "fid_kid"]


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of ``(N, D)`` features, float64.

    Raises:
        InputError: Fewer than two samples or not a 2D array.
    """
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise InputError(f"FID needs at least two (N, D) feature vectors, got shape {f.shape}")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

    Raises:
        InputError: Shapes that do not match.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise InputError(
            f"Fréchet distance: means {mu1.shape}, {mu2.shape} and covariances {s1.shape}, {s2.shape} do not match"
        )
    root1 = _psd_sqrt(s1)
    middle = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2.0)
    tr_sqrt = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)
    scale = max(float(np.trace(s1) + np.trace(s2)), 1.0)
    return 0.0 if abs(value) < 1e-10 * scale else max(value, 0.0)


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """FID between two ``(N, D)`` feature sets."""
    return frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))


def kid_from_features(
    real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID between two ``(N, D)`` feature sets: mean and standard deviation over ``subsets``
    random subsets of ``min(subset_size, N_real, N_fake)`` vectors each (drawn from ``seed``).

    Raises:
        InputError: Fewer than two vectors in a set, or feature sizes that differ.
    """
    x, y = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise InputError(f"KID: feature sets {x.shape} and {y.shape} do not match")
    m = min(subset_size, len(x), len(y))
    if m < 2:
        raise InputError(f"KID needs at least two feature vectors per set, got {len(x)} and {len(y)}")
    d = x.shape[1]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(max(1, subsets)):
        a = x[rng.choice(len(x), m, replace=False)]
        b = y[rng.choice(len(y), m, replace=False)]
        kxx = (a @ a.T / d + 1.0) ** 3
        kyy = (b @ b.T / d + 1.0) ** 3
        kxy = (a @ b.T / d + 1.0) ** 3
        mmd = (
            (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2.0 * kxy.mean()
        )
        values.append(mmd)
    return float(np.mean(values)), float(np.std(values))


def fid_kid(
    real_features: np.ndarray,
    fake_features: np.ndarray,
    extractor: str,
    *,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> dict:
    """FID and KID of two feature sets, with the extractor's name and the set sizes.

    Returns:
        ``{"fid", "kid", "kid_std", "extractor", "n_real", "n_fake", "feature_dim"}``.
    """
    kid, kid_std = kid_from_features(real_features, fake_features, kid_subsets, kid_subset_size, seed)
    return {
        "fid": fid_from_features(real_features, fake_features),
        "kid": kid,
        "kid_std": kid_std,
        "extractor": extractor,
        "n_real": int(len(real_features)),
        "n_fake": int(len(fake_features)),
        "feature_dim": int(np.asarray(real_features).shape[1]),
    }
