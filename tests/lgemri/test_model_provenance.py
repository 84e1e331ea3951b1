"""Hygiene of the shipped models' training data: only the shared real data and our own
generators, and no case in two splits."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from lgemri.inference import default_models_dir
from lgemri.training.provenance import data_provenance, origin_of

MODELS = default_models_dir()
REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "emidec-png"
ALLOWED = {"emidec-png", "phantom", "generated"}  # the shared real data and the project's generators


def _provenance(name: str) -> list[dict]:
    extra = torch.load(MODELS / name, map_location="cpu", weights_only=True)["extra"]
    assert "provenance" in extra, f"{name}: the checkpoint does not record its training data"
    return extra["provenance"]


@pytest.mark.parametrize("name", ["localization.pt", "segmentation.pt"])
def test_shipped_models_learned_only_from_the_shared_real_data_and_our_generators(name):
    for source in _provenance(name):
        assert source["origins"], f"{name}: source {source['source']} records no origin"
        assert set(source["origins"]) <= ALLOWED, f"{name}: source {source['source']} has {source['origins']}"


@pytest.mark.parametrize("name", ["localization.pt", "segmentation.pt"])
def test_no_case_of_a_shipped_model_is_in_two_splits(name):
    seen: dict[str, str] = {}
    for source in _provenance(name):
        for split, ids in source["splits"].items():
            for case_id in ids:
                key = f"{source['source']}:{case_id}" if "phantom" in source["origins"] else case_id
                assert seen.setdefault(key, split) == split, f"{name}: {case_id} is in {seen[key]} and {split}"


@pytest.mark.skipif(not REAL.is_dir(), reason=f"the real EMIDEC PNG data are not at {REAL}")
@pytest.mark.parametrize("name", ["localization.pt", "segmentation.pt"])
def test_the_real_cases_of_a_shipped_model_are_cases_of_the_shared_data(name):
    with (REAL / "manifest.csv").open(newline="") as fh:
        shared = {row["case"] for row in csv.DictReader(fh)}
    real = [s for s in _provenance(name) if "emidec-png" in s["origins"]]
    assert real, f"{name}: trained without the real EMIDEC slices"
    for source in real:
        ids = {c for split in source["splits"].values() for c in split}
        assert ids <= shared, f"{name}: cases not in {REAL}: {sorted(ids - shared)[:5]}"
        assert source["splits"].get("train"), f"{name}: no real training case"


def test_provenance_tells_real_phantom_and_foreign_data_apart(tmp_path):
    (tmp_path / "ph" / "emidec" / "Case_P001" / "Images").mkdir(parents=True)
    (tmp_path / "ph" / "phantom.json").write_text("{}")
    assert (
        origin_of(str(tmp_path / "ph" / "emidec" / "Case_P001" / "Images" / "Case_P001.nii.gz"), "nifti") == "phantom"
    )
    assert origin_of("/data/shared/data/emidec-png/images/Case_P001_slice000.png", "png") == "emidec-png"
    assert origin_of("/downloads/emidec/Case_P001/Images/Case_P001.nii.gz", "nifti") == "emidec-nifti"
    assert origin_of("/elsewhere/pngs/Case_P001_slice000.png", "png") == "other"
    prepared = tmp_path / "prep"
    prepared.mkdir()
    (prepared / "cases.json").write_text(
        json.dumps(
            {
                "Case_P001": {
                    "split": "train",
                    "image_path": "/x/emidec-png/images/Case_P001_slice000.png",
                    "layout": "png",
                },
                "Case_N002": {
                    "split": "val",
                    "image_path": "/x/emidec-png/images/Case_N002_slice000.png",
                    "layout": "png",
                },
            }
        )
    )
    (record,) = data_provenance([(str(prepared), 2.0)])
    assert record["origins"] == {"emidec-png": 2}
    assert record["splits"] == {"train": ["Case_P001"], "val": ["Case_N002"]}
