"""The checkpoints shipped in models/ segment the sample studies and held-out real EMIDEC cases
(a guard against a broken model; the figures that describe the models are in the model card)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lgemri.geometry import lv_centre, resample_inplane
from lgemri.inference import default_models_dir, infer_file, load_models
from lgemri.metrics import dice
from lgemri.volume import read_nifti

SAMPLE = Path(__file__).resolve().parents[2] / "sample-data"
MODELS = default_models_dir()


@pytest.fixture(scope="module")
def models():
    return load_models(MODELS)


def test_checkpoints_are_small_and_documented():
    for name in ("localization.pt", "segmentation.pt"):
        assert (MODELS / name).stat().st_size <= 10 * 1024 * 1024
    assert "Trained on" in (MODELS / "MODEL_CARD.md").read_text()


@pytest.mark.parametrize("case", ["Case_P001", "Case_N003"])
def test_sample_study_from_dicom(models, tmp_path, case):
    label_path, json_path = infer_file(SAMPLE / "dicom" / case, tmp_path, models)
    pred = read_nifti(label_path)
    truth = read_nifti(SAMPLE / "emidec" / case / "Contours" / f"{case}.nii.gz")
    assert pred.shape == truth.shape and np.allclose(pred.affine, truth.affine, atol=1e-3)
    # the models learn mostly from real LGE; on the phantom they score myocardium 0.84 (model card)
    assert dice(np.isin(pred.array, (2, 3, 4)), np.isin(truth.array, (2, 3, 4))) >= 0.7
    assert dice(pred.array == 1, truth.array == 1) >= 0.85
    summary = json.loads(json_path.read_text())
    grid = resample_inplane(truth, 1.0, order=0)
    ci, cj = lv_centre(grid.array)
    centre = (grid.affine @ np.array([ci, cj, grid.shape[2] // 2, 1.0]))[:3]
    assert np.linalg.norm(np.asarray(summary["roi"]["centre_ras_mm"]) - centre) <= 5.0
    expected = "normal" if case.startswith("Case_N") else "pathological"
    assert summary["quantification"]["classification"]["label"] == expected


REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "emidec-png"


@pytest.mark.skipif(not REAL.is_dir(), reason=f"the real EMIDEC PNG data are not at {REAL}")
def test_held_out_real_cases_through_infer(models, tmp_path):
    """The models' own test split (seed 0, never used to train or tune) through the whole cascade."""
    from lgemri.emidec import prepare_dataset

    prepared = tmp_path / "real"
    prepare_dataset(REAL, prepared)
    cases = json.loads((prepared / "cases.json").read_text())
    real_sources = [s for s in models.meta["segmentation"]["provenance"] if "emidec-png" in s["origins"]]
    trained_on = {c for s in real_sources for c in s["splits"].get("train", [])}
    held_out = sorted(c for c, info in cases.items() if info["split"] == "test")
    assert held_out and not set(held_out) & trained_on
    myo, cavity = [], []
    for case in held_out:
        label_path, _ = infer_file(prepared / "nifti" / case / "Images" / f"{case}.nii.gz", tmp_path / "out", models)
        pred = read_nifti(label_path).array
        truth = read_nifti(prepared / "nifti" / case / "Contours" / f"{case}.nii.gz").array
        myo.append(dice(np.isin(pred, (2, 3, 4)), np.isin(truth, (2, 3, 4))))
        cavity.append(dice(pred == 1, truth == 1))
    assert np.mean(myo) >= 0.75 and min(myo) >= 0.4, myo
    assert np.mean(cavity) >= 0.85, cavity
