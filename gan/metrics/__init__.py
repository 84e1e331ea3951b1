"""Image-quality metrics of generated LGE images: one module per metric.

- :mod:`.fid` — FID and KID on extractor features;
- :mod:`.inception_score` — IS on extractor class probabilities;
- :mod:`.lpips` — LPIPS on extractor feature maps;
- :mod:`.psnr_ssim` — PSNR and SSIM (as scikit-image computes them);
- :mod:`.features` — the selectable feature extractors (the project's LGE encoder by default,
  or Inception-v3/AlexNet from local weight files; nothing is downloaded).

:func:`compute_metrics` (``cardiac-mi gan metrics --real DIR --fake DIR``) reads two image
folders and computes all of them; every figure carries the name of the extractor behind it.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from lgemri.errors import InputError

__all__ = ["load_image_set", "compute_metrics"]


def _image_paths(folder: Path, split: str | None) -> list[Path]:
    if not folder.is_dir():
        raise InputError(f"{folder}: image folder not found")
    images = folder / "roi" / "images"
    manifest = folder / "manifest.csv"
    if images.is_dir() and manifest.is_file():
        with manifest.open(newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("name") and (split is None or r.get("split") == split)]
        paths = [images / f"{r['name']}.npy" for r in rows]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise InputError(f"{missing[0]}: image listed in {manifest} not found")
    elif images.is_dir():
        paths = sorted(images.glob("*.npy"))
    else:
        paths = sorted(folder.glob("*.npy"))
    if not paths:
        where = f" in the {split!r} split" if split else ""
        raise InputError(f"{folder}: no .npy images{where} (expected roi/images/<name>.npy or <name>.npy)")
    return paths


def _generated(folder: Path) -> bool:
    """Whether ``folder`` is a ``gan synthesize`` output (images already in [0, 1])."""
    path = folder / "synthesize.json"
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("image_range") == [0.0, 1.0]
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def load_image_set(
    folder: str | os.PathLike, split: str | None = None, limit: int | None = None
) -> tuple[list[str], np.ndarray]:
    """Names and ``(N, 1, H, W)`` images in [-1, 1] of a folder.

    ``folder`` is a prepared or synthesised folder (``manifest.csv`` + ``roi/images``; ``split``
    filters its rows), a folder with ``roi/images`` or a plain folder of ``.npy`` images.
    ``limit`` keeps that many, spread evenly over the set.

    Images are brought to the GAN range as the generators were trained: scanner magnitudes by
    :func:`gan.data.to_gan_range` (1st/99th percentiles -> -1/1); the images of a
    ``gan synthesize`` folder (``synthesize.json`` says ``image_range`` [0, 1]) are generator
    outputs already on that scale and are only mapped back with ``2 x - 1``, so that a metric
    sees exactly what the generator produced.

    Raises:
        InputError: Missing or empty folder, images that are not 2D or differ in shape.
    """
    from ..data import to_gan_range

    folder = Path(folder)
    paths = _image_paths(folder, split)
    generated = _generated(folder)
    if limit is not None and limit < len(paths):
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, limit).round().astype(int)]
    images = []
    for path in paths:
        try:
            image = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputError(f"{path}: not a readable .npy image ({exc})") from None
        if image.ndim != 2 or (images and image.shape != images[0].shape[-2:]):
            raise InputError(f"{path}: image shape {image.shape}; all images must be 2D of one shape")
        if generated:
            images.append((np.clip(image.astype(np.float32), 0.0, 1.0) * 2.0 - 1.0)[None])
        else:
            images.append(to_gan_range(image)[None])
    return [p.stem for p in paths], np.stack(images).astype(np.float32)


def _masks(folder: str | os.PathLike, names: list[str]) -> list[np.ndarray] | None:
    """The ``roi/labels/<name>.npy`` masks of ``names`` in ``folder``, or None if any is missing."""
    labels = Path(folder) / "roi" / "labels"
    paths = [labels / f"{name}.npy" for name in names]
    if not paths or not all(p.is_file() for p in paths):
        return None
    return [np.load(p, allow_pickle=False) for p in paths]


def compute_metrics(
    real: str | os.PathLike,
    fake: str | os.PathLike,
    *,
    extractor: str = "lge-encoder",
    weights: str | os.PathLike | None = None,
    lpips_extractor: str | None = None,
    lpips_backbone: str | os.PathLike | None = None,
    lpips_weights: str | os.PathLike | None = None,
    split: str | None = None,
    fake_split: str | None = None,
    limit: int | None = None,
    device: str = "cpu",
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    is_splits: int = 10,
    batch_size: int = 32,
    seed: int = 0,
) -> dict[str, Any]:
    """FID, KID, IS, LPIPS, PSNR and SSIM of the images in ``fake`` against those in ``real``.

    FID and KID compare the two sets as distributions, IS scores ``fake`` alone; LPIPS, PSNR
    and SSIM compare the images of the same name in both sets (None when no name is shared,
    e.g. images synthesised from simulated masks).

    Args:
        real, fake: Image folders (see :func:`load_image_set`).
        extractor, weights: Feature extractor of FID/KID/IS (:func:`.features.load_extractor`).
        lpips_extractor, lpips_backbone, lpips_weights: LPIPS's extractor (default: the same as
            FID's), its weights file and (AlexNet) the LPIPS linear layers.
        split: Only this split of ``real`` (when it has a manifest).
        fake_split: Only this split of ``fake`` (default: all its images).
        limit: At most this many images per set.
        device: Where the extractor runs.
        kid_subsets, kid_subset_size, is_splits, batch_size, seed: Estimator settings.

    Returns:
        A flat dict: ``fid``, ``kid``, ``kid_std``, ``is``, ``is_std``, ``lpips``, ``psnr``,
        ``ssim`` and their details, ``psnr_lv`` and ``ssim_lv`` (over the LV of the masks, dilated
        by 5 pixels, when ``roi/labels`` holds them), ``extractor`` and ``lpips_extractor`` (the
        names of the networks behind the numbers), set sizes and paths.
    """
    from .extractor import extract
    from .features import load_extractor
    from .fid import fid_kid
    from .inception_score import inception_score
    from .lpips import lpips
    from .psnr_ssim import LV_MARGIN_PX, lv_region, psnr_ssim

    real_names, real_images = load_image_set(real, split, limit)
    fake_names, fake_images = load_image_set(fake, fake_split, limit)
    if real_images.shape[-2:] != fake_images.shape[-2:]:
        raise InputError(f"{real} and {fake}: image sizes {real_images.shape[-2:]} and {fake_images.shape[-2:]} differ")
    net = load_extractor(extractor, weights, lpips_weights if (lpips_extractor in (None, extractor)) else None, device)
    if lpips_extractor in (None, extractor) and lpips_backbone is None:
        lpips_net = net
    else:
        lpips_net = load_extractor(lpips_extractor or extractor, lpips_backbone or weights, lpips_weights, device)
    result: dict[str, Any] = {
        "real": str(real),
        "fake": str(fake),
        "real_split": split,
        "fake_split": fake_split,
        "n_real": len(real_names),
        "n_fake": len(fake_names),
        "extractor": net.name,
        "lpips_extractor": lpips_net.name,
    }
    real_feats = extract(net, real_images, "pooled", batch_size)
    fake_feats = extract(net, fake_images, "pooled", batch_size)
    result.update(
        {
            k: v
            for k, v in fid_kid(
                real_feats, fake_feats, net.name, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, seed=seed
            ).items()
            if k in ("fid", "kid", "kid_std", "feature_dim")
        }
    )
    score = inception_score(extract(net, fake_images, "probabilities", batch_size), is_splits, net.name)
    result.update({"is": score["is"], "is_std": score["is_std"], "is_classes": score["classes"]})
    index = {name: i for i, name in enumerate(real_names)}
    shared = [(index[n], j) for j, n in enumerate(fake_names) if n in index]
    result["paired"] = len(shared)
    if shared:
        ri, fj = map(list, zip(*shared))
        masks = _masks(real, [real_names[i] for i in ri]) or _masks(fake, [fake_names[j] for j in fj])
        region = lv_region(np.stack(masks)) if masks else None
        ps = psnr_ssim(fake_images[fj], real_images[ri], data_range=2.0, region=region)
        if region is not None:
            result.update({"psnr_lv": ps["psnr_region"], "ssim_lv": ps["ssim_region"], "lv_margin_px": LV_MARGIN_PX})
        lp = lpips(fake_images[fj], real_images[ri], lpips_net)
        result.update(
            {
                "psnr": ps["psnr"],
                "psnr_std": ps["psnr_std"],
                "ssim": ps["ssim"],
                "ssim_std": ps["ssim_std"],
                "identical_pairs": ps["identical"],
                "data_range": ps["data_range"],
                "lpips": lp["lpips"],
                "lpips_std": lp["lpips_std"],
                "lpips_calibrated": lp["calibrated"],
            }
        )
    else:
        result.update(
            {"psnr": None, "ssim": None, "lpips": None, "lpips_calibrated": lpips_net.lpips_weights is not None}
        )
    return result
