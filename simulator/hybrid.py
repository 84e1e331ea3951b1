"""Real myocardium as recipient: loading subjects, and hybrid injection of grown infarcts.

A subject is a labelled short-axis stack in EMIDEC layout (``ROOT/Case_P012/Contours/
Case_P012.nii.gz``; the EMIDEC data, a ``cardiac-mi phantom`` output or a simulator output). Its
label is resampled in-plane to 1 mm (nearest neighbour) and cropped to the 128 x 128 ROI around
its LV centre, the same ROI the segmentation and the GAN use (:mod:`lgemri.geometry`). Slices
keep their spacing. A stack that runs from apex to base (the LV of its first third of slices
clearly smaller than that of its last third: the prepared real EMIDEC volumes do) is reversed, so
that every subject runs base to apex as :func:`lgemri.aha.slice_levels` and the fusion's slice
matching expect; otherwise basal and apical AHA segments would swap.

A prepared folder (``cardiac-mi prepare`` output: ``cases.json`` and ``nifti/``) holds every
case of a data set with its split (train, val, test). Taken from such a folder, subjects are
those of one named split only (``split=``, ``--recipients-split train``): masks made for training
must not carry the anatomy or the infarct of a validation or test case. Without a split, a
prepared folder (or its ``nifti/`` folder) is refused rather than read whole.

Hybrid injection keeps a subject's anatomy (cavity and wall; any infarct it had goes back to
myocardium) and grows a new infarct on it with :func:`simulator.infarct.grow_infarct`, exactly as
on a synthetic ring.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
from pathlib import Path

import numpy as np

from lgemri import aha
from lgemri.emidec import SPLITS
from lgemri.errors import InputError
from lgemri.geometry import crop_roi, lv_centre, resample_inplane
from lgemri.labels import CAVITY, INFARCT, NUM_CLASSES
from lgemri.volume import Volume, read_nifti

from .infarct import Growth, InfarctSpec, grow_infarct
from .rings import PIXEL_MM, ROI_SIZE
from .wall import Wall, enclose_no_reflow, strip_infarct, wall_from_label

__all__ = [
    "Subject",
    "find_subjects",
    "prepared_root",
    "split_case_ids",
    "load_subject",
    "load_subjects",
    "descriptors",
    "inject",
    "DESCRIPTOR_NAMES",
]

logger = logging.getLogger(__name__)

SUBJECT_ID_RE = re.compile(r"Case_[NP][A-Za-z]*\d+")
DESCRIPTOR_NAMES = ("endo_diameter_mm", "wall_mm", "eccentricity", "lv_length_mm", "myo_to_blood")


@dataclasses.dataclass
class Subject:
    """One recipient or donor: its 1 mm ROI label, its anatomy's wall and shape descriptors."""

    subject_id: str
    label: np.ndarray  # uint8 [128, 128, K], original classes (infarct kept)
    anatomy: np.ndarray  # the same with infarct and no-reflow turned into myocardium
    slice_spacing: float
    wall: Wall
    descriptors: np.ndarray
    reversed_stack: bool = False  # the stack was read apex to base and reversed

    @property
    def has_infarct(self) -> bool:
        return bool((self.label >= INFARCT).any())

    @property
    def spacing(self) -> tuple[float, float, float]:
        return (PIXEL_MM, PIXEL_MM, self.slice_spacing)


def prepared_root(root: str | os.PathLike) -> Path | None:
    """The prepared folder (``cases.json`` with a ``nifti/`` folder) that ``root`` is or whose
    ``nifti/`` folder it is; None for any other folder."""
    root = Path(root)
    for candidate in (root, root.parent if root.name == "nifti" else None):
        if candidate is not None and (candidate / "cases.json").is_file() and (candidate / "nifti").is_dir():
            return candidate
    return None


def split_case_ids(prepared: str | os.PathLike, split: str) -> list[str]:
    """The case ids of ``split`` in a prepared folder's ``cases.json``, sorted.

    Raises:
        InputError: an unknown split, an unreadable ``cases.json``, or no case in the split.
    """
    prepared = Path(prepared)
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    path = prepared / "cases.json"
    try:
        infos = json.loads(path.read_text(encoding="utf-8"))
        ids = sorted(c for c, info in infos.items() if info.get("split") == split)
    except (OSError, ValueError, AttributeError) as exc:
        raise InputError(f"{path}: not a prepared folder's cases.json ({exc})") from exc
    if not ids:
        raise InputError(f"{path}: no case in the {split} split")
    return ids


def _label_path(case_dir: Path) -> Path | None:
    for suffix in (".nii.gz", ".nii"):
        path = case_dir / "Contours" / f"{case_dir.name}{suffix}"
        if path.is_file():
            return path
    return None


def find_subjects(root: str | os.PathLike, split: str | None = None, option: str = "split") -> list[tuple[str, Path]]:
    """``(subject_id, label_path)`` of every labelled case under ``root`` (or ``root/emidec``).

    A prepared folder (or its ``nifti/`` folder) needs ``split``: only the cases that its
    ``cases.json`` puts in that split are returned, so no case of another split can be read this
    way. ``option`` names the setting in the messages (``--recipients-split``).

    Raises:
        InputError: ``root`` is not a folder or holds no labelled case; a prepared folder without
            ``split``, or ``split`` for a folder that is not a prepared one; a case of the split
            without its label.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: recipient folder not found")
    prepared = prepared_root(root)
    if prepared is not None:
        if split is None:
            raise InputError(
                f"{root}: a prepared folder (cases.json) holds the train, val and test cases together; "
                f"choose one with {option} {'|'.join(SPLITS)} (masks for training: train)"
            )
        found = []
        for case_id in split_case_ids(prepared, split):
            path = _label_path(prepared / "nifti" / case_id)
            if path is None:
                raise InputError(f"{prepared}: {split} case {case_id} has no label (nifti/{case_id}/Contours/)")
            found.append((case_id, path))
        logger.info("%s: %d %s cases (cases.json)", prepared, len(found), split)
        return found
    if split is not None:
        raise InputError(
            f"{root}: {option} {split} needs a prepared folder (cardiac-mi prepare output: cases.json and nifti/); "
            "this folder has no cases.json"
        )
    if (root / "emidec").is_dir() and not any(SUBJECT_ID_RE.fullmatch(d.name) for d in root.iterdir()):
        root = root / "emidec"
    found = []
    for case_dir in sorted(d for d in root.iterdir() if d.is_dir() and SUBJECT_ID_RE.fullmatch(d.name)):
        path = _label_path(case_dir)
        if path is not None:
            found.append((case_dir.name, path))
    if not found:
        raise InputError(f"{root}: no labelled case (Case_P012/Contours/Case_P012.nii.gz) found")
    return found


def descriptors(anatomy: np.ndarray, slice_spacing: float) -> np.ndarray:
    """Diameter and shape descriptors of an LV (the k-nearest-neighbour features of fusion).

    ``endo_diameter_mm``: median equivalent cavity diameter over slices with cavity;
    ``wall_mm``: median mean wall thickness (wall area over mean circumference);
    ``eccentricity``: median 1 - minor/major axis of the LV outline; ``lv_length_mm``: slices
    with myocardium times their spacing; ``myo_to_blood``: wall over cavity voxels.
    """
    diam, wall, ecc = [], [], []
    for k in range(anatomy.shape[2]):
        s = anatomy[:, :, k]
        cav = int((s == CAVITY).sum())
        lv = int((s > 0).sum())
        if lv == 0:
            continue
        r_epi = math.sqrt(lv / math.pi) * PIXEL_MM
        if cav:
            r_endo = math.sqrt(cav / math.pi) * PIXEL_MM
            diam.append(2 * r_endo)
            wall.append((lv - cav) * PIXEL_MM**2 / (math.pi * (r_endo + r_epi)))
        pts = np.argwhere(s > 0).astype(float)
        if len(pts) >= 3:
            eig = np.linalg.eigvalsh(np.cov(pts.T))
            ecc.append(1.0 - math.sqrt(max(eig[0], 0.0) / max(eig[1], 1e-9)))
    myo = int(((anatomy >= 2) & (anatomy <= 4)).sum())
    cav = int((anatomy == CAVITY).sum())
    n_lv = int((anatomy > 0).any(axis=(0, 1)).sum())
    return np.array(
        [
            float(np.median(diam)) if diam else 0.0,
            float(np.median(wall)) if wall else 0.0,
            float(np.median(ecc)) if ecc else 0.0,
            n_lv * slice_spacing,
            myo / cav if cav else 0.0,
        ]
    )


def _as_labels(volume: Volume, path: Path) -> np.ndarray | None:
    values = np.asarray(volume.array)
    if not np.issubdtype(values.dtype, np.integer):
        if not np.isfinite(values).all() or (np.abs(values - np.round(values)) > 1e-3).any():
            logger.warning("%s: skipped: label values are not whole numbers", path)
            return None
        values = np.round(values)
    if values.min() < 0 or values.max() >= NUM_CLASSES:
        logger.warning("%s: skipped: label values outside 0-%d", path, NUM_CLASSES - 1)
        return None
    return values.astype(np.uint8)


def load_subject(subject_id: str, path: str | os.PathLike, rv_insertion_deg: float | None = None) -> Subject | None:
    """Read, resample and crop one labelled case; None (with a logged reason) when unusable."""
    path = Path(path)
    try:
        volume = read_nifti(path)
    except InputError as exc:
        logger.warning("%s: skipped: %s", subject_id, exc)
        return None
    values = _as_labels(volume, path)
    if values is None:
        return None
    if not ((values >= 2) & (values <= 4)).any():
        logger.warning("%s: skipped: no myocardium (labels 2-4) in %s", subject_id, path)
        return None
    resampled = resample_inplane(Volume(values, volume.affine), PIXEL_MM, order=0)
    label = resampled.array
    centre = lv_centre(label)
    roi, _ = crop_roi(label, centre, ROI_SIZE)
    if int((roi > 0).sum()) < int((label > 0).sum()):
        logger.warning("%s: the %d mm ROI cuts off part of the LV", subject_id, ROI_SIZE)
    reversed_stack = bool(aha.apex_first(roi))
    if reversed_stack:
        logger.debug("%s: the stack runs apex to base; reversed to base to apex", subject_id)
        roi = roi[:, :, ::-1]
    slice_spacing = round(float(resampled.spacing[2]), 4)
    anatomy = strip_infarct(roi)
    wall = wall_from_label(anatomy, (PIXEL_MM, PIXEL_MM, slice_spacing), rv_insertion_deg)
    if wall.n == 0:
        logger.warning("%s: skipped: no myocardium left in the %d mm ROI", subject_id, ROI_SIZE)
        return None
    features = descriptors(anatomy, slice_spacing)
    return Subject(subject_id, np.ascontiguousarray(roi), anatomy, slice_spacing, wall, features, reversed_stack)


def load_subjects(
    root: str | os.PathLike,
    rv_insertion_deg: float | None = None,
    split: str | None = None,
    option: str = "--recipients-split",
) -> list[Subject]:
    """Every usable labelled case under ``root`` (of ``split`` for a prepared folder, see
    :func:`find_subjects`); unusable ones are skipped with a logged reason.

    Raises:
        InputError: no case under ``root`` could be used, or see :func:`find_subjects`.
    """
    found = find_subjects(root, split, option)
    subjects = [s for sid, path in found if (s := load_subject(sid, path, rv_insertion_deg)) is not None]
    if not subjects:
        raise InputError(f"{root}: no usable recipient (every case was skipped; see the log)")
    flipped = sum(s.reversed_stack for s in subjects)
    logger.info(
        "loaded %d subjects from %s%s (%d read apex to base and reversed)",
        len(subjects),
        root,
        f" ({split} split)" if split else "",
        flipped,
    )
    return subjects


def inject(subject: Subject, spec: InfarctSpec, rng: np.random.Generator) -> tuple[np.ndarray, Growth]:
    """Grow ``spec``'s infarct on ``subject``'s anatomy; returns the new label and the growth."""
    growth = grow_infarct(subject.wall, spec, rng)
    label = subject.wall.paint(subject.anatomy, growth.infarct, growth.no_reflow)
    enclose_no_reflow(label)
    return label, growth
