"""Synthesis: simulator masks -> LGE image + label pairs the segmentation trainer reads.

``synthesize(masks, out, checkpoint)`` (``cardiac-mi gan synthesize``) reads the masks of a
simulator output (``roi/labels/<name>.npy`` + ``manifest.csv``, see ``simulator/README.md``) or a
plain folder of ``.npy`` masks, checks every one (128 x 128, integer dtype, labels 0-4) before
generating anything, runs the checkpoint's generator and writes::

    OUT/roi/images/<name>.npy   float32 128 x 128 in [0, 1], the generated LGE image
    OUT/roi/labels/<name>.npy   uint8 128 x 128, the mask it was generated from
    OUT/manifest.csv            one row per slice (name, case_id, group, slice, split, ...),
                                the prepared-folder format of ``lgemri.training.data``
    OUT/datalist.json           the same slices as a MONAI-style datalist
    OUT/synthesize.json         provenance: checkpoint (and its SHA-256), model, options, masks

Both ``OUT`` (a folder source) and ``OUT/datalist.json`` are accepted by
:func:`lgemri.training.data.read_items`, so ``cardiac-mi train --data REAL OUT=1`` mixes real and
synthetic slices (with a sampling weight). The images are stored in [0, 1]; the trainer rescales
every input with :func:`lgemri.nets.preprocess.normalize` anyway.

A CycleGAN checkpoint translates cine images: ``images`` must then hold the cine ROI image of
each mask under the same name (``<name>.npy`` or ``roi/images/<name>.npy``).
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from lgemri.atomic import atomic_path, write_text
from lgemri.emidec import case_category, parse_slice_name
from lgemri.errors import InputError
from lgemri.labels import NO_REFLOW, infarct_mask, lv_mask

from .base_model import load_model
from .data import MaskFolder, from_gan_range, to_gan_range

__all__ = ["synthesize", "default_checkpoint_path", "MANIFEST_FIELDS", "CHECKPOINT_ENV"]

logger = logging.getLogger(__name__)

CHECKPOINT_ENV = "CARDIAC_MI_GAN_CHECKPOINT"
_DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "pix2pix_phantom.pt"
MANIFEST_FIELDS = (
    "name",
    "case_id",
    "group",
    "slice",
    "split",
    "infarct",
    "no_reflow",
    "category",
    "spacing_mm",
    "lv_pixels",
    "infarct_pixels",
    "no_reflow_pixels",
    "source",
)
_SPLIT_KEYS = {"train": "training", "val": "validation", "test": "test"}


def default_checkpoint_path() -> Path:
    """``$CARDIAC_MI_GAN_CHECKPOINT`` if set, else ``gan/weights/pix2pix_phantom.pt``."""
    env = os.environ.get(CHECKPOINT_ENV)
    return Path(env) if env else _DEFAULT_CHECKPOINT


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        np.save(tmp, array)


def _identity(name: str, row: dict | None) -> tuple[str, str, int]:
    """(case_id, group, slice) of a mask: from its simulator manifest row, its name, or the name."""
    if row and row.get("case_id"):
        case_id = row["case_id"]
        try:
            k = int(row.get("slice") or 0)
        except ValueError:
            k = 0
        group = "P" if case_id.startswith("Case_P") else "N" if case_id.startswith("Case_N") else ""
        return case_id, group, k
    try:
        parsed = parse_slice_name(name)
        return parsed["case_id"], parsed["group"], parsed["slice"]
    except InputError:
        return name, "", 0


def _cine_images(images: Path, names: list[str]) -> list[Path]:
    if not images.is_dir():
        raise InputError(f"{images}: cine images folder not found")
    folder = images / "roi" / "images" if (images / "roi" / "images").is_dir() else images
    paths = [folder / f"{name}.npy" for name in names]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"{missing[0]}: no cine image for mask {missing[0].stem} ({len(missing)} missing in {folder})")
    return paths


def synthesize(
    masks: str | os.PathLike,
    out: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    *,
    images: str | os.PathLike | None = None,
    masks_split: str | None = None,
    batch_size: int = 16,
    device: str = "cpu",
    seed: int = 0,
    split: str = "train",
    stochastic: bool = False,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Generate an LGE image for every mask in ``masks`` and write image/label pairs to ``out``.

    Args:
        masks: Simulator output or a folder of ``.npy`` masks.
        out: Output folder (see the module docstring).
        checkpoint: A GAN model checkpoint (``best.pt``); default :func:`default_checkpoint_path`.
        images: CycleGAN only: the cine image of each mask, by name.
        masks_split: Only the masks of this split of ``masks``'s manifest (e.g. ``val`` of a
            prepared folder, to score the generator on held-out masks).
        batch_size: Masks per generator call.
        device: Torch device.
        seed: Seed of the generator's dropout with ``stochastic``.
        split: The split the manifest and datalist assign (``train`` to mix into training).
        stochastic: Keep the generator's dropout active (Pix2Pix's noise): different images
            for the same mask with different seeds. Off: one deterministic image per mask.
        overwrite: Allow writing into a folder that already holds a manifest.
        progress: Show a progress bar.

    Returns:
        ``{"out", "manifest", "datalist", "count", "model", "checkpoint", "checkpoint_sha256"}``.

    Raises:
        InputError: Missing or empty masks folder, a bad mask (named), a missing or foreign
            checkpoint, a CycleGAN without cine images, an unknown split, or ``out`` already
            holding a synthesis without ``overwrite``.
    """
    from tqdm import tqdm

    if split not in _SPLIT_KEYS:
        raise InputError(f"unknown split {split!r}; choose from {', '.join(_SPLIT_KEYS)}")
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    out = Path(out)
    if (out / "manifest.csv").exists() and not overwrite:
        raise InputError(f"{out}: already holds a manifest.csv; choose another --out or pass --overwrite")
    folder = MaskFolder(masks, split=masks_split)  # checks every mask first
    checkpoint = Path(checkpoint) if checkpoint is not None else default_checkpoint_path()
    if not checkpoint.is_file():
        raise InputError(
            f"{checkpoint}: GAN checkpoint not found; pass --checkpoint RUN/best.pt "
            f"(train one with 'cardiac-mi gan train --model pix2pix') or set ${CHECKPOINT_ENV}"
        )
    model, meta = load_model(checkpoint, device=device)
    cine_paths = _cine_images(Path(images), folder.names) if model.data_kind == "unpaired" else None
    if model.data_kind != "unpaired" and images is not None:
        raise InputError(f"--images is for CycleGAN checkpoints; {checkpoint} holds a {model.name!r} model")
    torch.manual_seed(seed)
    if stochastic:
        for net in model.networks().values():
            for module in net.modules():
                if isinstance(module, torch.nn.Dropout):
                    module.train()

    rows = []
    entries = []
    names = folder.names
    for start in tqdm(range(0, len(folder), batch_size), desc="synthesize", disable=not progress):
        chunk = range(start, min(start + batch_size, len(folder)))
        masks_np = [folder.load(folder.paths[i]) for i in chunk]
        batch = {"mask": torch.from_numpy(np.stack(masks_np).astype(np.int64))}
        if cine_paths is not None:
            cine = [to_gan_range(np.load(cine_paths[i]).astype(np.float32))[None] for i in chunk]
            batch["image"] = torch.from_numpy(np.stack(cine))
        generated = from_gan_range(model.generate(batch))
        for j, i in enumerate(chunk):
            name, mask = names[i], masks_np[j]
            _save_npy(out / "roi" / "images" / f"{name}.npy", generated[j, 0].astype(np.float32))
            _save_npy(out / "roi" / "labels" / f"{name}.npy", mask.astype(np.uint8))
            case_id, group, k = _identity(name, folder.rows.get(name))
            rows.append(
                {
                    "name": name,
                    "case_id": case_id,
                    "group": group,
                    "slice": k,
                    "split": split,
                    "infarct": int(infarct_mask(mask).any()),
                    "no_reflow": int((mask == NO_REFLOW).any()),
                    "category": case_category(mask),
                    "spacing_mm": 1.0,
                    "lv_pixels": int(lv_mask(mask).sum()),
                    "infarct_pixels": int(infarct_mask(mask).sum()),
                    "no_reflow_pixels": int((mask == NO_REFLOW).sum()),
                    "source": f"gan:{model.name}",
                }
            )
            entries.append(
                {
                    "image": f"roi/images/{name}.npy",
                    "label": f"roi/labels/{name}.npy",
                    "name": name,
                    "case_id": case_id,
                    "spacing_mm": 1.0,
                }
            )

    datalist = {key: (entries if s == split else []) for s, key in _SPLIT_KEYS.items()}
    write_text(out / "datalist.json", json.dumps(datalist, indent=1) + "\n")
    sha = _sha256(checkpoint)
    provenance = {
        "generator": "cardiac_mi gan synthesize",
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": sha,
        "model": model.name,
        "options": meta.get("options"),
        "trained": {k: meta["extra"].get(k) for k in ("epoch", "metrics", "score") if k in meta["extra"]},
        "masks": str(Path(masks)),
        "masks_split": masks_split,
        "images": None if images is None else str(Path(images)),
        "count": len(rows),
        "split": split,
        "seed": seed,
        "stochastic": bool(stochastic),
        "image_range": [0.0, 1.0],
        "written": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    write_text(out / "synthesize.json", json.dumps(provenance, indent=1, default=str) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    manifest = out / "manifest.csv"
    write_text(manifest, buffer.getvalue())  # last: a folder with a manifest is complete
    logger.info("synthesised %d %s images from %s into %s", len(rows), model.name, masks, out)
    return {
        "out": str(out),
        "manifest": str(manifest),
        "datalist": str(out / "datalist.json"),
        "count": len(rows),
        "model": model.name,
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": sha,
    }
