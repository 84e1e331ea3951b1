"""EMIDEC cases published as 8-bit PNG slices, and the geometry they lost.

Some copies of the EMIDEC training set (Lalande et al., Data 5(4):89, 2020; Lalande et al.,
Medical Image Analysis 79:102428, 2022) are not NIfTI volumes but one PNG per slice::

    ROOT/images/Case_P001_slice003.png   8-bit grey, 256 x 256
    ROOT/labels/Case_P001_slice003.png   EMIDEC classes 0-4 as pixel values
    ROOT/manifest.csv                    optional: case, slices, infarct, no_reflow

On the way to PNG every slice was resized from its original matrix to 256 x 256 (so pixel
spacing and aspect ratio are gone: a non-square original is stretched, and all slices of a case
share one stretch), rotated by 180 degrees (``png = np.rot90(nifti_slice, 2)``) and scaled to
8 bits with the volume's maximum (``round(value / max * 255)``).

:func:`load_png_case` undoes the rotation and stacks the slices into a volume in the NIfTI
orientation, and :func:`recover_spacing` estimates the in-plane pixel size of the 256 x 256 grid
from the labelled LV itself:

- **stretch**: a short-axis LV is round on average, so the ratio of the second moments of the
  LV mask (cavity and myocardium) along the two axes, pooled over the case's slices, gives the
  ratio of the two pixel sizes;
- **scale**: after that, the LV's equivalent epicardial diameter on the mid-ventricular slices
  (the larger half by area) is set to :data:`REFERENCE_LV_DIAMETER_MM`.

How well this recovers the truth is measured on phantom studies degraded exactly like the PNGs
(:func:`degrade_like_png`, ``experiments/png_geometry.py``). The slice thickness is not in the
data; :data:`NOMINAL_SLICE_MM` is used (EMIDEC: 8-13 mm), which changes no Dice or percentage,
only absolute volumes.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from pathlib import Path

import numpy as np
from PIL import Image

from .emidec import EmidecCase
from .errors import InputError
from .labels import as_label
from .volume import Volume

__all__ = [
    "is_png_layout",
    "find_png_cases",
    "load_png_case",
    "recover_spacing",
    "lv_shape_stats",
    "degrade_like_png",
    "png_affine",
    "PNG_SIZE",
    "NOMINAL_SLICE_MM",
    "REFERENCE_LV_DIAMETER_MM",
]

logger = logging.getLogger(__name__)

PNG_SIZE = 256
NOMINAL_SLICE_MM = 10.0
# Equivalent diameter (of the LV's epicardial area: cavity + myocardium) on the larger half of
# a stack's slices: the median of this statistic over 100 phantom studies of a seed
# never used for measuring (experiments/png_geometry.py --calibrate), whose LV size is drawn from
# Lang et al. (JASE 2015) and wall thickness from Kawel-Boehm et al. (JCMR 2020).
REFERENCE_LV_DIAMETER_MM = 64.3
MIN_LV_PIXELS = 30  # slices with a smaller LV (apex, a sliver of base) say little about shape
SLICE_RE = re.compile(r"(?P<case>Case_[NP]\d+)_slice(?P<k>\d+)\.png")


def is_png_layout(root: str | os.PathLike) -> bool:
    """True when ``root`` holds ``images/`` and ``labels/`` folders of ``Case_*_slice*.png``."""
    root = Path(root)
    images = root / "images"
    return images.is_dir() and (root / "labels").is_dir() and any(images.glob("Case_*_slice*.png"))


def _slices(root: Path) -> dict[str, dict[int, str]]:
    cases: dict[str, dict[int, str]] = {}
    for path in sorted((root / "images").glob("*.png")):
        match = SLICE_RE.fullmatch(path.name)
        if not match:
            logger.warning("%s: not a Case_<N|P><id>_slice<k>.png name; ignored", path)
            continue
        cases.setdefault(match["case"], {})[int(match["k"])] = path.name
    return cases


def find_png_cases(root: str | os.PathLike) -> list[str]:
    """The sorted case ids of a PNG-layout folder.

    Raises:
        InputError: ``root`` is not a PNG layout, or a case listed in ``manifest.csv`` has no
            slice or a different number of slices.
    """
    root = Path(root)
    if not is_png_layout(root):
        raise InputError(f"{root}: no images/Case_*_slice*.png with a labels/ folder beside it")
    cases = _slices(root)
    manifest = root / "manifest.csv"
    if manifest.is_file():
        with manifest.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                case_id, expected = row.get("case"), row.get("slices")
                if not case_id or not expected:
                    continue
                found = len(cases.get(case_id, {}))
                if found != int(expected):
                    raise InputError(f"{manifest}: {case_id} lists {expected} slices, {root / 'images'} has {found}")
    return sorted(cases)


def _read_png(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{path}: {what} file not found")
    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "P", "I", "I;16"):
                img = img.convert("L")
            return np.asarray(img)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable PNG ({exc})") from None


def png_affine(spacing_ij: tuple[float, float], slice_mm: float = NOMINAL_SLICE_MM) -> np.ndarray:
    """The voxel -> RAS affine given to a stack of PNG slices: axis-aligned, the given spacing."""
    return np.diag([float(spacing_ij[0]), float(spacing_ij[1]), float(slice_mm), 1.0])


def load_png_case(root: str | os.PathLike, case_id: str, spacing_ij: tuple[float, float] | None = None) -> EmidecCase:
    """Read one case's PNG slices as image and label volumes in the NIfTI orientation.

    Args:
        root: The PNG-layout folder.
        case_id: E.g. ``Case_P001``.
        spacing_ij: The in-plane pixel size to give the volume; None recovers it from the label
            (:func:`recover_spacing`).

    Raises:
        InputError: The case has no slice, a label file is missing, an image and its label
            differ in size, the slices of the case differ in size, a slice number is missing,
            or a label value lies outside 0..4 (each message names the file).
    """
    root = Path(root)
    slices = _slices(root).get(case_id)
    if not slices:
        raise InputError(f"{root / 'images'}: no slice of {case_id} ({case_id}_slice000.png)")
    numbers = sorted(slices)
    if numbers != list(range(len(numbers))):
        missing = sorted(set(range(numbers[-1] + 1)) - set(numbers))
        raise InputError(f"{root / 'images'}: {case_id} has no slice {', '.join(f'{m:03d}' for m in missing)}")
    images, labels, shape = [], [], None
    for k in numbers:
        name = slices[k]
        image_path, label_path = root / "images" / name, root / "labels" / name
        image = _read_png(image_path, "image")
        label = _read_png(label_path, "label")
        if image.ndim != 2:
            raise InputError(f"{image_path}: expected a grey image, found shape {image.shape}")
        if label.shape != image.shape:
            raise InputError(f"{label_path}: label size {label.shape} differs from image {image_path} {image.shape}")
        if shape is None:
            shape = image.shape
        elif image.shape != shape:
            raise InputError(f"{image_path}: size {image.shape} differs from the case's first slice {shape}")
        images.append(np.rot90(image, 2))
        labels.append(np.rot90(as_label(label, label_path), 2))
    image_arr = np.stack(images, axis=-1).astype(np.float32)
    label_arr = np.ascontiguousarray(np.stack(labels, axis=-1))
    if spacing_ij is None:
        spacing_ij = recover_spacing(label_arr)
    affine = png_affine(spacing_ij)
    group = case_id[5]
    first = root / "images" / slices[numbers[0]]
    return EmidecCase(
        case_id,
        group,
        Volume(image_arr, affine),
        Volume(label_arr, affine.copy()),
        {},
        first,
        root / "labels" / slices[numbers[0]],
    )


def lv_shape_stats(label: np.ndarray) -> tuple[float, float, float] | None:
    """Second moments and size of the LV over a label stack ``[i, j, k]`` in pixels.

    Returns:
        ``(var_i, var_j, diameter)``: the LV masks' variances along ``i`` and ``j`` pooled over
        the slices (each slice about its own centroid, weighted by its area), and the median
        equivalent diameter ``2 sqrt(area / pi)`` of the larger half of the slices by area; None
        when no slice has at least :data:`MIN_LV_PIXELS` LV pixels.
    """
    var_i = var_j = weight = 0.0
    areas = []
    for k in range(label.shape[2]):
        ii, jj = np.nonzero(label[..., k] > 0)
        if ii.size < MIN_LV_PIXELS:
            continue
        var_i += float(ii.var()) * ii.size
        var_j += float(jj.var()) * jj.size
        weight += ii.size
        areas.append(ii.size)
    if not areas:
        return None
    areas_arr = np.sort(np.asarray(areas, dtype=np.float64))[::-1]
    mid = areas_arr[: max(1, (len(areas_arr) + 1) // 2)]
    diameter = float(np.median(2.0 * np.sqrt(mid / np.pi)))
    return var_i / weight, var_j / weight, diameter


def recover_spacing(label: np.ndarray, reference_mm: float = REFERENCE_LV_DIAMETER_MM) -> tuple[float, float]:
    """Estimate the in-plane pixel size (mm along ``i``, ``j``) of a resized label stack.

    The stretch comes from the LV's pooled second moments (round on average), the scale from its
    mid-ventricular equivalent diameter, set to ``reference_mm`` (see the module docstring).

    Raises:
        InputError: No slice shows enough LV to measure.
    """
    stats = lv_shape_stats(label)
    if stats is None:
        raise InputError(f"no slice with {MIN_LV_PIXELS} or more LV pixels: the pixel size cannot be recovered")
    var_i, var_j, diameter_px = stats
    # a circle of D mm spans D / s pixels along an axis of pixel size s: var ~ 1 / s^2
    ratio = (var_j / var_i) ** 0.25  # s_i = g * ratio, s_j = g / ratio, so s_i * s_j = g^2
    s_i, s_j = ratio, 1.0 / ratio
    # the equivalent diameter in pixels is measured on pixels of area s_i * s_j = 1 here
    scale = reference_mm / diameter_px
    return float(s_i * scale), float(s_j * scale)


def degrade_like_png(image: Volume, label: Volume, size: int = PNG_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Turn a volume into what the PNG copies of EMIDEC hold: per slice, resized to
    ``size`` x ``size`` (bilinear image, nearest label), 8 bits by the volume's maximum and
    rotated by 180 degrees.

    Returns:
        ``(images, labels)``: uint8 arrays ``[size, size, k]`` in PNG orientation (slice ``k``
        is what ``Case_..._slice{k:03d}.png`` would hold).
    """
    arr = np.asarray(image.array, dtype=np.float64)
    top = float(arr.max()) or 1.0
    images, labels = [], []
    for k in range(arr.shape[2]):
        img = Image.fromarray(arr[..., k].astype(np.float32), mode="F").resize((size, size), Image.BILINEAR)
        lab = Image.fromarray(np.asarray(label.array[..., k], dtype=np.uint8)).resize((size, size), Image.NEAREST)
        # PIL sizes are (width, height) = (columns, rows): a square target needs no care here
        eight = np.clip(np.round(np.asarray(img, dtype=np.float64) / top * 255.0), 0, 255).astype(np.uint8)
        images.append(np.rot90(eight, 2))
        labels.append(np.rot90(np.asarray(lab), 2))
    return np.stack(images, axis=-1), np.stack(labels, axis=-1)
