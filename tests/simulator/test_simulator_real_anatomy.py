"""Masks from real anatomy: recipients, donors and references from one split of a prepared
folder only, and stacks that run apex to base read base to apex.

The prepared folder is a small fixture in the layout of ``cardiac-mi prepare`` (``cases.json``
with each case's split, ``nifti/<case>/Contours/<case>.nii.gz``), made from the phantom cases of
``sample-data/emidec``; nothing here needs the real data.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cardiac_mi.commands.simulate import register
from lgemri.aha import apex_first
from lgemri.errors import InputError
from lgemri.volume import Volume, read_nifti, write_nifti
from simulator import SimulationConfig, realism_report, simulate
from simulator.hybrid import load_subject, load_subjects

SAMPLE = Path(__file__).resolve().parents[2] / "sample-data" / "emidec"
SPLIT = {"Case_P001": "train", "Case_P002": "train", "Case_N003": "train", "Case_P004": "val"}
TRAIN = sorted(c for c, s in SPLIT.items() if s == "train")


@pytest.fixture
def prepared(tmp_path) -> Path:
    """A prepared folder: three train cases and one val case (the val one has an infarct)."""
    root = tmp_path / "prep"
    for case_id in SPLIT:
        shutil.copytree(SAMPLE / case_id, root / "nifti" / case_id)
    infos = {c: {"group": c[5], "split": s} for c, s in SPLIT.items()}
    (root / "cases.json").write_text(json.dumps(infos), encoding="utf-8")
    return root


def run(*argv: str) -> None:
    parser = argparse.ArgumentParser(prog="cardiac-mi")
    parser.add_argument("-q", "--quiet", action="store_true")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["-q", "simulate", *argv])
    args.func(args)


def used_cases(manifest: Path) -> set[str]:
    with open(manifest, newline="", encoding="utf-8") as f:
        return {r[k] for r in csv.DictReader(f) for k in ("recipient", "donor") if r[k]}


# -- recipients of one split ------------------------------------------------------------------


def test_only_the_named_split_is_loaded(prepared):
    assert [s.subject_id for s in load_subjects(prepared, split="train")] == TRAIN
    assert [s.subject_id for s in load_subjects(prepared, split="val")] == ["Case_P004"]
    # its nifti/ folder is the same prepared folder: the split is needed there too
    assert [s.subject_id for s in load_subjects(prepared / "nifti", split="train")] == TRAIN


@pytest.mark.parametrize("mode", ["hybrid", "fusion"])
def test_a_run_uses_train_cases_only(prepared, tmp_path, mode):
    out = tmp_path / mode
    run("--mode", mode, "--recipients", str(prepared), "--recipients-split", "train", "--n", "8", "--out", str(out))
    used = used_cases(out / "manifest.csv")
    assert used and used <= set(TRAIN)
    assert json.loads((out / "simulate.json").read_text())["recipients_split"] == "train"


@pytest.mark.parametrize(
    ("where", "split", "match"),
    [
        ("prep", None, "prepared folder .*choose one with --recipients-split"),
        ("prep/nifti", None, "prepared folder"),
        ("prep", "test", "no case in the test split"),
        ("emidec", "train", "--recipients-split train needs a prepared folder"),
    ],
)
def test_other_routes_are_refused(prepared, tmp_path, where, split, match):
    shutil.copytree(SAMPLE, tmp_path / "emidec")
    with pytest.raises(InputError, match=match):
        load_subjects(tmp_path / where, split=split)


def test_a_case_of_the_split_without_its_label_is_named(prepared):
    shutil.rmtree(prepared / "nifti" / "Case_P002" / "Contours")
    with pytest.raises(InputError, match="train case Case_P002 has no label"):
        load_subjects(prepared, split="train")


def test_unreadable_cases_json_is_an_input_error(prepared):
    (prepared / "cases.json").write_text("[1, 2", encoding="utf-8")
    with pytest.raises(InputError, match="cases.json"):
        load_subjects(prepared, split="train")


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--mode", "hybrid", "--recipients", "{prep}", "--n", "1", "--out", "{tmp}/x"], "--recipients-split"),
        (["--recipients-split", "train", "--n", "1", "--out", "{tmp}/x"], "--recipients-split goes with"),
        (["--report", "{tmp}/sim", "--reference", "{prep}"], "--reference-split"),
        (["--report", "{tmp}/sim", "--reference", "{emidec}", "--reference-split", "train"], "none was given"),
        (["--report", "{tmp}/sim", "--recipients-split", "train"], "--reference-split"),
        (["--n", "1", "--out", "{tmp}/x", "--reference-split", "train"], "go with --report"),
    ],
)
def test_cli_refuses_splitless_and_misplaced_splits(prepared, tmp_path, argv, match):
    simulate(SimulationConfig(n=2, seed=0, formats=("npy",)), tmp_path / "sim")
    fill = {"prep": str(prepared), "tmp": str(tmp_path), "emidec": str(SAMPLE)}
    with pytest.raises(InputError, match=match):
        run(*(a.format(**fill) for a in argv))
    assert not (tmp_path / "x" / "manifest.csv").exists()


def test_unknown_split_is_an_argparse_error(prepared):
    with pytest.raises(SystemExit):
        run("--mode", "hybrid", "--recipients", str(prepared), "--recipients-split", "all", "--n", "1", "--out", "x")


def test_report_against_one_split(prepared, tmp_path):
    simulate(SimulationConfig(n=3, seed=1, formats=("npy",)), tmp_path / "sim")
    summary = json.loads(realism_report(tmp_path / "sim", references=[prepared], reference_split="train").read_text())
    (reference,) = summary["references"]
    assert reference["cases"] == 3 and reference["infarcted"] == 2
    assert "train split" in reference["name"] and "train split" in reference["kind"]
    summary = json.loads(realism_report(tmp_path / "sim", references=[prepared], reference_split="val").read_text())
    assert summary["references"][0]["cases"] == 1


# -- stack orientation ------------------------------------------------------------------------


def test_an_apex_first_stack_is_read_base_to_apex(tmp_path):
    path = SAMPLE / "Case_P002" / "Contours" / "Case_P002.nii.gz"
    volume = read_nifti(path)
    flipped = tmp_path / "Case_P002.nii.gz"
    write_nifti(Volume(np.ascontiguousarray(volume.array[:, :, ::-1]), volume.affine), flipped)
    original, reread = load_subject("Case_P002", path), load_subject("Case_P002", flipped)
    assert not original.reversed_stack and reread.reversed_stack
    assert np.array_equal(original.label, reread.label)
    assert np.array_equal(original.wall.segment, reread.wall.segment)
    assert np.allclose(original.descriptors, reread.descriptors)


def test_apex_first_needs_a_clearly_narrow_first_end():
    stack = np.zeros((20, 20, 6), np.uint8)
    for k, r in enumerate([3, 4, 6, 7, 8, 8]):
        stack[10 - r : 10 + r, 10 - r : 10 + r, k] = 2
    assert apex_first(stack) is True and apex_first(stack[:, :, ::-1]) is False
    stack[:, :, :] = 0
    stack[5:15, 5:15, 1:5] = 2  # a cylinder: no narrow end, kept as given
    assert apex_first(stack) is None and apex_first(stack[:, :, ::-1]) is None
    assert apex_first(stack[:, :, :2]) is None
    stack[8:12, 8:12, 2:5] = 1  # a cavity on every slice but the first: the apex cap decides
    assert apex_first(stack) is True and apex_first(stack[:, :, ::-1]) is False
