"""Training data: prepared folders (or a datalist) read by split, augmented, as tensors.

A **source** is one of:

- a prepared folder (:func:`lgemri.emidec.prepare_dataset`: ``manifest.csv``,
  ``roi/{images,labels}/<name>.npy``, ``slices/{images,labels}/<name>.npy``);
- a datalist JSON file, MONAI style::

      {"training":   [{"image": "roi/images/a.npy", "label": "roi/labels/a.npy",
                       "slice_image": "slices/images/a.npy", "slice_label": "slices/labels/a.npy",
                       "case_id": "Case_P001", "spacing_mm": 1.0}, ...],
       "validation": [...], "test": [...]}

  (``train``/``val``/``test`` are accepted as keys too; paths are relative to the JSON file;
  ``image``/``label`` are the 128 x 128 crops, ``slice_*`` the full 1 mm slices, each pair
  needed only by the dataset that reads it);
- either of these paired with a sampling weight, ``(source, weight)``: a slice of a source of
  weight 2 is drawn twice as often as one of weight 1 (e.g. to balance real against synthetic
  GAN folders). Weights only change how training batches are drawn, never validation.

What the networks see comes from :mod:`lgemri.nets.preprocess` only (``normalize``,
``localization_input``, ``localization_target``), the functions inference uses too.

Augmentation (training only, :class:`Augmentation`) draws, per slice and epoch, from a
generator seeded by ``(seed, epoch, index)``, so a run is reproducible and independent of the
number of loader workers: any in-plane rotation, mirroring, anisotropic zoom and shift applied
identically to image (linear) and label (nearest); for whole slices a random field of view and
zero-padded strips; then bias field, blur, coarser pixels and 8-bit scaling of the raw image;
and on the normalised image a gamma and Gaussian noise.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from skimage.morphology import disk

from ..errors import InputError
from ..labels import CAVITY, NUM_CLASSES
from ..nets.preprocess import ROI_SIZE, localization_input, localization_target, normalize
from ..postprocess import clean_cavity

__all__ = [
    "Source",
    "SliceItem",
    "Augmentation",
    "read_items",
    "SliceDataset",
    "RoiDataset",
    "LocalizationDataset",
    "EpochSampler",
    "SPLITS",
]

SPLITS = ("train", "val", "test")
_DATALIST_KEYS = {
    "train": ("training", "train"),
    "val": ("validation", "val"),
    "test": ("test", "testing"),
}

Source = str | os.PathLike | tuple[str | os.PathLike, float]


@dataclasses.dataclass(frozen=True)
class SliceItem:
    """One 2D slice of a source: where its arrays are and how often to draw it."""

    name: str
    case_id: str
    source: str
    roi_image: Path | None
    roi_label: Path | None
    slice_image: Path | None
    slice_label: Path | None
    spacing_mm: float = 1.0
    weight: float = 1.0


def _split_source(source: Source) -> tuple[Path, float]:
    if isinstance(source, (tuple, list)):
        if len(source) != 2:
            raise InputError(f"a data source is a folder or (folder, weight), got {source!r}")
        path, weight = source
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise InputError(f"{path}: sampling weight must be a number, got {weight!r}") from None
        if not (math.isfinite(weight) and weight > 0):
            raise InputError(f"{path}: sampling weight must be positive, got {weight}")
        return Path(path), weight
    return Path(source), 1.0


def _manifest_items(folder: Path, split: str, weight: float) -> list[SliceItem]:
    manifest = folder / "manifest.csv"
    if not folder.is_dir():
        raise InputError(f"{folder}: data folder not found")
    if not manifest.is_file():
        raise InputError(f"{folder}: no manifest.csv (prepare the folder with 'cardiac-mi prepare')")
    with manifest.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"name", "case_id", "split"} - set(reader.fieldnames or ())
        if missing:
            raise InputError(f"{manifest}: missing column(s) {', '.join(sorted(missing))}")
        rows = [row for row in reader if row["split"] == split]
    items = []
    for row in rows:
        name = row["name"]
        try:
            spacing = float(row.get("spacing_mm") or 1.0)
        except ValueError:
            raise InputError(f"{manifest}: bad spacing_mm {row.get('spacing_mm')!r} for {name}") from None
        items.append(
            SliceItem(
                name=name,
                case_id=row["case_id"],
                source=str(folder),
                roi_image=folder / "roi" / "images" / f"{name}.npy",
                roi_label=folder / "roi" / "labels" / f"{name}.npy",
                slice_image=folder / "slices" / "images" / f"{name}.npy",
                slice_label=folder / "slices" / "labels" / f"{name}.npy",
                spacing_mm=spacing,
                weight=weight,
            )
        )
    return items


def _datalist_items(path: Path, split: str, weight: float) -> list[SliceItem]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: datalist file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a JSON datalist ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: a datalist is a JSON object with 'training', 'validation', 'test' lists")
    entries = []
    for key in _DATALIST_KEYS[split]:
        entries.extend(data.get(key) or [])
    root = path.parent

    def resolve(value: str | None) -> Path | None:
        return None if value is None else (root / value)

    items = []
    for number, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise InputError(f"{path}: {split} entry {number} is not an object")
        ref = entry.get("image") or entry.get("slice_image")
        if ref is None:
            raise InputError(f"{path}: {split} entry {number} has neither 'image' nor 'slice_image'")
        name = entry.get("name") or Path(ref).name.removesuffix(".npy")
        items.append(
            SliceItem(
                name=name,
                case_id=str(entry.get("case_id") or name),
                source=str(path),
                roi_image=resolve(entry.get("image")),
                roi_label=resolve(entry.get("label")),
                slice_image=resolve(entry.get("slice_image")),
                slice_label=resolve(entry.get("slice_label")),
                spacing_mm=float(entry.get("spacing_mm", 1.0)),
                weight=weight * float(entry.get("weight", 1.0)),
            )
        )
    return items


def read_items(sources: Source | Sequence[Source], split: str) -> list[SliceItem]:
    """The slices of ``split`` (``train``, ``val`` or ``test``) over all sources, in order.

    Raises:
        InputError: Unknown split, a missing folder/manifest/datalist, or no slice in the split.
    """
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    if isinstance(sources, (str, os.PathLike)) or (
        isinstance(sources, tuple) and len(sources) == 2 and not isinstance(sources[1], (str, os.PathLike, tuple, list))
    ):
        sources = [sources]  # type: ignore[list-item]
    sources = list(sources)  # type: ignore[arg-type]
    if not sources:
        raise InputError("no data source given")
    items: list[SliceItem] = []
    for source in sources:
        path, weight = _split_source(source)
        if path.suffix.lower() == ".json":
            items.extend(_datalist_items(path, split, weight))
        else:
            items.extend(_manifest_items(path, split, weight))
    if not items:
        shown = ", ".join(str(_split_source(s)[0]) for s in sources)
        raise InputError(f"{shown}: no slice in the {split!r} split")
    return items


def _require(items: list[SliceItem], fields: tuple[str, str], what: str) -> None:
    for item in items:
        for field in fields:
            path = getattr(item, field)
            if path is None:
                raise InputError(f"{item.source}: slice {item.name} has no {what} ({field})")
            if not path.is_file():
                raise InputError(f"{path}: {what} file not found (listed by {item.source})")


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Ranges and probabilities of the training augmentation: what varies between scanners and sites.

    Real short-axis LGE differs from study to study in how the heart lies in the image (any
    in-plane rotation, mirrored when the phase-encoding or slice direction is reversed), in pixel
    size (0.7-2.0 mm) and its anisotropy (a non-square matrix resized), in field of view
    (150-400 mm, zero-padded strips at the edges), in sharpness (thick slices, low resolution),
    in coil bias, noise and intensity scaling (8 to 12 bits). Each is drawn here, in the spirit
    of domain randomisation (Billot et al., SynthSeg, Medical Image Analysis 86:102789, 2023),
    so that the networks learn the heart's shape and contrast instead of one site's look.
    Mirroring does not change the EMIDEC classes; the AHA segments are placed later from the
    image's own geometry.

    Attributes:
        rotation_deg: Largest rotation either way (degrees; 180 = any angle).
        p_flip: Probability of mirroring along a random in-plane axis.
        scale: Range of the isotropic zoom (drawn log-uniformly).
        anisotropy: Range of the ratio of the zooms along two perpendicular axes of random direction.
        translation: Largest shift either way, as a fraction of the array side.
        fov_mm: Range of the field of view a whole slice is cut to (localization only, p_fov).
        pad_fraction: Largest share of the side blanked as a zero-padded strip (p_pad).
        bias: Largest amplitude of the log of a smooth multiplicative bias field.
        blur_sigma: Largest Gaussian blur (pixels).
        lowres: Largest factor of the down- and up-sampling that mimics coarser pixels.
        gamma: Range of the gamma applied to the min-max rescaled normalised image.
        noise_std: Largest standard deviation of the added Gaussian noise (normalised units).
        p_*: Probabilities of each step.
    """

    rotation_deg: float = 180.0
    p_flip: float = 0.5
    scale: tuple[float, float] = (0.8, 1.25)
    anisotropy: tuple[float, float] = (0.8, 1.25)
    translation: float = 0.06
    fov_mm: tuple[float, float] = (150.0, 400.0)
    pad_fraction: float = 0.15
    bias: float = 0.4
    blur_sigma: float = 1.2
    lowres: float = 2.0
    gamma: tuple[float, float] = (0.6, 1.7)
    noise_std: float = 0.06
    p_affine: float = 0.9
    p_fov: float = 0.5
    p_pad: float = 0.25
    p_bias: float = 0.5
    p_blur: float = 0.25
    p_lowres: float = 0.25
    p_quantize: float = 0.3
    p_gamma: float = 0.5
    p_noise: float = 0.3

    def geometric(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """The same random rotation, mirroring, (anisotropic) zoom and shift for ``image``
        (linear) and ``label`` (nearest); what comes from outside the array is 0."""
        if rng.random() >= self.p_affine:
            return image, label
        angle = math.radians(rng.uniform(-self.rotation_deg, self.rotation_deg))
        zoom = math.exp(rng.uniform(*np.log(self.scale)))
        aspect = math.exp(rng.uniform(*np.log(self.anisotropy)) / 2)
        phi = rng.uniform(0.0, math.pi)
        flip = rng.random() < self.p_flip
        shift = rng.uniform(-self.translation, self.translation, size=2) * np.asarray(image.shape)
        # input -> output: rotate . mirror . zoom (zoom along axes at angle phi)
        rot = lambda a: np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])  # noqa: E731
        zooms = rot(phi) @ np.diag([zoom * aspect, zoom / aspect]) @ rot(-phi)
        forward = rot(angle) @ np.diag([1.0, -1.0 if flip else 1.0]) @ zooms
        matrix = np.linalg.inv(forward)  # output -> input: x_in = M (x_out - centre - shift) + centre
        centre = (np.asarray(image.shape, dtype=np.float64) - 1) / 2
        offset = centre - matrix @ (centre + shift)
        image = ndimage.affine_transform(image, matrix, offset, order=1, mode="constant", cval=0.0)
        label = ndimage.affine_transform(label, matrix, offset, order=0, mode="constant", cval=0)
        return image, label

    def field_of_view(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator, spacing_mm: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cut a whole slice to a random field of view that keeps the LV, and blank a strip at
        an edge as acquisition zero padding."""
        if rng.random() < self.p_fov:
            ii, jj = np.nonzero(label > 0)
            box = []
            for axis, n in enumerate(image.shape):
                side = int(round(rng.uniform(*self.fov_mm) / spacing_mm))
                if side >= n:
                    box.append((0, n))
                    continue
                if ii.size:
                    lo_lv, hi_lv = (ii, jj)[axis].min(), (ii, jj)[axis].max() + 1
                    lo = int(rng.integers(max(0, hi_lv - side), max(0, min(lo_lv, n - side)) + 1))
                else:
                    lo = int(rng.integers(0, n - side + 1))
                box.append((lo, lo + side))
            (a0, a1), (b0, b1) = box
            image, label = image[a0:a1, b0:b1], label[a0:a1, b0:b1]
        if rng.random() < self.p_pad:
            axis, end = int(rng.integers(2)), bool(rng.integers(2))
            width = int(rng.uniform(0, self.pad_fraction) * image.shape[axis])
            if width:
                image = image.copy()
                index = [slice(None), slice(None)]
                index[axis] = slice(image.shape[axis] - width, None) if end else slice(0, width)
                image[tuple(index)] = 0.0
        return image, label

    def acquisition(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Coil bias, blur, coarser pixels and 8-bit scaling on a raw (non-negative) image."""
        image = np.asarray(image, dtype=np.float32)
        if rng.random() < self.p_bias:
            coarse = rng.normal(0.0, 1.0, size=(4, 4))
            field = ndimage.zoom(coarse, np.asarray(image.shape) / 4.0, order=3, mode="nearest")
            field = field[: image.shape[0], : image.shape[1]]
            image = image * np.exp(rng.uniform(0, self.bias) * field / (np.abs(field).max() or 1.0))
        if rng.random() < self.p_blur:
            image = ndimage.gaussian_filter(image, rng.uniform(0.3, self.blur_sigma))
        if rng.random() < self.p_lowres:
            factor = rng.uniform(1.0, self.lowres)
            small = ndimage.zoom(image, 1.0 / factor, order=1)
            image = ndimage.zoom(small, np.asarray(image.shape) / np.asarray(small.shape), order=1)
            image = image[: image.shape[0], : image.shape[1]]
        if rng.random() < self.p_quantize:
            top = float(image.max())
            if top > 0:
                image = np.round(np.clip(image, 0, None) / top * 255.0)
        return image.astype(np.float32)

    def intensity(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Random gamma and Gaussian noise on a normalised image."""
        if rng.random() < self.p_gamma:
            lo, hi = float(image.min()), float(image.max())
            if hi > lo:
                unit = (image - lo) / (hi - lo)
                image = unit ** rng.uniform(*self.gamma) * (hi - lo) + lo
        if rng.random() < self.p_noise:
            image = image + rng.normal(0.0, rng.uniform(0.0, self.noise_std), size=image.shape)
        return image.astype(np.float32)


class SliceDataset(torch.utils.data.Dataset):
    """Common part of the slice datasets (here and in ``gan.data``): items, epoch-seeded generators, sampling weights."""

    def __init__(
        self,
        sources: Source | Sequence[Source],
        split: str,
        augment: bool,
        seed: int,
        augmentation: Augmentation | None,
    ) -> None:
        self.items = read_items(sources, split)
        self.split = split
        self.augment = bool(augment)
        self.seed = int(seed)
        self.epoch = 0
        self.augmentation = augmentation or Augmentation()

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """Choose the augmentation draws of ``epoch`` (call before iterating)."""
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    @property
    def sample_weights(self) -> np.ndarray:
        return np.array([item.weight for item in self.items], dtype=np.float64)

    @property
    def case_ids(self) -> list[str]:
        return [item.case_id for item in self.items]

    def describe(self) -> dict:
        """Plain-data summary: slices, cases and sources of this split."""
        sources: dict[str, int] = {}
        for item in self.items:
            sources[item.source] = sources.get(item.source, 0) + 1
        return {"split": self.split, "slices": len(self.items), "cases": len(set(self.case_ids)), "sources": sources}


class RoiDataset(SliceDataset):
    """The 128 x 128 LV crops of a split: ``(image (C, 128, 128) float32, label (128, 128) int64)``.

    Args:
        sources: Prepared folder(s), datalist(s), or ``(source, weight)`` pairs (see module doc).
        split: ``train``, ``val`` or ``test``.
        augment: Apply the random augmentation (training).
        two_stage_cavity: Add a second input channel, the cleaned LV-cavity mask
            (:func:`lgemri.postprocess.clean_cavity` of the true cavity label), as the two-stage
            segmentation's stage 2 sees it. With ``augment`` it is also eroded or dilated by a
            random 0 to ``cavity_jitter`` pixels to mimic the errors of the stage-1 network.
        target: ``classes`` (EMIDEC labels 0-4) or ``cavity`` (1 for the LV cavity, else 0).
        cavity_jitter: Largest erosion/dilation radius (pixels) of the cavity channel.
        seed: Seed of the augmentation draws.
        augmentation: Ranges and probabilities (default :class:`Augmentation`).

    Raises:
        InputError: Missing data, an empty split or a bad ``target``.
    """

    TARGETS = ("classes", "cavity")

    def __init__(
        self,
        sources: Source | Sequence[Source],
        split: str,
        augment: bool = False,
        two_stage_cavity: bool = False,
        *,
        target: str = "classes",
        cavity_jitter: int = 2,
        seed: int = 0,
        augmentation: Augmentation | None = None,
    ) -> None:
        if target not in self.TARGETS:
            raise InputError(f"unknown RoiDataset target {target!r}; choose from {', '.join(self.TARGETS)}")
        super().__init__(sources, split, augment, seed, augmentation)
        _require(self.items, ("roi_image", "roi_label"), "ROI crop")
        self.two_stage_cavity = bool(two_stage_cavity)
        self.target = target
        self.cavity_jitter = int(cavity_jitter)
        self.in_channels = 2 if two_stage_cavity else 1
        self.num_classes = 2 if target == "cavity" else NUM_CLASSES

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        item = self.items[index]
        image = np.load(item.roi_image).astype(np.float32)
        label = np.load(item.roi_label).astype(np.uint8)
        if image.shape != (ROI_SIZE, ROI_SIZE) or label.shape != image.shape:
            raise InputError(
                f"{item.roi_image}: ROI image {image.shape} and label {label.shape} must both be "
                f"{ROI_SIZE} x {ROI_SIZE}"
            )
        return image, label

    def _target(self, label: np.ndarray) -> np.ndarray:
        return (label == CAVITY).astype(np.int64) if self.target == "cavity" else label.astype(np.int64)

    def target_arrays(self) -> Iterator[np.ndarray]:
        """The un-augmented targets, e.g. for :func:`lgemri.losses.class_frequencies`."""
        for index in range(len(self)):
            yield self._target(self._load(index)[1])

    def cavity_channel(self, label: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        """The cleaned true cavity, eroded or dilated by 0..cavity_jitter px when ``rng`` is given."""
        cavity = clean_cavity(label == CAVITY)
        if rng is not None and self.cavity_jitter > 0 and cavity.any():
            radius = int(rng.integers(0, self.cavity_jitter + 1))
            if radius:
                grow = rng.random() < 0.5
                op = ndimage.binary_dilation if grow else ndimage.binary_erosion
                cavity = op(cavity, structure=disk(radius))
        return cavity.astype(np.float32)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = self._load(index)
        rng = self.rng(index) if self.augment else None
        if rng is not None:
            image, label = self.augmentation.geometric(image, label, rng)
            image = self.augmentation.acquisition(image, rng)
        image = normalize(image)
        if rng is not None:
            image = self.augmentation.intensity(image, rng)
        channels = [image]
        if self.two_stage_cavity:
            channels.append(self.cavity_channel(label, rng))
        x = torch.from_numpy(np.stack(channels).astype(np.float32))
        return x, torch.from_numpy(self._target(label))


class LocalizationDataset(SliceDataset):
    """Whole slices as the localization network sees them.

    Yields ``(localization_input(slice) (1, 128, 128) float32, localization_target(label)
    (128, 128) int64)``; augmentation acts on the 1 mm slice before the coarse grid is made.

    Args:
        sources, split, augment, seed, augmentation: As for :class:`RoiDataset`.
    """

    def __init__(
        self,
        sources: Source | Sequence[Source],
        split: str,
        augment: bool = False,
        *,
        seed: int = 0,
        augmentation: Augmentation | None = None,
    ) -> None:
        super().__init__(sources, split, augment, seed, augmentation)
        _require(self.items, ("slice_image", "slice_label"), "full slice")
        self.in_channels = 1
        self.num_classes = 2

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        item = self.items[index]
        image = np.load(item.slice_image).astype(np.float32)
        label = np.load(item.slice_label).astype(np.uint8)
        if image.ndim != 2 or label.shape != image.shape:
            raise InputError(f"{item.slice_image}: slice image {image.shape} and label {label.shape} differ")
        return image, label

    def target_arrays(self) -> Iterator[np.ndarray]:
        """The un-augmented coarse LV targets."""
        for index in range(len(self)):
            yield localization_target(self._load(index)[1]).astype(np.int64)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = self._load(index)
        rng = self.rng(index) if self.augment else None
        if rng is not None:
            image, label = self.augmentation.field_of_view(image, label, rng, self.items[index].spacing_mm)
            image, label = self.augmentation.geometric(image, label, rng)
            image = self.augmentation.acquisition(image, rng)
        x, _ = localization_input(image)
        if rng is not None:
            x = self.augmentation.intensity(x, rng)
        y = localization_target(label).astype(np.int64)
        return torch.from_numpy(x[None].astype(np.float32)), torch.from_numpy(y)


class EpochSampler(torch.utils.data.Sampler):
    """Shuffled (or weighted) indices that depend only on ``(seed, epoch)``; one share per rank.

    Without weights every index appears once per epoch in a random order; with weights
    ``len(weights)`` indices are drawn with replacement in proportion to them. Under
    distributed training every rank draws the same permutation (padded by wrapping to a
    multiple of ``world_size``) and takes every ``world_size``-th index from its ``rank``.
    """

    def __init__(
        self, size: int, *, weights: Sequence[float] | None = None, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        self.size = int(size)
        self.weights = None
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            if not np.allclose(w, w[0]):
                self.weights = torch.as_tensor(w)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.epoch = 0
        self.per_rank = math.ceil(self.size / self.world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self) -> Iterator[int]:
        seed = int(np.random.SeedSequence([self.seed, self.epoch, 7]).generate_state(1)[0])
        generator = torch.Generator().manual_seed(seed)
        if self.weights is not None:
            order = torch.multinomial(self.weights, self.size, replacement=True, generator=generator)
        else:
            order = torch.randperm(self.size, generator=generator)
        order = order.tolist()
        total = self.per_rank * self.world_size
        order = (order * math.ceil(total / max(len(order), 1)))[:total]
        return iter(order[self.rank : total : self.world_size])
