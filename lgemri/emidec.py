"""The EMIDEC data layout and its 2D slice pipeline.

EMIDEC (Lalande et al., Data 5(4):89, 2020) stores one folder per case::

    ROOT/Case_N006/Images/Case_N006.nii.gz     the LGE image
    ROOT/Case_N006/Contours/Case_N006.nii.gz   the labels (absent for the test cases)
    ROOT/Case N006.txt                         clinical data (or inside the case folder)

Case ids are ``Case_`` + ``N`` (normal) or ``P`` (pathological) + digits. Images and labels are
often stored as float64; labels follow :mod:`lgemri.labels`.

:func:`prepare_dataset` turns the cases into 2D ``.npy`` slices named as in the reference paper,
``EMIDEC_Case_P012_slice_3_Inf_Y``, plus LV-centred crops, a case-level split and a manifest.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import os
import re
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .atomic import atomic_path, write_text
from .errors import InputError
from .geometry import crop_roi, lv_centre, resample_inplane
from .labels import NO_REFLOW, as_label, infarct_mask, lv_mask
from .volume import Volume, read_nifti, write_nifti

__all__ = [
    "EmidecCase",
    "find_cases",
    "load_case",
    "read_clinical",
    "validate_label",
    "slice_name",
    "parse_slice_name",
    "case_category",
    "split_cases",
    "prepare_dataset",
    "write_case_slices",
    "write_manifest",
    "MANIFEST_FIELDS",
]

logger = logging.getLogger(__name__)

CASE_ID_RE = re.compile(r"Case_([NP])\d+")
SLICE_NAME_RE = re.compile(
    r"EMIDEC_(?P<case_id>Case_(?P<group>[NP])[A-Za-z]*\d+)_slice_(?P<slice>\d+)"
    r"_(?P<infarct>Inf|NoInf)_(?P<no_reflow>NoRef|Y|N)"
)
AFFINE_TOLERANCE_MM = 1e-3
SPLITS = ("train", "val", "test")
LAYOUTS = ("auto", "nifti", "png")
MANIFEST_FIELDS = (
    "name",
    "case_id",
    "group",
    "slice",
    "split",
    "infarct",
    "no_reflow",
    "category",
    "shape_i",
    "shape_j",
    "spacing_mm",
    "slice_spacing_mm",
    "roi_i0",
    "roi_j0",
    "roi_i1",
    "roi_j1",
    "lv_pixels",
    "infarct_pixels",
    "no_reflow_pixels",
)


@dataclasses.dataclass
class EmidecCase:
    """One EMIDEC case as read from disk; ``label`` is uint8, or None for a test case."""

    case_id: str
    group: str
    image: Volume
    label: Volume | None
    clinical: dict[str, str]
    image_path: Path
    label_path: Path | None


def _nifti_in(folder: Path, case_id: str) -> Path | None:
    """``folder/<case_id>.nii.gz`` or ``.nii``, whichever exists."""
    for suffix in (".nii.gz", ".nii"):
        path = folder / f"{case_id}{suffix}"
        if path.is_file():
            return path
    return None


def _check_root(root: Path) -> None:
    if not root.is_dir():
        raise InputError(f"{root}: EMIDEC folder not found")


def find_cases(root: str | os.PathLike) -> list[str]:
    """The sorted ids of the cases under ``root`` that hold an image.

    Raises:
        InputError: ``root`` is missing or holds no case.
    """
    root = Path(root)
    _check_root(root)
    cases = sorted(
        d.name
        for d in root.iterdir()
        if d.is_dir() and CASE_ID_RE.fullmatch(d.name) and _nifti_in(d / "Images", d.name)
    )
    if not cases:
        raise InputError(f"{root}: no EMIDEC case (Case_N001/Images/Case_N001.nii.gz) found")
    return cases


def read_clinical(path: str | os.PathLike) -> dict[str, str]:
    """Parse an EMIDEC clinical text file of ``KEY: value`` lines into a dict of strings.

    Blank lines are skipped; keys and values are stripped.

    Raises:
        InputError: A line has no ``:`` or an empty key (the message names file and line).
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    clinical: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            raise InputError(f"{path}, line {number}: expected 'KEY: value', got {line.strip()!r}")
        clinical[key.strip()] = value.strip()
    return clinical


def _clinical_path(root: Path, case_id: str) -> Path | None:
    """``Case N006.txt`` in ``root`` or in the case folder, whichever exists."""
    filename = case_id.replace("_", " ", 1) + ".txt"
    for folder in (root, root / case_id):
        if (folder / filename).is_file():
            return folder / filename
    return None


def validate_label(
    label: Volume, image: Volume, path: str | os.PathLike, image_path: str | os.PathLike = "image"
) -> Volume:
    """Check a label volume against its image and return it as uint8.

    Args:
        label: The label volume as read (any dtype, e.g. float64).
        image: The image it annotates.
        path: The label file, named in error messages.
        image_path: The image file, named in error messages.

    Returns:
        The label as uint8 on the image's affine (the two agree within 1e-3 mm).

    Raises:
        InputError: The shapes or affines differ, a value is not finite or not an integer
            (tolerance 1e-3), or a value lies outside 0..4.
    """
    if label.shape != image.shape:
        raise InputError(f"{path}: label shape {label.shape} differs from image {image_path} shape {image.shape}")
    diff = float(np.abs(label.affine - image.affine).max())
    if diff > AFFINE_TOLERANCE_MM:
        raise InputError(f"{path}: label affine differs from image {image_path} affine by up to {diff:.4g} mm")
    return Volume(as_label(label.array, path), image.affine.copy())


def load_case(root: str | os.PathLike, case_id: str, require_label: bool = True) -> EmidecCase:
    """Read one case: image, validated uint8 label and clinical data.

    Args:
        root: The EMIDEC folder.
        case_id: E.g. ``Case_P012``.
        require_label: When False a case without ``Contours`` loads with ``label=None``.

    Raises:
        InputError: ``root`` or the image is missing, the label is missing while required, the
            label does not match the image, or the clinical file is malformed.
    """
    root = Path(root)
    _check_root(root)
    match = CASE_ID_RE.fullmatch(case_id)
    if not match:
        raise InputError(f"{case_id!r}: not an EMIDEC case id (Case_N001, Case_P012, ...)")
    case_dir = root / case_id
    image_path = _nifti_in(case_dir / "Images", case_id)
    if image_path is None:
        raise InputError(f"{case_dir / 'Images' / (case_id + '.nii.gz')}: image file not found")
    image = read_nifti(image_path)
    label_path = _nifti_in(case_dir / "Contours", case_id)
    label = None
    if label_path is not None:
        label = validate_label(read_nifti(label_path), image, label_path, image_path)
    elif require_label:
        raise InputError(f"{case_dir / 'Contours' / (case_id + '.nii.gz')}: label file not found")
    clinical_path = _clinical_path(root, case_id)
    clinical = read_clinical(clinical_path) if clinical_path else {}
    return EmidecCase(case_id, match.group(1), image, label, clinical, image_path, label_path)


def slice_name(case_id: str, k: int, label2d: np.ndarray) -> str:
    """The reference paper's slice name, ``EMIDEC_<case_id>_slice_<k>_<Inf|NoInf>_<NoRef|Y|N>``.

    ``k`` is the 0-based slice index in the NIfTI volume. ``Inf`` marks a slice holding infarct
    (3 or 4); the last field is ``Y`` with no-reflow (4), ``N`` with infarct but no no-reflow and
    ``NoRef`` without infarct.
    """
    infarct = bool(infarct_mask(label2d).any())
    if not infarct:
        return f"EMIDEC_{case_id}_slice_{k}_NoInf_NoRef"
    no_reflow = "Y" if (label2d == NO_REFLOW).any() else "N"
    return f"EMIDEC_{case_id}_slice_{k}_Inf_{no_reflow}"


def parse_slice_name(name: str) -> dict:
    """Split a :func:`slice_name` (simulated ids like ``Case_PSim0001`` included) into fields.

    Returns:
        ``{"case_id", "group", "slice", "infarct": bool, "no_reflow": bool | None}``;
        ``no_reflow`` is None for ``NoRef`` slices.

    Raises:
        InputError: The name does not follow the pattern or its fields contradict each other.
    """
    match = SLICE_NAME_RE.fullmatch(name)
    if not match:
        raise InputError(f"{name!r}: not an EMIDEC slice name (EMIDEC_Case_P012_slice_3_Inf_Y)")
    infarct = match["infarct"] == "Inf"
    if infarct == (match["no_reflow"] == "NoRef"):
        raise InputError(f"{name!r}: Inf goes with Y or N, NoInf with NoRef")
    return {
        "case_id": match["case_id"],
        "group": match["group"],
        "slice": int(match["slice"]),
        "infarct": infarct,
        "no_reflow": None if not infarct else match["no_reflow"] == "Y",
    }


def case_category(label: np.ndarray) -> str:
    """``normal`` (no infarct), ``no_reflow`` (no-reflow somewhere) or ``infarct``."""
    if (label == NO_REFLOW).any():
        return "no_reflow"
    return "infarct" if infarct_mask(label).any() else "normal"


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or not all(math.isfinite(f) and f >= 0 for f in values) or abs(sum(values) - 1.0) > 1e-6:
        raise InputError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    return values  # type: ignore[return-value]


def _split_counts(n: int, fractions: tuple[float, float, float]) -> list[int]:
    """Largest-remainder counts; with ``n >= 3`` every split of non-zero fraction gets one."""
    exact = [n * f for f in fractions]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(3), key=lambda s: (-(exact[s] - counts[s]), s))
    for s in by_remainder[: n - sum(counts)]:
        counts[s] += 1
    if n >= 3:
        for s in range(3):
            if fractions[s] > 0 and counts[s] == 0:
                counts[max(range(3), key=lambda t: counts[t])] -= 1
                counts[s] = 1
    return counts


def split_cases(
    cases: Iterable[tuple[str, str]],
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> dict[str, str]:
    """Split cases into train/val/test, stratified by category and deterministic for a seed.

    Each category is shuffled on its own (seeded by ``seed`` and the category name, so adding a
    category leaves the others' split alone) and cut by largest remainder; a category of three
    or more cases puts at least one case in every split of non-zero fraction.

    Args:
        cases: ``(case_id, category)`` pairs, e.g. categories ``normal``, ``infarct``,
            ``no_reflow``.
        fractions: Train, val and test fractions.
        seed: Random seed (non-negative).

    Returns:
        ``{case_id: "train" | "val" | "test"}``.

    Raises:
        InputError: Bad fractions or a case id given twice.
    """
    fracs = _check_fractions(fractions)
    by_category: dict[str, list[str]] = {}
    seen: set[str] = set()
    for case_id, category in cases:
        if case_id in seen:
            raise InputError(f"{case_id}: case given twice to the split")
        seen.add(case_id)
        by_category.setdefault(category, []).append(case_id)
    split: dict[str, str] = {}
    for category, ids in sorted(by_category.items()):
        rng = np.random.default_rng([seed, zlib.crc32(category.encode())])
        order = [sorted(ids)[i] for i in rng.permutation(len(ids))]
        start = 0
        for name, count in zip(SPLITS, _split_counts(len(ids), fracs)):
            split.update((case_id, name) for case_id in order[start : start + count])
            start += count
    return split


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        np.save(tmp, array)


def write_case_slices(
    case: EmidecCase, out_dir: str | os.PathLike, spacing: float = 1.0, roi_size: int = 128
) -> tuple[list[dict], dict]:
    """Resample one labelled case and write its full and ROI slices (see :func:`prepare_dataset`).

    Shared by :func:`prepare_dataset` and the active-learning trainer, which prepares the
    image/label pairs of a MONAI Label datastore the same way.

    Returns:
        ``(rows, info)``: one manifest row per slice (without ``split`` and ``category``) and
        the case's ``cases.json`` entry (without ``split``).
    """
    out_dir = Path(out_dir)
    image = resample_inplane(case.image, spacing, order=3)
    label = resample_inplane(case.label, spacing, order=0)
    centre = lv_centre(label.array)
    if centre is None:
        centre = ((label.shape[0] - 1) / 2, (label.shape[1] - 1) / 2)
        logger.warning("%s: no LV in the label; cropping around the image centre", case.label_path)
    thickness = float(label.spacing[2])
    rows, cut_slices, box = [], [], None
    for k in range(label.shape[2]):
        img2d = image.array[..., k].astype(np.float32)
        lab2d = label.array[..., k]
        name = slice_name(case.case_id, k, lab2d)
        img_crop, box = crop_roi(img2d, centre, roi_size)
        lab_crop, _ = crop_roi(lab2d, centre, roi_size)
        _save_npy(out_dir / "slices" / "images" / f"{name}.npy", img2d)
        _save_npy(out_dir / "slices" / "labels" / f"{name}.npy", lab2d)
        _save_npy(out_dir / "roi" / "images" / f"{name}.npy", img_crop)
        _save_npy(out_dir / "roi" / "labels" / f"{name}.npy", lab_crop)
        lv_pixels = int(lv_mask(lab2d).sum())
        if int(lv_mask(lab_crop).sum()) < lv_pixels:
            cut_slices.append(k)
        infarct_pixels = int(infarct_mask(lab2d).sum())
        no_reflow_pixels = int((lab2d == NO_REFLOW).sum())
        rows.append(
            {
                "name": name,
                "case_id": case.case_id,
                "group": case.group,
                "slice": k,
                "infarct": int(infarct_pixels > 0),
                "no_reflow": int(no_reflow_pixels > 0),
                "shape_i": lab2d.shape[0],
                "shape_j": lab2d.shape[1],
                "spacing_mm": spacing,
                "slice_spacing_mm": round(thickness, 6),
                "roi_i0": box[0],
                "roi_j0": box[1],
                "roi_i1": box[2],
                "roi_j1": box[3],
                "lv_pixels": lv_pixels,
                "infarct_pixels": infarct_pixels,
                "no_reflow_pixels": no_reflow_pixels,
            }
        )
    if cut_slices:
        logger.warning(
            "%s: the %dx%d ROI cuts off LV voxels in slices %s",
            case.case_id,
            roi_size,
            roi_size,
            cut_slices,
        )
    info = {
        "group": case.group,
        "category": case_category(case.label.array),
        "image_path": str(case.image_path),
        "original_shape": list(case.image.shape),
        "original_spacing_mm": [round(float(s), 6) for s in case.image.spacing],
        "resampled_shape": list(label.shape),
        "lv_centre_ij": [round(c, 3) for c in centre],
        "roi_box": list(box),
        "clinical": case.clinical,
        "n_slices": label.shape[2],
    }
    return rows, info


def prepare_dataset(
    emidec_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    spacing: float = 1.0,
    roi_size: int = 128,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    progress: bool = False,
    layout: str = "auto",
) -> Path:
    """Turn the labelled EMIDEC cases into 2D slices, LV-centred crops, a split and a manifest.

    Each case is resampled in-plane to ``spacing`` mm (cubic for the image, nearest for the
    label). Slices are kept as acquired: EMIDEC slices lie 8-13 mm apart, so interpolating
    through-plane to an isotropic grid would invent 7-12 slices for every real one.

    Written under ``out_dir`` (every file atomically, the manifest last)::

        slices/images/<name>.npy   float32 [i, j], the full resampled slice
        slices/labels/<name>.npy   uint8 [i, j]
        roi/images/<name>.npy      float32 roi_size x roi_size crop around the case's LV centre
        roi/labels/<name>.npy      uint8
        cases.json                 per case: group, category, split, shapes, spacing, LV
                                   centre, ROI box, clinical data, number of slices
        manifest.csv               one row per slice, columns MANIFEST_FIELDS

    A PNG-layout folder (``images/``, ``labels/``, see :mod:`lgemri.emidec_png`) gets its
    in-plane pixel size recovered from the LV, and each of its cases is also written as
    ``nifti/<case>/{Images,Contours}/<case>.nii.gz`` at that geometry (the EMIDEC layout, for
    evaluating the whole cascade on the validation cases).

    ``<name>`` is :func:`slice_name`. Pixel counts in the manifest are of the full slice.
    Cases without a label are skipped with a warning; a crop that cuts off LV voxels is logged.

    Args:
        emidec_root: The EMIDEC folder.
        out_dir: The output folder (created if needed).
        spacing: In-plane voxel size in mm.
        roi_size: Side of the square crop in voxels.
        fractions: Train, val and test fractions for :func:`split_cases`.
        seed: Split seed.
        progress: Show a progress bar over cases.
        layout: ``nifti`` (EMIDEC as distributed), ``png`` (slices as PNG) or ``auto`` (``png``
            when ``emidec_root`` holds ``images/`` and ``labels/`` folders of PNG slices).

    Returns:
        The path of ``manifest.csv``.

    Raises:
        InputError: Bad input data or fractions, or no case could be prepared.
    """
    fracs = _check_fractions(fractions)
    if layout not in LAYOUTS:
        raise InputError(f"unknown EMIDEC layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    out_dir = Path(out_dir)
    root = Path(emidec_root)
    _check_root(root)
    from . import emidec_png  # a module of its own: it needs PIL, the NIfTI path does not

    if layout == "auto":
        layout = "png" if emidec_png.is_png_layout(root) else "nifti"
    case_ids = emidec_png.find_png_cases(root) if layout == "png" else find_cases(root)
    rows: list[dict] = []
    infos: dict[str, dict] = {}
    for case_id in tqdm(case_ids, desc="EMIDEC cases", disable=not progress):
        if layout == "png":
            case = emidec_png.load_png_case(root, case_id)
            # the volume at its recovered geometry, in the EMIDEC layout, for whole-study evaluation
            write_nifti(case.image, out_dir / "nifti" / case_id / "Images" / f"{case_id}.nii.gz")
            write_nifti(case.label, out_dir / "nifti" / case_id / "Contours" / f"{case_id}.nii.gz")
        else:
            case = load_case(root, case_id, require_label=False)
        if case.label is None:
            logger.warning("%s: no label (Contours) found; case skipped", case_id)
            continue
        case_rows, infos[case_id] = write_case_slices(case, out_dir, spacing, roi_size)
        infos[case_id]["layout"] = layout
        rows.extend(case_rows)
    if not infos:
        raise InputError(f"{root}: no EMIDEC case with a label to prepare")

    split = split_cases(((c, info["category"]) for c, info in infos.items()), fracs, seed)
    for case_id, info in infos.items():
        info["split"] = split[case_id]
    for row in rows:
        row["split"] = split[row["case_id"]]
    manifest = write_manifest(out_dir, rows, infos)
    logger.info("prepared %d slices from %d cases in %s", len(rows), len(infos), out_dir)
    return manifest


def write_manifest(out_dir: str | os.PathLike, rows: Sequence[dict], infos: dict[str, dict]) -> Path:
    """Write ``cases.json`` and then ``manifest.csv`` (last: a folder with a manifest is complete).

    Args:
        out_dir: The prepared folder.
        rows: Manifest rows of :func:`write_case_slices`, each with its ``split`` set; a slice
            may appear in several rows with different splits. ``category`` is filled in from
            its case.
        infos: ``{case_id: info}`` of :func:`write_case_slices`.

    Returns:
        The path of ``manifest.csv``.
    """
    out_dir = Path(out_dir)
    write_text(out_dir / "cases.json", json.dumps(infos, indent=2) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({**row, "category": infos[row["case_id"]]["category"]} for row in rows)
    manifest = out_dir / "manifest.csv"
    write_text(manifest, buffer.getvalue())
    return manifest
