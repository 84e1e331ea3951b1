"""What the GANs read: mask/image ROI pairs, two unpaired domains, and folders of masks.

Sources are those of the segmentation trainer (:mod:`lgemri.training.data`): prepared folders
(``manifest.csv`` + ``roi/{images,labels}/<name>.npy``), datalist JSON files, or
``(source, weight)`` pairs; slices are listed by :func:`lgemri.training.data.read_items`, so
whatever the trainer reads, the GAN reads.

- :class:`PairedRoiDataset` (Pix2Pix): one 128 x 128 mask with its image, batches
  ``{"mask": (N, H, W) int64, "image": (N, 1, H, W) float32 in [-1, 1], "index": (N,)}``.
- :class:`UnpairedDataset` (CycleGAN): domain A (cine-like images with their masks, e.g. a
  prepared :func:`lgemri.phantom.cine.write_cine_phantom` folder) and domain B (LGE with masks),
  drawn independently: ``{"A", "mask_A", "B", "mask_B", "index"}``.
- :class:`MaskFolder`: the masks a synthesis run turns into images (simulator output).

Intensities: :func:`to_gan_range` is :func:`lgemri.nets.preprocess.normalize` (1st/99th
percentiles to 0/1, the segmentation network's own scaling) clipped to [0, 1] and mapped to
[-1, 1], the range of the generators' ``tanh``; :func:`from_gan_range` maps back to [0, 1].

Masks are checked when read (:func:`check_mask`): 128 x 128, an integer dtype, labels 0-4.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from lgemri.errors import InputError
from lgemri.labels import NUM_CLASSES
from lgemri.nets.preprocess import ROI_SIZE, normalize
from lgemri.training.data import Augmentation, SliceDataset, Source

__all__ = [
    "to_gan_range",
    "from_gan_range",
    "check_mask",
    "PairedRoiDataset",
    "UnpairedDataset",
    "MaskFolder",
]


def to_gan_range(image: np.ndarray) -> np.ndarray:
    """A 2D image as the GANs see it: ``normalize`` (1st/99th percentile -> 0/1), clipped to
    [0, 1], mapped to [-1, 1] (float32)."""
    return (np.clip(normalize(image), 0.0, 1.0) * 2.0 - 1.0).astype(np.float32)


def from_gan_range(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Generator output in [-1, 1] as a float32 image in [0, 1]."""
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.clip((np.asarray(x, dtype=np.float32) + 1.0) / 2.0, 0.0, 1.0).astype(np.float32)


def check_mask(mask: np.ndarray, where: str | os.PathLike = "mask", num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Validate an EMIDEC mask for the GANs; returns it as uint8.

    Raises:
        InputError: Not ``ROI_SIZE`` x ``ROI_SIZE``, not an integer dtype, or labels outside
            ``0..num_classes - 1`` (the message names the file and what was found).
    """
    mask = np.asarray(mask)
    if mask.shape != (ROI_SIZE, ROI_SIZE):
        raise InputError(f"{where}: mask shape {mask.shape}, expected {ROI_SIZE} x {ROI_SIZE} (a ROI crop)")
    if not (np.issubdtype(mask.dtype, np.integer) or mask.dtype == np.bool_):
        raise InputError(f"{where}: mask dtype {mask.dtype}, expected an integer type (uint8 EMIDEC labels)")
    if mask.size and (int(mask.min()) < 0 or int(mask.max()) >= num_classes):
        unknown = sorted(int(v) for v in np.unique(mask) if not 0 <= int(v) < num_classes)
        raise InputError(
            f"{where}: unknown label(s) {unknown[:10]}; masks hold EMIDEC classes 0-{num_classes - 1} "
            "(background, LV cavity, myocardium, infarct, no-reflow)"
        )
    return mask.astype(np.uint8)


def _load_npy(path: Path, what: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"{path}: {what} file not found") from None
    except (ValueError, OSError) as exc:
        raise InputError(f"{path}: not a readable .npy {what} ({exc})") from None


class PairedRoiDataset(SliceDataset):
    """Mask + LGE ROI pairs of one split (Pix2Pix, and each domain of the CycleGAN).

    Args:
        sources: Prepared folder(s), datalist(s) or ``(source, weight)`` pairs.
        split: ``train``, ``val`` or ``test``.
        augment: The same random rotation, zoom and shift for mask (nearest) and image (linear),
            drawn from ``(seed, epoch, index)`` (:class:`lgemri.training.data.Augmentation`).
        seed: Seed of the augmentation draws.
        limit: Keep only the first ``limit`` slices (quick runs, fixed validation subsets).
        augmentation: Ranges of the geometric augmentation.

    Raises:
        InputError: Missing data, an empty split, slices without a ROI image or label.
    """

    def __init__(
        self,
        sources: Source | Sequence[Source],
        split: str,
        augment: bool = False,
        *,
        seed: int = 0,
        limit: int | None = None,
        augmentation: Augmentation | None = None,
    ) -> None:
        super().__init__(sources, split, augment, seed, augmentation)
        if limit is not None:
            if limit < 1:
                raise InputError(f"limit must be at least 1, got {limit}")
            self.items = _spread(self.items, limit)
        for item in self.items:
            for field in ("roi_image", "roi_label"):
                path = getattr(item, field)
                if path is None or not path.is_file():
                    what = field.split("_")[1]
                    raise InputError(f"{path or item.name}: ROI {what} file not found (listed by {item.source})")

    @property
    def names(self) -> list[str]:
        return [item.name for item in self.items]

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw ROI image (float32) and checked mask (uint8) of slice ``index``."""
        item = self.items[index]
        image = _load_npy(item.roi_image, "ROI image").astype(np.float32)
        mask = check_mask(_load_npy(item.roi_label, "ROI label"), item.roi_label)
        if image.shape != mask.shape:
            raise InputError(f"{item.roi_image}: image {image.shape} and mask {mask.shape} differ")
        return image, mask

    def target_arrays(self) -> Iterator[np.ndarray]:
        """The masks, un-augmented (for :func:`lgemri.losses.class_frequencies`)."""
        for index in range(len(self)):
            yield self.load(index)[1]

    def __getitem__(self, index: int) -> dict:
        image, mask = self.load(index)
        if self.augment:
            image, mask = self.augmentation.geometric(image, mask, self.rng(index))
        return {
            "mask": torch.from_numpy(mask.astype(np.int64)),
            "image": torch.from_numpy(to_gan_range(image)[None]),
            "index": int(index),
        }


def _spread(items: list, limit: int) -> list:
    """``limit`` items spread evenly over the list (all when there are fewer)."""
    if limit >= len(items):
        return items
    picks = np.linspace(0, len(items) - 1, limit).round().astype(int)
    return [items[i] for i in picks]


class UnpairedDataset(torch.utils.data.Dataset):
    """Two unpaired domains for the CycleGAN: A (cine-like + masks) and B (LGE + masks).

    Element ``i`` is A's slice ``i mod len(A)`` with a B slice drawn from a permutation seeded
    by ``(seed, epoch)``, so A and B pairs change every epoch. The length is the larger domain.
    With ``pair_by_name`` an A slice whose name B also holds gets that B slice instead
    (``"paired": True`` in its element): the cine and LGE phantoms of the same cases share names
    and anatomy, which lets validation score A -> B against the true LGE image.

    Args:
        sources_a, sources_b: Sources of each domain.
        split, augment, seed, limit: As for :class:`PairedRoiDataset`.
        pair_by_name: Pair slices of the same name (validation).
    """

    def __init__(
        self,
        sources_a: Source | Sequence[Source],
        sources_b: Source | Sequence[Source],
        split: str,
        augment: bool = False,
        *,
        seed: int = 0,
        limit: int | None = None,
        pair_by_name: bool = False,
    ) -> None:
        self.a = PairedRoiDataset(sources_a, split, augment, seed=seed, limit=limit)
        self.b = PairedRoiDataset(sources_b, split, augment, seed=seed + 1, limit=None if pair_by_name else limit)
        self.split = split
        self.seed = int(seed)
        self.epoch = 0
        b_index = {name: i for i, name in enumerate(self.b.names)}
        self._partner = {i: b_index[n] for i, n in enumerate(self.a.names) if pair_by_name and n in b_index}
        self._perm = self._permutation()

    def _permutation(self) -> np.ndarray:
        n = max(len(self.a), len(self.b))
        rng = np.random.default_rng([self.seed, self.epoch, 11])
        reps = math.ceil(n / len(self.b))
        return np.concatenate([rng.permutation(len(self.b)) for _ in range(reps)])[:n]

    def __len__(self) -> int:
        return max(len(self.a), len(self.b))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.a.set_epoch(epoch)
        self.b.set_epoch(epoch)
        self._perm = self._permutation()

    @property
    def sample_weights(self) -> np.ndarray:
        return np.ones(len(self), dtype=np.float64)

    @property
    def names(self) -> list[str]:
        return [self.a.items[i % len(self.a)].name for i in range(len(self))]

    def target_arrays(self) -> Iterator[np.ndarray]:
        """The masks of both domains (class frequencies over everything the losses weight)."""
        yield from self.a.target_arrays()
        yield from self.b.target_arrays()

    def describe(self) -> dict:
        return {"split": self.split, "A": self.a.describe(), "B": self.b.describe()}

    def __getitem__(self, index: int) -> dict:
        a_index = index % len(self.a)
        partner = self._partner.get(a_index) if index < len(self.a) else None
        b = self.b[int(self._perm[index]) if partner is None else partner]
        a = self.a[a_index]
        return {
            "A": a["image"],
            "mask_A": a["mask"],
            "B": b["image"],
            "mask_B": b["mask"],
            "paired": partner is not None,
            "index": int(index),
        }


class MaskFolder(torch.utils.data.Dataset):
    """The masks of a folder, for synthesis: ``{"mask": (H, W) int64, "index"}``.

    ``root`` is a simulator output or prepared folder (masks in ``roi/labels/*.npy``; its
    ``manifest.csv``, when present, gives the order and each mask's row) or a plain folder of
    ``.npy`` masks. ``split`` keeps the masks of one split of the manifest (e.g. the ``val``
    masks of a prepared folder). Every mask is checked (:func:`check_mask`) before anything is
    generated.

    Raises:
        InputError: Missing or empty folder (or split), or a bad mask (the file is named).
    """

    def __init__(self, root: str | os.PathLike, check: bool = True, split: str | None = None) -> None:
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"{root}: masks folder not found")
        folder = root / "roi" / "labels" if (root / "roi" / "labels").is_dir() else root
        self.root, self.folder = root, folder
        self.rows: dict[str, dict] = {}
        manifest = root / "manifest.csv"
        if manifest.is_file() and folder != root:
            with manifest.open(newline="", encoding="utf-8") as fh:
                self.rows = {row["name"]: row for row in csv.DictReader(fh) if row.get("name")}
        paths = sorted(folder.glob("*.npy"))
        if split is not None:
            if not self.rows or "split" not in next(iter(self.rows.values())):
                raise InputError(f"{root}: no manifest.csv with a split column to choose the {split!r} masks from")
            keep = {name for name, row in self.rows.items() if row.get("split") == split}
            paths = [p for p in paths if p.stem in keep]
            if not paths:
                raise InputError(f"{root}: no mask in the {split!r} split")
        if not paths:
            raise InputError(f"{folder}: no .npy masks found (expected simulator output: roi/labels/<name>.npy)")
        if self.rows:
            order = {name: i for i, name in enumerate(self.rows)}
            paths.sort(key=lambda p: (order.get(p.stem, len(order)), p.stem))
        self.paths = paths
        if check:
            for path in paths:
                self.load(path)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def names(self) -> list[str]:
        return [p.stem for p in self.paths]

    def load(self, path: Path) -> np.ndarray:
        return check_mask(_load_npy(path, "mask"), path)

    def __getitem__(self, index: int) -> dict:
        mask = self.load(self.paths[index])
        return {"mask": torch.from_numpy(mask.astype(np.int64)), "index": int(index)}
