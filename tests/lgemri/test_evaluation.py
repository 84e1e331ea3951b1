"""Tests for lgemri.evaluation: matching, metrics files, box plots, bad input, the sub-command."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest

from cardiac_mi.commands.evaluate import register
from lgemri.errors import InputError
from lgemri.evaluation import CSV_FIELDS, evaluate, find_labels
from lgemri.metrics import EMIDEC_METRICS
from lgemri.volume import Volume, write_nifti

SHAPE = (40, 40, 4)
SPACING = (1.5, 2.0, 8.0)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def affine(shift: float = 0.0) -> np.ndarray:
    a = np.diag([*SPACING, 1.0])
    a[:3, 3] = (-30.0 + shift, 20.0, 5.0)
    return a


def ring(outer=(8, 32), inner=(12, 28), infarct=True) -> np.ndarray:
    label = np.zeros(SHAPE, np.uint8)
    label[outer[0] : outer[1], outer[0] : outer[1], :] = 2
    label[inner[0] : inner[1], inner[0] : inner[1], :] = 1
    if infarct:
        label[outer[0] : outer[1], inner[1] : outer[1], 1:3] = 3
        label[outer[0] : outer[0] + 6, inner[1] : inner[1] + 1, 1:3] = 4
    return label


TRUTHS = {
    "Case_P001": ring(),
    "Case_N002": ring(infarct=False),
    "Case_P003": ring(),
}
PREDICTIONS = {
    "Case_P001": ring(),  # perfect
    "Case_N002": ring(outer=(9, 31), inner=(11, 29), infarct=False),  # wall eroded by one pixel
    "Case_P003": ring(infarct=False),  # infarct missed
}


def write(path: Path, array: np.ndarray, aff: np.ndarray | None = None) -> Path:
    return write_nifti(Volume(array, affine() if aff is None else aff), path)


def write_flat(folder: Path, labels: dict[str, np.ndarray]) -> Path:
    for case_id, array in labels.items():
        write(folder / f"{case_id}.nii.gz", array)
    return folder


def write_emidec(folder: Path, labels: dict[str, np.ndarray], dtype=np.float64) -> Path:
    for case_id, array in labels.items():
        write(folder / case_id / "Contours" / f"{case_id}.nii.gz", array.astype(dtype))
        write(folder / case_id / "Images" / f"{case_id}.nii.gz", np.zeros(SHAPE, np.float32))
    return folder


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_find_labels_both_layouts(tmp_path):
    write_flat(tmp_path / "flat", {"a": ring()})
    (tmp_path / "flat" / "notes.txt").write_text("x")
    (tmp_path / "flat" / ".a.nii.gz.tmp.nii.gz").write_bytes(b"")
    write(tmp_path / "flat" / "b.nii", ring())
    assert list(find_labels(tmp_path / "flat")) == ["a", "b"]
    write_emidec(tmp_path / "emidec", {"Case_P001": ring()})
    found = find_labels(tmp_path / "emidec")
    assert found == {"Case_P001": tmp_path / "emidec" / "Case_P001" / "Contours" / "Case_P001.nii.gz"}


def test_evaluate_flat_end_to_end(tmp_path):
    pred = write_flat(tmp_path / "pred", PREDICTIONS)
    truth = write_flat(tmp_path / "truth", TRUTHS)
    out = tmp_path / "out"
    summary = evaluate(pred, truth, out)

    rows = read_csv(out / "metrics.csv")
    assert tuple(rows[0]) == CSV_FIELDS
    assert [row["case_id"] for row in rows] == ["Case_N002", "Case_P001", "Case_P003", "mean"]
    by_case = {row["case_id"]: {k: (v if k == "case_id" else float(v)) for k, v in row.items()} for row in rows}
    perfect = by_case["Case_P001"]
    assert perfect["dice_myocardium"] == perfect["dice_infarct"] == perfect["dice_no_reflow"] == 1.0
    assert perfect["hausdorff_myocardium_mm"] == 0.0 and perfect["volume_diff_infarct_mm3"] == 0.0
    eroded = by_case["Case_N002"]
    assert eroded["dice_myocardium"] == pytest.approx(2 * 640 / (1280 + 640))
    assert eroded["hausdorff_myocardium_mm"] == pytest.approx(2.5)
    missed = by_case["Case_P003"]
    assert missed["dice_infarct"] == 0.0 and missed["dice_myocardium"] == 1.0
    mean = by_case["mean"]
    for field in EMIDEC_METRICS:
        assert mean[field] == pytest.approx(np.mean([by_case[c][field] for c in TRUTHS]))
    assert mean["class_lv_cavity_dice"] < 1.0

    saved = json.loads((out / "metrics.json").read_text())
    assert saved == summary
    assert set(saved) == {"metadata", "mean", "cases"}
    meta = saved["metadata"]
    assert meta["n_cases"] == 3 and meta["case_ids"] == ["Case_N002", "Case_P001", "Case_P003"]
    assert meta["truth_dir"] == str(truth.resolve()) and meta["labels"]["4"] == "no_reflow"
    assert meta["boundary_tolerance_mm"] == 2.0
    case = saved["cases"]["Case_N002"]
    assert case["spacing_mm"] == list(SPACING)
    assert case["prediction"].endswith("Case_N002.nii.gz")
    assert case["emidec"]["dice_myocardium"] == pytest.approx(eroded["dice_myocardium"])
    assert set(case["classes"]) == {"background", "lv_cavity", "myocardium", "infarct", "no_reflow"}
    assert case["classes"]["no_reflow"]["sensitivity"] is None  # no no-reflow in the truth: undefined
    assert saved["mean"]["emidec"]["dice_infarct"] == pytest.approx(mean["dice_infarct"])
    assert meta["excluded_from_mean"] == {"class_infarct_sensitivity": 1, "class_no_reflow_sensitivity": 1}

    png = (out / "boxplots.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 5000
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_evaluate_emidec_layouts_and_float_labels(tmp_path):
    pred = write_emidec(tmp_path / "pred", PREDICTIONS, dtype=np.float32)
    truth = write_emidec(tmp_path / "truth", TRUTHS)
    summary = evaluate(pred, truth, tmp_path / "out")
    assert summary["cases"]["Case_P001"]["emidec"]["dice_infarct"] == 1.0
    # Mixed: flat predictions against EMIDEC-layout truth, one truth case left unpredicted.
    flat = write_flat(tmp_path / "flat", {k: v for k, v in PREDICTIONS.items() if k != "Case_P003"})
    summary = evaluate(flat, truth, tmp_path / "out2")
    assert summary["metadata"]["case_ids"] == ["Case_N002", "Case_P001"]
    assert summary["metadata"]["truth_without_prediction"] == ["Case_P003"]
    assert len(read_csv(tmp_path / "out2" / "metrics.csv")) == 3


def test_evaluate_infinite_hausdorff(tmp_path):
    pred = write_flat(tmp_path / "pred", {"Case_P001": np.zeros(SHAPE, np.uint8), "Case_P003": ring()})
    truth = write_flat(tmp_path / "truth", TRUTHS)
    summary = evaluate(pred, truth, tmp_path / "out")
    rows = read_csv(tmp_path / "out" / "metrics.csv")
    assert rows[0]["case_id"] == "Case_P001" and math.isinf(float(rows[0]["hausdorff_myocardium_mm"]))
    assert summary["cases"]["Case_P001"]["emidec"]["hausdorff_myocardium_mm"] is None
    assert summary["mean"]["emidec"]["hausdorff_myocardium_mm"] == 0.0  # the finite one only
    assert summary["metadata"]["excluded_from_mean"]["hausdorff_myocardium_mm"] == 1
    assert (tmp_path / "out" / "boxplots.png").read_bytes().startswith(PNG_SIGNATURE)


# --- bad input ----------------------------------------------------------------------------------


@pytest.fixture
def truth_dir(tmp_path) -> Path:
    return write_flat(tmp_path / "truth", TRUTHS)


def test_no_predictions(tmp_path, truth_dir):
    (tmp_path / "pred").mkdir()
    (tmp_path / "pred" / "readme.txt").write_text("nothing here")
    with pytest.raises(InputError, match="no predictions found"):
        evaluate(tmp_path / "pred", truth_dir, tmp_path / "out")
    with pytest.raises(InputError, match="prediction folder not found"):
        evaluate(tmp_path / "missing", truth_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_predictions_without_truth_are_listed(tmp_path, truth_dir):
    pred = write_flat(tmp_path / "pred", {"Case_P001": ring(), "Case_P009": ring(), "Case_X": ring()})
    with pytest.raises(InputError, match="no truth for 2 prediction") as info:
        evaluate(pred, truth_dir, tmp_path / "out")
    assert "Case_P009" in str(info.value) and "Case_X" in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no truth labels found"):
        evaluate(pred, tmp_path / "empty", tmp_path / "out")


def test_shape_mismatch_names_both_files(tmp_path, truth_dir):
    pred = tmp_path / "pred"
    write(pred / "Case_P001.nii.gz", np.zeros((40, 40, 5), np.uint8))
    with pytest.raises(InputError, match="shape") as info:
        evaluate(pred, truth_dir, tmp_path / "out")
    message = str(info.value)
    assert str(pred / "Case_P001.nii.gz") in message and str(truth_dir / "Case_P001.nii.gz") in message


def test_geometry_mismatch_names_both_files(tmp_path, truth_dir):
    pred = tmp_path / "pred"
    write(pred / "Case_P001.nii.gz", ring(), affine(shift=0.5))
    with pytest.raises(InputError, match="affine") as info:
        evaluate(pred, truth_dir, tmp_path / "out")
    assert "pred/Case_P001.nii.gz" in str(info.value) and "truth/Case_P001.nii.gz" in str(info.value)


def test_non_integer_labels(tmp_path, truth_dir):
    pred = tmp_path / "pred"
    values = ring().astype(np.float32)
    values[20, 20, 1] = 1.5
    write(pred / "Case_P001.nii.gz", values)
    with pytest.raises(InputError, match=r"integers, found 1\.5 at voxel \(20, 20, 1\)"):
        evaluate(pred, truth_dir, tmp_path / "out")


def test_out_of_range_labels(tmp_path, truth_dir):
    pred = tmp_path / "pred"
    values = ring()
    values[0, 0, 0] = 7
    write(pred / "Case_P001.nii.gz", values)
    with pytest.raises(InputError, match=r"Case_P001.nii.gz: label values must lie in 0..4, found 7"):
        evaluate(pred, truth_dir, tmp_path / "out")
    bad_truth = write_flat(tmp_path / "bad_truth", {"Case_P001": ring()})
    write(bad_truth / "Case_P001.nii.gz", np.full(SHAPE, -1, np.int16))
    write(pred / "Case_P001.nii.gz", ring())
    with pytest.raises(InputError, match="bad_truth/Case_P001.nii.gz: label values must lie in 0..4"):
        evaluate(pred, bad_truth, tmp_path / "out")


def test_unreadable_and_duplicate_files(tmp_path, truth_dir):
    pred = tmp_path / "pred"
    pred.mkdir()
    (pred / "Case_P001.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(InputError, match="not a readable NIfTI"):
        evaluate(pred, truth_dir, tmp_path / "out")
    write(pred / "Case_P001.nii.gz", ring())
    write(pred / "Case_P001" / "Contours" / "Case_P001.nii.gz", ring())
    with pytest.raises(InputError, match="Case_P001 given twice"):
        evaluate(pred, truth_dir, tmp_path / "out")


# --- the sub-command -------------------------------------------------------------------------


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="test")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_register_evaluate_subcommand(tmp_path, truth_dir, caplog):
    pred = write_flat(tmp_path / "pred", PREDICTIONS)
    out = tmp_path / "out"
    args = make_parser().parse_args(["evaluate", "--pred", str(pred), "--truth", str(truth_dir), "--out", str(out)])
    assert args.command == "evaluate" and args.pred == pred and args.out == out
    with caplog.at_level(logging.INFO, logger="cardiac_mi"):
        args.func(args)
    text = caplog.text
    assert "mean over 3 case(s): Dice myocardium 0.889" in text
    assert "Hausdorff myocardium 0.83 mm" in text
    assert (out / "metrics.csv").is_file() and (out / "metrics.json").is_file() and (out / "boxplots.png").is_file()


def test_register_bad_input_raises_input_error(tmp_path, truth_dir):
    parser = make_parser()
    argv = ["evaluate", "--pred", str(tmp_path / "nope"), "--truth", str(truth_dir), "--out", str(tmp_path)]
    args = parser.parse_args(argv)
    with pytest.raises(InputError, match="nope: prediction folder not found"):
        args.func(args)
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "--pred", str(tmp_path)])  # --truth and --out are required


def test_evaluate_replaces_previous_results(tmp_path, truth_dir):
    pred = write_flat(tmp_path / "pred", {"Case_P001": ring()})
    out = tmp_path / "out"
    evaluate(pred, truth_dir, out)
    write(pred / "Case_P003.nii.gz", ring())
    evaluate(pred, truth_dir, out)
    assert len(read_csv(out / "metrics.csv")) == 3
    assert json.loads((out / "metrics.json").read_text())["metadata"]["n_cases"] == 2
