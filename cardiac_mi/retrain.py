"""Active-learning retraining: fine-tune the published segmentation model on clinicians' labels.

The MONAI Label trainer (``apps/cardiac_mi/lib/trainers/segmentation.py``) is a thin layer over
:func:`retrain`, which runs these steps into one run folder:

1. :func:`prepare_pairs`: the datastore's final labels, ``(image, label)`` pairs on the same grid,
   become a prepared folder (:func:`lgemri.emidec.write_case_slices`, the code path of
   ``cardiac-mi prepare``), split by case into train and val (at least :data:`MIN_VALIDATION_CASES`
   held out when there are more cases; earlier validation cases stay in validation and the served
   model's training cases in training). Validation uses real labels only; with a single case the
   model is validated on its own training case, and the result says so (and it is never published).
2. :func:`synthesize_slices`: infarct masks from the simulator (seeded) are painted into LGE
   images by the GAN (:func:`gan.synthesize.synthesize`), a prepared folder of training slices.
3. :func:`training_sources`: both folders become weighted sources so that a fraction
   ``synthetic_ratio`` of the training draws is synthetic (:func:`sampling_weights`). 0.5 is the
   reference paper's mixed dataset, 5,000 real and 5,000 GAN slices (Omar N. et al., "Web-Based
   Cardiac Delayed Enhanced MRI Segmentation Using Deep Learning and Synthetic Data
   Augmentation", section 3.4.C). The default is ``0``: real slices only, nothing synthesized,
   because on real EMIDEC cases the paper's mixed dataset did no better than real slices alone
   (the ablation through ``cardiac-mi infer`` in gan/README.md: MD - ARD infarct Dice +0.005
   [-0.03, +0.04], myocardium -0.007, 3 seeds each).
4. :func:`lgemri.training.train` fine-tunes the current checkpoint (``init``) and scores it on
   the same validation slices before the first epoch. Without a current checkpoint it trains
   the shipped network's architecture from scratch.
5. Publishing: with the default policy ``review`` nothing is published; a person publishes the
   run's model after seeing its figures (:func:`publish_reviewed`, the viewer's Active Learning
   tab). ``if_better`` (mean real-validation Dice above the current model's) and ``always``
   publish by themselves, ``never`` does not. Whatever the policy, :func:`publish_problem`
   refuses a model validated on fewer than :data:`MIN_VALIDATION_CASES` labelled cases held out
   of its training. :func:`publish` copies the checkpoint over ``<models>/segmentation.pt``
   atomically (the previous one kept as ``segmentation.prev.pt``, which :func:`rollback` serves
   again); the infer tasks reload a checkpoint whose mtime or size changed, so the server serves
   the new model without a restart. ``published.json`` records every publish and rollback, and
   ``train_progress.json`` what a running retraining is doing.
6. ``<models>/train_stats.json`` records the run (:func:`read_stats`).

Layering: :mod:`lgemri` imports neither the simulator nor the GAN at import time;
:func:`synthesize_slices` imports them when it runs (only with a synthetic ratio above 0).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BeforeValidator, Field

from lgemri.atomic import atomic_path, write_text
from lgemri.config import Checked, Count, NonNegativeInt, Positive
from lgemri.emidec import EmidecCase, case_category, split_cases, validate_label, write_case_slices, write_manifest
from lgemri.errors import InputError
from lgemri.images import read_image
from lgemri.labels import LABEL_NAMES, NUM_CLASSES, myocardium_mask

__all__ = [
    "DEFAULT_SYNTHETIC_RATIO",
    "PUBLISH_POLICIES",
    "SYNTHETIC_MODES",
    "STATS_FILE",
    "RetrainConfig",
    "prepare_pairs",
    "synthetic_count",
    "synthesize_slices",
    "sampling_weights",
    "training_sources",
    "publish",
    "publish_problem",
    "publish_reviewed",
    "rollback",
    "PublishRefused",
    "file_sha256",
    "served_entry",
    "MIN_VALIDATION_CASES",
    "retrain",
    "read_stats",
    "read_progress",
    "read_published",
]

logger = logging.getLogger(__name__)

#: Share of GAN draws when not asked (see the module docstring: GAN slices did not help on real cases).
DEFAULT_SYNTHETIC_RATIO = 0.0
PUBLISH_POLICIES = ("review", "if_better", "always", "never")
SYNTHETIC_MODES = ("synthetic", "hybrid")
STATS_FILE = "train_stats.json"
PROGRESS_FILE = "train_progress.json"
PUBLISHED_FILE = "published.json"
CHECKPOINT = "segmentation.pt"
PREVIOUS = "segmentation.prev.pt"
# Publishing needs at least this many labelled cases held out for validation (never trained on): with one,
# the before/after Dice is one patient's and says little; two is the least that is not one case's luck, and
# keeps the loop usable with the few labels of a first session (3 labelled series: 1 trains, 2 validate).
MIN_VALIDATION_CASES = 2
_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")


# --------------------------------------------------------------------------------------------
# real labels -> prepared folder


def _image_id(image: Path) -> str:
    """The image's name without ``.nii.gz``/``.nii`` (MONAI Label's local datastore's image id)."""
    name = image.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _pair_paths(pair: Any, number: int) -> tuple[Path, Path, str]:
    """``(image, label, image_id)`` of one training pair."""
    image_id = None
    if isinstance(pair, Mapping):
        image, label, image_id = pair.get("image"), pair.get("label"), pair.get("image_id")
    elif isinstance(pair, (tuple, list)) and len(pair) == 2:
        image, label = pair
    else:
        raise InputError(f"training pair {number}: expected {{'image': path, 'label': path}}, got {pair!r}")
    if not isinstance(image, (str, os.PathLike)) or not isinstance(label, (str, os.PathLike)):
        raise InputError(f"training pair {number}: 'image' and 'label' must both be paths, got {image!r}, {label!r}")
    return Path(image), Path(label), str(image_id) if image_id else _image_id(Path(image))


def _case_id(image_id: str, taken: set[str]) -> str:
    """A file-name-safe, unique case id for an image id (``Case_P001`` stays ``Case_P001``)."""
    base = _SAFE_ID.sub("_", image_id).strip("._") or "case"
    case_id, n = base, 2
    while case_id in taken:
        case_id, n = f"{base}_{n}", n + 1
    taken.add(case_id)
    return case_id


def _split_train_val(
    categories: dict[str, str], val_fraction: float, seed: int, min_val: int = 1, fixed: Mapping[str, str] | None = None
) -> tuple[dict[str, str], bool]:
    """``({case_id: "train" | "val"}, validated_on_training)``; one case is both (returned True).

    ``fixed`` cases keep their split (``train`` or ``val``: the served model's training cases and the
    earlier runs' validation cases); the others are split by ``val_fraction``, stratified, and then
    training cases are moved to validation until ``min(min_val, cases - 1)`` are held out."""
    if len(categories) == 1:
        return {next(iter(categories)): "train"}, True
    fixed = {c: s for c, s in (fixed or {}).items() if c in categories and s in ("train", "val")}
    free = {c: g for c, g in categories.items() if c not in fixed}
    split = dict(fixed)
    if free:
        split.update(split_cases(free.items(), (1.0 - val_fraction, val_fraction, 0.0), seed))
    wanted = max(1, min(min_val, len(categories) - 1))
    rng = np.random.default_rng([seed, 0x7A1])
    while sum(s == "val" for s in split.values()) < wanted:
        # hold out one more free training case, of the largest category among them
        by_category: dict[str, list[str]] = {}
        for case_id in sorted(free):
            if split[case_id] == "train":
                by_category.setdefault(free[case_id], []).append(case_id)
        if not by_category:
            break
        largest = max(sorted(by_category), key=lambda c: len(by_category[c]))
        split[by_category[largest][int(rng.integers(len(by_category[largest])))]] = "val"
    if "train" not in split.values():
        movable = sorted(c for c in split if c in free) or sorted(split)
        split[movable[0]] = "train"
    return split, False


def prepare_pairs(
    pairs: Iterable[Any],
    out: str | os.PathLike,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    spacing: float = 1.0,
    roi_size: int = 128,
    min_val_cases: int = 1,
    fixed_split: Mapping[str, str] | None = None,
) -> dict:
    """Turn ``(image, label)`` pairs into a prepared folder split by case into train and val.

    Each image (NIfTI or DICOM series folder) and its label (EMIDEC classes 0-4 on the image's
    grid) are checked with :func:`lgemri.emidec.validate_label`, resampled in-plane to
    ``spacing`` mm and written as ``prepare`` writes them (``slices/``, ``roi/`` crops around
    the labelled LV, ``cases.json``, ``manifest.csv`` last). A label without any myocardium is
    skipped with a warning (it cannot place the ROI). The split is stratified by category
    (normal, infarct, no-reflow) with at least ``min_val_cases`` validation cases (one with two cases);
    a single case is listed under both train and val.

    Args:
        pairs: ``{"image": path, "label": path}`` dicts (MONAI Label's ``datastore.datalist()``;
            an ``image_id`` key names the case, else the image's file name) or
            ``(image, label)`` tuples.
        out: The prepared folder to write (created).
        val_fraction: Share of the cases held out for validation, in (0, 1).
        seed: Seed of the split.
        spacing: In-plane voxel size in mm.
        roi_size: Side of the LV crop in voxels.
        min_val_cases: Hold out at least this many cases (at most all but one) for validation;
            the retraining asks for :data:`MIN_VALIDATION_CASES`, the publish gate's minimum.
        fixed_split: ``{image_id: "train" | "val"}`` of cases whose split is already decided
            (labels the served model learned from stay in training; earlier validation cases
            stay in validation, so they are never trained on).

    Returns:
        ``{"out", "manifest", "cases": {case_id: {"image_id", "image", "label", "split",
        "category", "slices"}}, "train_cases", "val_cases", "slices": {"train", "val"}, "validation":
        "held_out" | "training_case", "skipped": [{"image", "label", "reason"}]}``.

    Raises:
        InputError: No pair, a bad pair, an unreadable or mismatched image/label, a bad
            ``val_fraction``, or no usable label.
    """
    if not (math.isfinite(val_fraction) and 0.0 < val_fraction < 1.0):
        raise InputError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction}")
    pairs = [_pair_paths(p, n) for n, p in enumerate(pairs)]
    if not pairs:
        raise InputError("no labelled image to train on: save a final (corrected) label for at least one image first")
    out = Path(out)
    rows_by_case: dict[str, list[dict]] = {}
    infos: dict[str, dict] = {}
    sources: dict[str, tuple[Path, Path, str]] = {}
    skipped: list[dict] = []
    taken: set[str] = set()
    for image_path, label_path, image_id in pairs:
        image = read_image(image_path)
        label = validate_label(read_image(label_path), image, label_path, image_path)
        if not myocardium_mask(label.array).any():
            logger.warning("%s: label has no myocardium; pair skipped", label_path)
            skipped.append(
                {
                    "image_id": image_id,
                    "image": str(image_path),
                    "label": str(label_path),
                    "reason": "no myocardium in the label",
                }
            )
            continue
        case_id = _case_id(image_id, taken)
        group = "N" if case_category(label.array) == "normal" else "P"
        case = EmidecCase(case_id, group, image, label, {}, image_path, label_path)
        rows_by_case[case_id], infos[case_id] = write_case_slices(case, out, spacing, roi_size)
        sources[case_id] = (image_path, label_path, image_id)
    if not infos:
        raise InputError(f"none of the {len(pairs)} labels holds myocardium: nothing to train on")

    fixed = {c: (fixed_split or {}).get(sources[c][2]) for c in infos}
    split, on_training = _split_train_val(
        {c: i["category"] for c, i in infos.items()},
        val_fraction,
        seed,
        min_val_cases,
        {c: s for c, s in fixed.items() if s},
    )
    rows: list[dict] = []
    for case_id, case_rows in rows_by_case.items():
        infos[case_id]["split"] = "train+val" if on_training else split[case_id]
        rows.extend({**row, "split": split[case_id]} for row in case_rows)
        if on_training:
            rows.extend({**row, "split": "val"} for row in case_rows)
    manifest = write_manifest(out, rows, infos)
    if on_training:
        logger.warning("one labelled case only: validating on its training slices (the score is optimistic)")
    train_cases = sorted(c for c, s in split.items() if s == "train")
    val_cases = train_cases if on_training else sorted(c for c, s in split.items() if s == "val")
    result = {
        "out": str(out),
        "manifest": str(manifest),
        "cases": {
            c: {
                "image_id": sources[c][2],
                "image": str(sources[c][0]),
                "label": str(sources[c][1]),
                "split": infos[c]["split"],
                "category": infos[c]["category"],
                "slices": infos[c]["n_slices"],
            }
            for c in infos
        },
        "train_cases": train_cases,
        "val_cases": val_cases,
        "slices": {
            "train": sum(1 for r in rows if r["split"] == "train"),
            "val": sum(1 for r in rows if r["split"] == "val"),
        },
        "validation": "training_case" if on_training else "held_out",
        "skipped": skipped,
    }
    logger.info(
        "prepared %d labelled cases (%d train, %d val slices) in %s",
        len(infos),
        result["slices"]["train"],
        result["slices"]["val"],
        out,
    )
    return result


# --------------------------------------------------------------------------------------------
# synthetic slices and the mix


def _check_ratio(ratio: float) -> float:
    try:
        ratio = float(ratio)
    except (TypeError, ValueError):
        raise InputError(f"synthetic_ratio must be a number in [0, 1), got {ratio!r}") from None
    if not (math.isfinite(ratio) and 0.0 <= ratio < 1.0):
        raise InputError(f"synthetic_ratio must lie in [0, 1) (the share of synthetic training draws), got {ratio}")
    return ratio


def synthetic_count(real_slices: int, ratio: float) -> int:
    """How many synthetic slices make ``ratio`` of the draws when every slice is drawn equally
    often: ``ceil(real * ratio / (1 - ratio))`` (equal numbers at 0.5, as in the paper); 0 at 0."""
    ratio = _check_ratio(ratio)
    if ratio == 0.0 or real_slices <= 0:
        return 0
    return max(1, math.ceil(real_slices * ratio / (1.0 - ratio) - 1e-9))


def sampling_weights(real_slices: int, synthetic_slices: int, ratio: float) -> tuple[float, float]:
    """Per-slice sampling weights ``(real, synthetic)`` so that ``ratio`` of the draws are synthetic.

    ``real * w_real : synthetic * w_syn = (1 - ratio) : ratio``, scaled so that the mean weight
    over all slices is 1 (``(1, 0)`` when there is no synthetic slice or ``ratio`` is 0).

    Raises:
        InputError: ``ratio`` outside [0, 1), no real slice, or a ratio above 0 without
            synthetic slices.
    """
    ratio = _check_ratio(ratio)
    if real_slices <= 0:
        raise InputError("no real training slice: the synthetic share needs real slices to mix with")
    if ratio == 0.0:
        return 1.0, 0.0
    if synthetic_slices <= 0:
        raise InputError(f"synthetic_ratio {ratio} needs synthetic slices, got none")
    total = real_slices + synthetic_slices
    return (1.0 - ratio) * total / real_slices, ratio * total / synthetic_slices


def training_sources(real: str | os.PathLike, synthetic: str | os.PathLike | None, ratio: float) -> list:
    """The :class:`~lgemri.training.config.TrainConfig` ``data`` of a real and a synthetic prepared
    folder mixed at ``ratio`` (weights from their ``train`` slice counts); the real folder alone
    when ``ratio`` is 0 or ``synthetic`` is None."""
    from lgemri.training.data import read_items

    ratio = _check_ratio(ratio)
    if ratio == 0.0 or synthetic is None:
        return [str(real)]
    n_real, n_syn = len(read_items(real, "train")), len(read_items(synthetic, "train"))
    w_real, w_syn = sampling_weights(n_real, n_syn, ratio)
    return [(str(real), w_real), (str(synthetic), w_syn)]


def _recipients(label_paths: Sequence[Path], folder: Path) -> Path:
    """An EMIDEC-layout folder of links to real labels (the hybrid simulator's recipients)."""
    for number, label in enumerate(label_paths, start=1):
        case_id = f"Case_P{number:04d}"
        suffix = ".nii.gz" if label.name.lower().endswith(".nii.gz") else ".nii"
        if not label.name.lower().endswith((".nii", ".nii.gz")):
            raise InputError(f"{label}: hybrid synthesis needs NIfTI labels")
        link = folder / case_id / "Contours" / f"{case_id}{suffix}"
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(label.resolve())
    return folder


def synthesize_slices(
    count: int,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    checkpoint: str | os.PathLike | None = None,
    mode: str = "synthetic",
    recipients: Sequence[str | os.PathLike] = (),
    device: str = "cpu",
) -> dict:
    """At least ``count`` synthetic training slices: simulator masks -> GAN images.

    The simulator (:func:`simulator.simulate`, seeded by ``seed``) makes ``ceil(count / 6)``
    stacks of 6 or more slices into ``out/masks``; :func:`gan.synthesize.synthesize` paints an
    LGE image onto every mask into ``out/slices``, a prepared folder of ``train`` slices.

    Args:
        count: Slices wanted (at least 1; a few more may come).
        out: Folder of the two steps (``masks/``, ``slices/``).
        seed: Simulator seed.
        checkpoint: GAN checkpoint (default :func:`gan.synthesize.default_checkpoint_path`).
        mode: ``synthetic`` (LV anatomy drawn from physiological ranges) or ``hybrid`` (infarcts
            grown on the anatomy of ``recipients``, the real training labels).
        recipients: NIfTI label files for ``hybrid``.
        device: Torch device of the generator.

    Returns:
        ``{"folder", "slices", "cases", "mode", "seed", "checkpoint", "checkpoint_sha256"}``.

    Raises:
        InputError: ``count`` below 1, an unknown mode, hybrid without recipients, a missing
            GAN checkpoint or a simulator/GAN input error.
    """
    from gan.synthesize import synthesize
    from simulator import SimulationConfig, simulate

    if count < 1:
        raise InputError(f"synthetic slice count must be at least 1, got {count}")
    if mode not in SYNTHETIC_MODES:
        raise InputError(f"unknown synthetic mode {mode!r}; choose from {', '.join(SYNTHETIC_MODES)}")
    out = Path(out)
    folder = None
    if mode == "hybrid":
        if not recipients:
            raise InputError("hybrid synthesis needs real labels as recipients")
        folder = _recipients([Path(p) for p in recipients], out / "recipients")
    cases = math.ceil(count / 6)
    config = SimulationConfig(mode=mode, n=cases, seed=int(seed), recipients=folder, formats=("npy",))
    made = simulate(config, out / "masks")
    if made.masks == 0:
        raise InputError(f"the simulator made no mask ({made.skipped} cases skipped; see the log)")
    result = synthesize(out / "masks", out / "slices", checkpoint, device=device, overwrite=True)
    logger.info("synthesized %d slices (%d %s cases, seed %d) in %s", result["count"], made.cases, mode, seed, out)
    return {
        "folder": str(out / "slices"),
        "slices": int(result["count"]),
        "cases": int(made.cases),
        "mode": mode,
        "seed": int(seed),
        "checkpoint": result["checkpoint"],
        "checkpoint_sha256": result["checkpoint_sha256"],
    }


# --------------------------------------------------------------------------------------------
# publishing


def _sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str | None:
    """SHA-256 of a file (a checkpoint), None when there is none."""
    return _sha256(Path(path))


def _copy_atomic(source: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())


def _decide(
    policy: str, new_score: float | None, current_score: float | None, current_exists: bool
) -> tuple[bool, str]:
    if policy == "never":
        return False, "policy 'never': trained and scored only"
    if policy == "review":
        return False, "policy 'review': the new model waits for a person to publish it"
    if new_score is None or not math.isfinite(new_score):
        return False, "the new model has no validation score"
    if policy == "always":
        return True, "policy 'always'"
    if not current_exists:
        return True, "no current model"
    if current_score is None or not math.isfinite(current_score):
        return True, "the current model has no validation score on these slices"
    if new_score > current_score:
        return True, f"validation Dice {new_score:.4f} > current {current_score:.4f}"
    return False, f"validation Dice {new_score:.4f} is not above the current model's {current_score:.4f}"


def publish(
    checkpoint: str | os.PathLike,
    models_dir: str | os.PathLike,
    *,
    policy: str = "if_better",
    new_score: float | None = None,
    current_score: float | None = None,
    expected_sha256: str | None = None,
    name: str = CHECKPOINT,
) -> dict:
    """Make ``checkpoint`` the served model ``<models_dir>/<name>`` when ``policy`` allows.

    The checkpoint is loaded first (it must be a ``segmentation`` model checkpoint). The current
    file is copied to ``segmentation.prev.pt`` and the new one copied in under a temporary name
    and renamed over it (``os.replace``), so a reader sees the old or the new file, never a
    partial one, and the infer tasks reload it on their next request (mtime and size change).

    Args:
        checkpoint: The run's ``best.pt``.
        models_dir: The models folder the server reads.
        policy: ``if_better`` (publish when ``new_score`` is above ``current_score``, the mean
            real-validation Dice of both models on the same slices; or when there is no current
            model), ``always`` (whenever the new model has a score) or ``never``.
        new_score, current_score: The two validation scores (None: not available).
        expected_sha256: The SHA-256 of the current file when ``current_score`` was measured;
            if the file has changed since (another run published), ``if_better`` refuses: the
            scores are no longer comparable.
        name: File name of the served checkpoint.

    Returns:
        ``{"published": bool, "reason", "policy", "path", "previous"}`` (``previous``: the
        kept ``segmentation.prev.pt`` or None).

    Raises:
        InputError: Unknown policy, or a checkpoint that is missing or not a segmentation model.
    """
    from lgemri.nets.checkpoint import load_checkpoint

    if policy not in PUBLISH_POLICIES:
        raise InputError(f"unknown publish policy {policy!r}; choose from {', '.join(PUBLISH_POLICIES)}")
    checkpoint, models_dir = Path(checkpoint), Path(models_dir)
    target = models_dir / name
    previous = models_dir / name.replace(".pt", ".prev.pt")
    load_checkpoint(checkpoint, task="segmentation")  # refuse a broken or foreign file before touching anything
    published, reason = _decide(policy, new_score, current_score, target.is_file())
    if published and policy == "if_better" and expected_sha256 is not None and _sha256(target) != expected_sha256:
        published, reason = False, f"{target} changed during training (another run published); scores not comparable"
    result = {"published": published, "reason": reason, "policy": policy, "path": str(target), "previous": None}
    if not published:
        logger.info("not publishing %s: %s", checkpoint, reason)
        return result
    models_dir.mkdir(parents=True, exist_ok=True)
    if target.is_file():
        _copy_atomic(target, previous)
        result["previous"] = str(previous)
    _copy_atomic(checkpoint, target)
    logger.info("published %s as %s (%s)", checkpoint, target, reason)
    return result


# --------------------------------------------------------------------------------------------
# review: the publish gate, a person's publish, rollback, the progress a viewer shows


class PublishRefused(InputError):
    """A publish or rollback that is refused; the message says why and what to do (HTTP 409)."""


def _local_now() -> str:
    """Local time as MONAI Label stamps its tasks (``start_ts``), to tell which run a progress file is of."""
    return datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")


def _write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(_plain(data), indent=2, allow_nan=False) + "\n")


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        logger.warning("%s: unreadable (%s)", path, exc)
        return default


def write_progress(models_dir: str | os.PathLike, progress: Mapping[str, Any]) -> None:
    """Write ``<models>/train_progress.json`` (atomically): what the running or last retraining is doing."""
    _write_json(Path(models_dir) / PROGRESS_FILE, {**progress, "updated": _now()})


def read_progress(models_dir: str | os.PathLike) -> dict:
    """The last ``train_progress.json`` ({} when there is none or it is unreadable)."""
    found = _read_json(Path(models_dir) / PROGRESS_FILE, {})
    return found if isinstance(found, dict) else {}


def read_published(models_dir: str | os.PathLike) -> list[dict]:
    """``<models>/published.json``: every publish and rollback of the served model, oldest first."""
    found = _read_json(Path(models_dir) / PUBLISHED_FILE, [])
    return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []


def _log_published(models_dir: Path, entry: Mapping[str, Any]) -> None:
    _write_json(models_dir / PUBLISHED_FILE, [*read_published(models_dir), {"at": _now(), **entry}])


def served_entry(models_dir: str | os.PathLike) -> dict | None:
    """The publish record of the model served now (the newest with its SHA-256); None for a model this
    server did not publish (the shipped one)."""
    sha = _sha256(Path(models_dir) / CHECKPOINT)
    for entry in reversed(read_published(models_dir)):
        if entry.get("action") == "publish" and sha is not None and entry.get("sha256") == sha:
            return entry
    return None


def _fixed_split(models_dir: Path) -> dict[str, str]:
    """Image ids whose split is decided: the served model's training labels stay in training, and earlier
    validation labels stay in validation (never trained on, so every later comparison stays fair)."""
    fixed: dict[str, str] = {}
    earlier = [read_stats(models_dir), *read_published(models_dir)]
    for record in earlier:
        for image_id in record.get("val_image_ids") or []:
            fixed[str(image_id)] = "val"
    served = served_entry(models_dir)
    for image_id in (served or {}).get("train_image_ids") or []:
        fixed[str(image_id)] = "train"
    return fixed


def _series(count: int) -> str:
    return f"{count} labelled series" if count != 1 else "1 labelled series"


def publish_problem(
    stats: Mapping[str, Any], models_dir: str | os.PathLike, min_val_cases: int = MIN_VALIDATION_CASES
) -> str | None:
    """Why the run of ``stats`` may not replace the served model (a message for the clinician), or None.

    A new model is publishable only when it was validated on at least ``min_val_cases`` labelled cases
    held out of its training, none of which the served model learned from; when both models have a
    validation score on those cases; when its checkpoint is still there; and when the served model is
    still the one it was compared with (its SHA-256 when the run started)."""
    models_dir = Path(models_dir)
    cases = stats.get("cases") or {}
    n_val, n_train = int(cases.get("val") or 0), int(cases.get("train") or 0)
    if cases.get("validation") == "training_case":
        return (
            f"Not published: the new model was checked only on the series it was trained on ({_series(n_train)}), "
            f"which says nothing about new patients. Publishing needs at least {min_val_cases} labelled series "
            f"held out of training for validation: label {max(1, min_val_cases + 1 - n_train)} more series, "
            "then press Update Model again."
        )
    if n_val < min_val_cases:
        return (
            f"Not published: only {_series(n_val)} was held out of training for validation; publishing needs at "
            f"least {min_val_cases}. Label {min_val_cases - n_val} more series, then press Update Model again."
        )
    served = served_entry(models_dir)
    overlap = sorted(set(stats.get("val_image_ids") or []) & set((served or {}).get("train_image_ids") or []))
    if overlap:
        return (
            f"Not published: the served model was trained on validation series {', '.join(overlap)}, so the "
            "comparison is not fair. Press Update Model again: those series now stay in training."
        )
    if stats.get("val_dice_after") is None or (stats.get("init") and stats.get("val_dice_before") is None):
        return "Not published: the new model has no validation score (see the server log), so it cannot be compared."
    candidate = Path(str(stats.get("best_checkpoint") or ""))
    if not candidate.is_file():
        return (
            f"Not published: the new model's file {candidate} is gone (its run folder was removed). Press "
            "Update Model again."
        )
    if stats.get("init_sha256", _sha256(models_dir / CHECKPOINT)) != _sha256(models_dir / CHECKPOINT):
        return (
            "Not published: the served model changed after this run compared against it (another model was "
            "published or rolled back), so its before/after figures no longer hold. Press Update Model again."
        )
    return None


def _figures(stats: Mapping[str, Any]) -> str:
    before, after = stats.get("val_dice_before"), stats.get("val_dice_after")
    n_val = int((stats.get("cases") or {}).get("val") or 0)
    shown = "none" if before is None else f"{before:.3f}"
    return f"validation Dice {shown} → {after:.3f} on {_series(n_val)} held out of training"


def _save_stats(models_dir: Path, stats: Mapping[str, Any]) -> None:
    run_stats = Path(str(stats.get("run_dir") or "")) / "stats.json"
    if run_stats.parent.is_dir():
        _write_json(run_stats, stats)
    _write_json(models_dir / STATS_FILE, stats)


def publish_reviewed(
    models_dir: str | os.PathLike, run: str | None = None, user: str = "", min_val_cases: int = MIN_VALIDATION_CASES
) -> dict:
    """Publish the last run's model after a person looked at its figures (``run``: the run folder's name they
    saw; a newer run is refused). The served model is kept as ``segmentation.prev.pt`` (:func:`rollback`).

    Returns:
        ``{"published": True, "run", "val_dice_before", "val_dice_after", "val_cases", "val_image_ids",
        "previous", "message"}``.

    Raises:
        PublishRefused: No finished run, a newer run than ``run``, a model served already, or a
            :func:`publish_problem`.
    """
    models_dir = Path(models_dir)
    stats = read_stats(models_dir)
    if not stats.get("best_checkpoint"):
        raise PublishRefused(
            "Nothing to publish: no training run has finished on this server yet. Press Update Model first."
        )
    name = Path(str(stats.get("run_dir") or "")).name
    if run is not None and run != name:
        raise PublishRefused(
            "Not published: another training run finished after these figures were shown. Look at "
            "its figures, then publish again."
        )
    target = models_dir / CHECKPOINT
    if _sha256(Path(stats["best_checkpoint"])) == _sha256(target):
        raise PublishRefused("This model is already the served model.")
    problem = publish_problem(stats, models_dir, min_val_cases)
    if problem:
        raise PublishRefused(problem)
    previous_sha = _sha256(target)
    outcome = publish(
        stats["best_checkpoint"],
        models_dir,
        policy="always",
        new_score=stats["val_dice_after"],
        current_score=stats.get("val_dice_before"),
    )
    reason = f"published after review by {user or 'a user'}: {_figures(stats)}"
    stats = {
        **stats,
        "published": True,
        "reason": reason,
        "review": "published",
        "published_at": _now(),
        "published_by": user,
        "previous": outcome["previous"],
    }
    _save_stats(models_dir, stats)
    _log_published(
        models_dir,
        {
            "action": "publish",
            "by": user,
            "sha256": _sha256(target),
            "replaced_sha256": previous_sha,
            "run_dir": stats.get("run_dir"),
            "train_image_ids": stats.get("train_image_ids") or [],
            "val_image_ids": stats.get("val_image_ids") or [],
            "val_dice_before": stats.get("val_dice_before"),
            "val_dice_after": stats.get("val_dice_after"),
        },
    )
    logger.info("%s", reason)
    return {
        "published": True,
        "run": name,
        "val_dice_before": stats.get("val_dice_before"),
        "val_dice_after": stats["val_dice_after"],
        "val_cases": stats["cases"]["val"],
        "val_image_ids": stats.get("val_image_ids") or [],
        "previous": outcome["previous"] is not None,
        "message": f"The new model is served now ({_figures(stats)}). The previous model is kept: Roll back "
        "returns to it.",
    }


def rollback(models_dir: str | os.PathLike, user: str = "") -> dict:
    """Serve ``segmentation.prev.pt`` again, byte for byte; the model it replaces becomes the previous one, so a
    second rollback returns to it. Each file is copied in under a temporary name and renamed.

    Returns:
        ``{"rolled_back": True, "sha256", "replaced_sha256", "message"}``.

    Raises:
        PublishRefused: No previous model, or a previous file that is not a segmentation checkpoint.
    """
    from lgemri.nets.checkpoint import load_checkpoint

    models_dir = Path(models_dir)
    target, previous = models_dir / CHECKPOINT, models_dir / PREVIOUS
    if not previous.is_file():
        raise PublishRefused("No previous model to go back to: no model has been published on this server yet.")
    try:
        load_checkpoint(previous, task="segmentation")
    except InputError as exc:
        raise PublishRefused(f"The previous model cannot be served: {exc}") from None
    restored, replaced = _sha256(previous), _sha256(target)
    if target.is_file():
        spare = models_dir / "segmentation.next.pt"
        _copy_atomic(target, spare)
        _copy_atomic(previous, target)
        os.replace(spare, previous)
    else:
        _copy_atomic(previous, target)
    _log_published(models_dir, {"action": "rollback", "by": user, "sha256": restored, "replaced_sha256": replaced})
    stats = read_stats(models_dir)
    if stats.get("published") and stats.get("best_checkpoint") and _sha256(Path(stats["best_checkpoint"])) == replaced:
        _save_stats(models_dir, {**stats, "review": "rolled_back", "rolled_back_at": _now(), "rolled_back_by": user})
    logger.info(
        "rolled back %s to the previous model (%s, replacing %s) by %s", target, restored, replaced, user or "a user"
    )
    return {
        "rolled_back": True,
        "sha256": restored,
        "replaced_sha256": replaced,
        "message": "The previous model is served again. The model it replaced is kept: Roll back again returns to it.",
    }


# --------------------------------------------------------------------------------------------
# the whole retraining


@dataclasses.dataclass
class RetrainConfig(Checked):
    """Settings of one :func:`retrain` run (the MONAI Label trainer's request and ``--conf`` keys).

    Attributes:
        synthetic_ratio: Share of the training draws that are GAN-synthesized, in [0, 1).
        synthetic_slices: Synthetic slices to make (None: :func:`synthetic_count` of the real
            training slices, equal numbers at 0.5).
        synthetic_mode: ``synthetic`` or ``hybrid`` masks (:func:`synthesize_slices`).
        gan_checkpoint: GAN checkpoint (None: the GAN package's default).
        max_epochs: Epochs of fine-tuning. An epoch is as many draws as there are real and
            synthetic training slices: with the automatic synthetic count every real slice is
            drawn once on average, plus the synthetic share on top (twice the steps at 0.5).
        max_steps_per_epoch: At most this many batches per epoch (None: all draws); equal
            steps make runs of different ratios comparable.
        batch_size: Slices per batch.
        lr: Initial Adam learning rate (cosine schedule over ``max_epochs``).
        val_fraction: Share of the labelled cases held out for validation.
        seed: Seed of the split, the simulator, the batch order and the augmentation.
        publish: ``if_better``, ``always`` or ``never`` (see :func:`publish`).
        device: ``auto``, ``cpu`` or ``cuda``.
    """

    synthetic_ratio: Annotated[float, BeforeValidator(_check_ratio)] = DEFAULT_SYNTHETIC_RATIO
    synthetic_slices: Count | None = None
    synthetic_mode: Literal[SYNTHETIC_MODES] = "synthetic"
    gan_checkpoint: str | os.PathLike | None = None
    max_epochs: Count = 5
    max_steps_per_epoch: Count | None = None
    batch_size: Count = 8
    lr: Annotated[Positive, Field(title="learning rate")] = 5e-5
    val_fraction: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] = 0.2
    seed: NonNegativeInt = 0
    publish: Annotated[Literal[PUBLISH_POLICIES], Field(title="publish policy")] = "review"
    device: str = "auto"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _dice_by_class(metrics: Mapping | None) -> dict | None:
    if not metrics:
        return None
    return {LABEL_NAMES[c]: metrics.get(f"dice_{LABEL_NAMES[c]}") for c in range(1, NUM_CLASSES)}


def _score(metrics: Mapping | None) -> float | None:
    value = None if not metrics else metrics.get("mean_dice")
    return float(value) if value is not None and math.isfinite(value) else None


def _init_settings(checkpoint: Path) -> dict:
    """Loss settings of the run that made ``checkpoint`` (fine-tuning keeps them)."""
    from lgemri.nets.checkpoint import load_checkpoint

    _, meta = load_checkpoint(checkpoint, task="segmentation")
    config = meta["extra"].get("config") or {}
    keys = ("loss", "dice_weight", "class_weighting", "class_weight_clip")
    settings = {k: config[k] for k in keys if config.get(k) is not None}
    settings["two_stage"] = bool(meta["extra"].get("two_stage", False))
    return settings


def retrain(
    pairs: Iterable[Any],
    models_dir: str | os.PathLike,
    run_dir: str | os.PathLike,
    config: RetrainConfig | None = None,
) -> dict:
    """Fine-tune the served segmentation model on real labels mixed with synthetic slices.

    See the module docstring for the steps. The run folder holds ``real/`` (the prepared real
    labels), ``synthetic/`` (masks and GAN slices), ``train/`` (the training run: ``best.pt``,
    ``history.json``, ``curves.png``, ...) and ``stats.json``; the same statistics go to
    ``<models_dir>/train_stats.json``.

    Args:
        pairs: The final labels, ``{"image", "label"}`` dicts or ``(image, label)`` tuples.
        models_dir: The folder of the served checkpoints (``segmentation.pt``).
        run_dir: A new or empty folder for this run.
        config: Settings (default :class:`RetrainConfig`).

    Returns:
        The statistics written to ``train_stats.json``: ``started``, ``finished``,
        ``duration_s`` (split in ``timings_s``: prepare, synthesize, train, publish),
        ``cases``, ``image_ids`` (of the labels used; skipped ones under ``cases.skipped``),
        ``slices``, ``synthetic_ratio``, ``sampling_weights``, ``epochs``, ``steps``,
        ``best_epoch``, ``val_dice_before``, ``val_dice_after`` (with ``val_dice_by_class``),
        ``published``, ``reason`` and the paths.

    Raises:
        InputError: No usable label, bad settings or data, a run folder already in use.
    """
    from lgemri.training import TrainConfig, train

    config = config or RetrainConfig()
    config.validate()
    models_dir, run_dir = Path(models_dir), Path(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise InputError(f"{run_dir}: run folder already in use; choose a new one")
    progress = {
        "state": "running",
        "phase": "preparing",
        "started": _now(),
        "started_local": _local_now(),
        "pid": os.getpid(),
        "run_dir": str(run_dir),
        "train_dir": str(run_dir / "train"),
        "epochs": config.max_epochs,
        "min_validation_cases": MIN_VALIDATION_CASES,
    }
    write_progress(models_dir, progress)
    try:
        stats = _retrain(pairs, models_dir, run_dir, config, progress, TrainConfig, train)
    except Exception as exc:
        message = str(exc) if isinstance(exc, InputError) else f"unexpected error ({type(exc).__name__}: {exc})"
        write_progress(models_dir, {**progress, "state": "failed", "finished": _now(), "message": message})
        raise
    write_progress(
        models_dir,
        {
            **progress,
            "state": "done",
            "phase": "done",
            "finished": stats["finished"],
            "published": stats["published"],
            "reason": stats["reason"],
        },
    )
    return stats


def _retrain(pairs, models_dir: Path, run_dir: Path, config: RetrainConfig, progress: dict, TrainConfig, train) -> dict:
    started, tick = progress["started"], time.perf_counter()
    current = models_dir / CHECKPOINT
    init = current if current.is_file() else None
    if init is None:
        logger.warning("%s not found: training from scratch", current)
    current_sha = _sha256(current)
    timings: dict[str, float] = {}

    real = prepare_pairs(
        pairs,
        run_dir / "real",
        val_fraction=config.val_fraction,
        seed=config.seed,
        min_val_cases=MIN_VALIDATION_CASES,
        fixed_split=_fixed_split(models_dir),
    )
    timings["prepare"] = time.perf_counter() - tick
    progress["cases"] = {
        "train": len(real["train_cases"]),
        "val": len(real["val_cases"]),
        "validation": real["validation"],
    }
    synthetic = None
    n_syn = 0
    if config.synthetic_ratio > 0:
        write_progress(models_dir, {**progress, "phase": "synthesizing"})
        wanted = config.synthetic_slices or synthetic_count(real["slices"]["train"], config.synthetic_ratio)
        recipients = [real["cases"][c]["label"] for c in real["train_cases"]]
        synthetic = synthesize_slices(
            wanted,
            run_dir / "synthetic",
            seed=config.seed,
            checkpoint=config.gan_checkpoint,
            mode=config.synthetic_mode,
            recipients=recipients,
        )
        n_syn = synthetic["slices"]
    timings["synthesize"] = time.perf_counter() - tick - sum(timings.values())
    data = training_sources(real["out"], synthetic["folder"] if synthetic else None, config.synthetic_ratio)
    weights = sampling_weights(real["slices"]["train"], n_syn, config.synthetic_ratio)

    settings = _init_settings(init) if init is not None else {"loss": "ce+dice", "channels": (8, 16, 32, 64, 96, 128)}
    train_config = TrainConfig(
        task="segmentation",
        data=data,
        out=str(run_dir / "train"),
        epochs=config.max_epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        seed=config.seed,
        init=None if init is None else str(init),
        max_steps_per_epoch=config.max_steps_per_epoch,
        device=config.device,
        progress=False,
        **settings,
    )
    write_progress(models_dir, {**progress, "phase": "training"})
    summary = train(train_config)
    timings["train"] = time.perf_counter() - tick - sum(timings.values())
    write_progress(models_dir, {**progress, "phase": "publishing"})
    before, after = _score(summary["init_metrics"]), _score(summary["best_metrics"])
    image_id = {c: info["image_id"] for c, info in real["cases"].items()}

    stats = {
        "task": "segmentation",
        "started": started,
        "cases": {
            "train": len(real["train_cases"]),
            "val": len(real["val_cases"]),
            "train_ids": real["train_cases"],
            "val_ids": real["val_cases"],
            "validation": real["validation"],
            "skipped": real["skipped"],
        },
        "image_ids": sorted(c["image_id"] for c in real["cases"].values()),
        "train_image_ids": sorted(image_id[c] for c in real["train_cases"]),
        "val_image_ids": (
            [] if real["validation"] == "training_case" else sorted(image_id[c] for c in real["val_cases"])
        ),
        "slices": {"real_train": real["slices"]["train"], "real_val": real["slices"]["val"], "synthetic": n_syn},
        "synthetic_ratio": config.synthetic_ratio,
        "sampling_weights": {"real": weights[0], "synthetic": weights[1]},
        "synthetic": synthetic,
        "epochs": summary["epochs_completed"],
        "steps": _steps(Path(summary["run_dir"])),
        "max_steps_per_epoch": config.max_steps_per_epoch,
        "best_epoch": summary["best_epoch"],
        "val_dice_before": before,
        "val_dice_after": after,
        "val_dice_by_class": {
            "before": _dice_by_class(summary["init_metrics"]),
            "after": _dice_by_class(summary["best_metrics"]),
        },
        "init": None if init is None else str(init),
        "init_sha256": current_sha,
        "run_dir": str(run_dir),
        "best_checkpoint": summary["best_checkpoint"],
        "min_validation_cases": MIN_VALIDATION_CASES,
    }
    problem = publish_problem(stats, models_dir)
    if problem is not None and config.publish in ("if_better", "always"):
        from lgemri.nets.checkpoint import load_checkpoint

        load_checkpoint(summary["best_checkpoint"], task="segmentation")
        outcome = {"published": False, "reason": problem, "path": str(current), "previous": None}
        logger.info("not publishing %s: %s", summary["best_checkpoint"], problem)
    else:
        outcome = publish(
            summary["best_checkpoint"],
            models_dir,
            policy=config.publish,
            new_score=after,
            current_score=before,
            expected_sha256=current_sha,
        )
    if config.publish == "review":
        outcome["reason"] = problem or (
            f"waiting for review: {_figures(stats)}; publish it from the viewer's Active "
            "Learning tab (or POST /viewer/training/publish)"
        )
    timings["publish"] = time.perf_counter() - tick - sum(timings.values())
    stats.update(
        {
            "finished": _now(),
            "duration_s": round(time.perf_counter() - tick, 1),
            "timings_s": {k: round(v, 2) for k, v in timings.items()},
            "published": outcome["published"],
            "reason": outcome["reason"],
            "review": "published"
            if outcome["published"]
            else (
                "pending" if problem is None and config.publish == "review" else "not_publishable" if problem else None
            ),
            "publishable": problem is None,
            "problem": problem,
            "policy": config.publish,
            "checkpoint": outcome["path"],
            "previous": outcome["previous"],
            "config": dataclasses.asdict(config),
        }
    )
    if outcome["published"]:
        _log_published(
            models_dir,
            {
                "action": "publish",
                "by": f"policy {config.publish}",
                "sha256": _sha256(current),
                "replaced_sha256": current_sha,
                "run_dir": str(run_dir),
                "train_image_ids": stats["train_image_ids"],
                "val_image_ids": stats["val_image_ids"],
                "val_dice_before": before,
                "val_dice_after": after,
            },
        )
    _save_stats(models_dir, stats)
    logger.info(
        "retrained on %d cases + %d synthetic slices: val Dice %s -> %s; %s (%s)",
        len(real["cases"]),
        n_syn,
        before,
        after,
        "published" if outcome["published"] else "not published",
        outcome["reason"],
    )
    return _plain(stats)


def _steps(train_dir: Path) -> int | None:
    """Optimizer steps of a training run, from its ``history.json``."""
    from lgemri.training.run_folder import RunFolder

    try:
        history = json.loads(RunFolder(train_dir).history.read_text(encoding="utf-8"))
        return int(sum(epoch["steps"] for epoch in history["epochs"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def read_stats(models_dir: str | os.PathLike) -> dict:
    """The last ``train_stats.json`` of ``models_dir`` ({} when there is none or it is unreadable)."""
    path = Path(models_dir) / STATS_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        logger.warning("%s: unreadable (%s)", path, exc)
        return {}
