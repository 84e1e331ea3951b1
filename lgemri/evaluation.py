"""Score predicted EMIDEC label volumes against the reference labels, case by case.

:func:`evaluate` matches prediction files to truth files by case id, computes the EMIDEC
challenge metrics and the two-stage paper's per-class metrics (:mod:`lgemri.metrics`) and
writes, each atomically, into the output folder::

    metrics.csv     one row per case and a last row ``mean``
    boxplots.png    box plots of the Dice of each structure and of the myocardium's Hausdorff
                    distance over the cases
    metrics.json    {"metadata", "mean", "cases"}, written last

Both folders may be flat (``<case_id>.nii.gz`` or ``.nii``) or in the EMIDEC layout
(``<case_id>/Contours/<case_id>.nii.gz``); the two may differ.
``cardiac-mi evaluate`` (:mod:`cardiac_mi.commands.evaluate`) runs it.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import logging
import math
import os
from pathlib import Path

import numpy as np

from . import __version__
from .atomic import atomic_path, write_text
from .errors import InputError
from .labels import LABEL_NAMES, as_label
from .metrics import CLASS_METRICS, EMIDEC_METRICS, class_metrics, emidec_metrics
from .volume import Volume, read_nifti

__all__ = ["evaluate", "find_labels", "LAYOUTS", "CSV_FIELDS", "BOUNDARY_TOLERANCE_MM"]

logger = logging.getLogger(__name__)

BOUNDARY_TOLERANCE_MM = 2.0
AFFINE_TOLERANCE_MM = 1e-3
NIFTI_SUFFIXES = (".nii.gz", ".nii")
CLASS_FIELDS = tuple(f"class_{name}_{metric}" for name in LABEL_NAMES.values() for metric in CLASS_METRICS)
#: Columns of ``metrics.csv``: the case id, the EMIDEC metrics, then ``class_<name>_<metric>``.
CSV_FIELDS = ("case_id", *EMIDEC_METRICS, *CLASS_FIELDS)
LAYOUTS = "<case_id>.nii.gz files or <case_id>/Contours/<case_id>.nii.gz folders"
_BOXPLOT_DICE = (
    ("cavity", "class_lv_cavity_dice"),
    ("myocardium", "dice_myocardium"),
    ("infarct", "dice_infarct"),
    ("no-reflow", "dice_no_reflow"),
)


def _case_id(name: str) -> str | None:
    """The file name without its NIfTI suffix, or None for other (or hidden) files."""
    if name.startswith("."):
        return None
    lower = name.lower()
    for suffix in NIFTI_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def find_labels(folder: str | os.PathLike, role: str = "label") -> dict[str, Path]:
    """The label files in ``folder`` by case id, sorted by case id.

    A file ``<folder>/<case_id>.nii.gz`` (or ``.nii``) has the case id of its name; a file
    ``<folder>/<case_id>/Contours/<case_id>.nii.gz`` (the EMIDEC layout) that of its folder. Hidden
    files (such as half-written temporary ones) are ignored.

    Args:
        folder: The folder to search.
        role: What the files are (``prediction``, ``truth``), for error messages.

    Returns:
        ``{case_id: path}``, possibly empty.

    Raises:
        InputError: ``folder`` is not a folder, or two files claim the same case id.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: {role} folder not found")
    found: dict[str, Path] = {}

    def add(case_id: str, path: Path) -> None:
        if case_id in found:
            raise InputError(f"{path}: {role} for case {case_id} given twice (also {found[case_id]})")
        found[case_id] = path

    for entry in sorted(folder.iterdir()):
        if entry.is_file():
            case_id = _case_id(entry.name)
            if case_id is not None:
                add(case_id, entry)
        elif entry.is_dir() and not entry.name.startswith("."):
            for suffix in NIFTI_SUFFIXES:
                path = entry / "Contours" / f"{entry.name}{suffix}"
                if path.is_file():
                    add(entry.name, path)
    return dict(sorted(found.items()))


def _label_values(volume: Volume, path: Path) -> np.ndarray:
    """The label array as uint8 after checking it holds integers 0..4."""
    return as_label(volume.array, path)


def _read_pair(pred_path: Path, truth_path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read and check one prediction and its truth; return both arrays and the spacing (mm)."""
    truth = read_nifti(truth_path)
    pred = read_nifti(pred_path)
    truth_values = _label_values(truth, truth_path)
    pred_values = _label_values(pred, pred_path)
    if pred.shape != truth.shape:
        raise InputError(f"{pred_path}: shape {pred.shape} differs from the truth {truth_path} shape {truth.shape}")
    diff = float(np.abs(pred.affine - truth.affine).max())
    if diff > AFFINE_TOLERANCE_MM:
        raise InputError(
            f"{pred_path}: voxel-to-patient affine differs from the truth {truth_path} affine by up to {diff:.4g} mm"
        )
    return pred_values, truth_values, truth.spacing


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _mean(rows: list[dict], field: str) -> tuple[float, int]:
    """Mean of the finite values of a column and how many values were left out."""
    values = np.array([row[field] for row in rows], dtype=float)
    finite = values[np.isfinite(values)]
    return (float(finite.mean()) if finite.size else float("nan")), int(values.size - finite.size)


def _nest(flat: dict[str, float]) -> dict:
    """``{"emidec": {...}, "classes": {name: {...}}}`` from a flat row, non-finite values None."""
    return {
        "emidec": {key: _finite_or_none(flat[key]) for key in EMIDEC_METRICS},
        "classes": {
            name: {metric: _finite_or_none(flat[f"class_{name}_{metric}"]) for metric in CLASS_METRICS}
            for name in LABEL_NAMES.values()
        },
    }


def _csv_text(rows: list[dict], mean_row: dict) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in [*rows, mean_row]:
        writer.writerow({key: (row[key] if key == "case_id" else repr(float(row[key]))) for key in CSV_FIELDS})
    return buffer.getvalue()


def _write_boxplots(path: Path, rows: list[dict]) -> None:
    """Box plots of the Dice per structure and of the myocardium's Hausdorff distance."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 4.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax_dice, ax_hd = fig.subplots(1, 2, width_ratios=(3, 1))
    dice_data = [[row[field] for row in rows] for _, field in _BOXPLOT_DICE]
    ax_dice.boxplot(dice_data, tick_labels=[name for name, _ in _BOXPLOT_DICE])
    ax_dice.set_ylim(-0.05, 1.05)
    ax_dice.set_ylabel("Dice")
    ax_dice.set_title(f"Dice per structure ({len(rows)} cases)")
    hd = [row["hausdorff_myocardium_mm"] for row in rows if math.isfinite(row["hausdorff_myocardium_mm"])]
    if hd:
        ax_hd.boxplot([hd], tick_labels=["myocardium"])
    else:
        ax_hd.text(0.5, 0.5, "no finite value", ha="center", va="center", transform=ax_hd.transAxes)
        ax_hd.set_xticks([])
    ax_hd.set_ylabel("Hausdorff distance (mm)")
    ax_hd.set_title("Hausdorff distance")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def evaluate(pred_dir: str | os.PathLike, truth_dir: str | os.PathLike, out_dir: str | os.PathLike) -> dict:
    """Score every prediction in ``pred_dir`` against its truth in ``truth_dir``.

    Predictions and truths are found by :func:`find_labels` and matched by case id. Truth cases
    without a prediction are skipped with a warning (and listed in the metadata). Per case the
    EMIDEC metrics (:func:`lgemri.metrics.emidec_metrics`) and the per-class metrics
    (:func:`lgemri.metrics.class_metrics`, boundary tolerance :data:`BOUNDARY_TOLERANCE_MM`)
    are computed with the truth's voxel spacing.

    The mean of a metric is taken over its finite values: an infinite Hausdorff distance (one
    of the two labels has no myocardium) or an undefined sensitivity/specificity (NaN) is left
    out, and ``metadata.excluded_from_mean`` counts how many were. The CSV writes such values
    as ``inf``/``nan``; JSON has no such numbers, so ``metrics.json`` holds ``null`` for them.

    Args:
        pred_dir: Folder of predicted label volumes (values 0..4).
        truth_dir: Folder of reference label volumes.
        out_dir: Output folder (created if needed); ``metrics.csv``, ``boxplots.png`` and
            ``metrics.json`` there are replaced.

    Returns:
        The contents written to ``metrics.json``: ``{"metadata": {...}, "mean": {"emidec":
        {...}, "classes": {...}}, "cases": {case_id: {"prediction", "truth", "spacing_mm",
        "emidec", "classes"}}}``.

    Raises:
        InputError: A folder is missing; no prediction is found; predictions have no truth
            (all are listed); a prediction and its truth differ in shape or affine (both files
            named); a file is unreadable or holds values that are not integers 0..4.
    """
    pred_dir, truth_dir, out_dir = Path(pred_dir), Path(truth_dir), Path(out_dir)
    predictions = find_labels(pred_dir, "prediction")
    if not predictions:
        raise InputError(f"{pred_dir}: no predictions found (expected {LAYOUTS})")
    truths = find_labels(truth_dir, "truth")
    if not truths:
        raise InputError(f"{truth_dir}: no truth labels found (expected {LAYOUTS})")
    missing = [case_id for case_id in predictions if case_id not in truths]
    if missing:
        shown = ", ".join(missing[:20]) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
        raise InputError(f"{truth_dir}: no truth for {len(missing)} prediction(s) of {pred_dir}: {shown}")
    unpredicted = [case_id for case_id in truths if case_id not in predictions]
    if unpredicted:
        logger.warning("%d truth case(s) without a prediction skipped: %s", len(unpredicted), ", ".join(unpredicted))

    rows: list[dict] = []
    cases: dict[str, dict] = {}
    for case_id, pred_path in predictions.items():
        truth_path = truths[case_id]
        pred, truth, spacing = _read_pair(pred_path, truth_path)
        scores = emidec_metrics(pred, truth, spacing)
        per_class = class_metrics(pred, truth, spacing, BOUNDARY_TOLERANCE_MM)
        row = {"case_id": case_id, **scores}
        row.update({f"class_{n}_{m}": v for n, values in per_class.items() for m, v in values.items()})
        rows.append(row)
        cases[case_id] = {
            "prediction": str(pred_path),
            "truth": str(truth_path),
            "spacing_mm": [round(float(s), 6) for s in spacing],
            **_nest(row),
        }
        logger.debug(
            "%s: Dice myocardium %.3f, infarct %.3f, no-reflow %.3f; HD %.2f mm",
            case_id,
            scores["dice_myocardium"],
            scores["dice_infarct"],
            scores["dice_no_reflow"],
            scores["hausdorff_myocardium_mm"],
        )

    mean_row: dict = {"case_id": "mean"}
    excluded: dict[str, int] = {}
    for field in CSV_FIELDS[1:]:
        mean_row[field], n_out = _mean(rows, field)
        if n_out:
            excluded[field] = n_out
    summary = {
        "metadata": {
            "tool": "lgemri.evaluation",
            "lgemri_version": __version__,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "pred_dir": str(pred_dir.resolve()),
            "truth_dir": str(truth_dir.resolve()),
            "n_cases": len(rows),
            "case_ids": [row["case_id"] for row in rows],
            "truth_without_prediction": unpredicted,
            "labels": {str(value): name for value, name in LABEL_NAMES.items()},
            "structures": {"myocardium": [2, 3, 4], "infarct": [3, 4], "no_reflow": [4]},
            "boundary_tolerance_mm": BOUNDARY_TOLERANCE_MM,
            "definitions": {
                "dice_<structure>": "3D Dice of the EMIDEC structure; 1 when both are empty",
                "volume_diff_<structure>_mm3": "|V_pred - V_truth| in mm^3",
                "ratio_diff_<structure>_pct": "|r_pred - r_truth|, r = 100 * V_structure / V_myocardium",
                "hausdorff_myocardium_mm": "3D symmetric Hausdorff distance of the surfaces, mm; "
                "null when exactly one label has no myocardium",
                "classes": "per class c (label == c): Dice, IoU, boundary F1 (2D contours per slice, "
                "tolerance boundary_tolerance_mm), sensitivity and specificity (null when undefined)",
                "mean": "mean over the cases of the finite values; excluded_from_mean counts the others",
            },
            "excluded_from_mean": excluded,
        },
        "mean": _nest(mean_row),
        "cases": cases,
    }
    _write_boxplots(out_dir / "boxplots.png", rows)
    write_text(out_dir / "metrics.csv", _csv_text(rows, mean_row))
    write_text(out_dir / "metrics.json", json.dumps(summary, indent=2, allow_nan=False) + "\n")
    logger.info("evaluated %d case(s); wrote %s", len(rows), out_dir / "metrics.json")
    return summary
