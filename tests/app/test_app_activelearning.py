"""The epistemic strategy and the dice/epistemic scoring methods, in-process on MONAI Label's LocalDatastore.

The studies folder holds three phantom studies, a noisy copy of one of them and a corrupt file;
Case_P002 has its ground truth as final label.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("monailabel")

from fastapi import HTTPException  # noqa: E402

from lgemri.labels import myocardium_mask  # noqa: E402
from lgemri.metrics import dice  # noqa: E402
from lgemri.volume import Volume, read_nifti, write_nifti  # noqa: E402
from tests.helpers.app import MODELS, make_app  # noqa: E402

PASSES = 4  # conf mc_passes: half the default, to keep the tests short
UNLABELLED = ["Case_BAD", "Case_N003", "Case_NOISY", "Case_P001"]


def _make_app(studies: Path, models: Path, **conf):
    return make_app(studies, models, mc_passes=str(PASSES), **conf)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, phantom_dir):
    root = tmp_path_factory.mktemp("al")
    models = root / "models"  # a private models folder: its own model cache, checkpoints we may touch
    models.mkdir()
    for name in ("localization.pt", "segmentation.pt"):
        shutil.copy(MODELS / name, models / name)
    studies = root / "studies"
    (studies / "labels" / "final").mkdir(parents=True)
    for case in ("Case_P001", "Case_P002", "Case_N003"):
        shutil.copy(phantom_dir / "emidec" / case / "Images" / f"{case}.nii.gz", studies / f"{case}.nii.gz")
    shutil.copy(
        phantom_dir / "emidec" / "Case_P002" / "Contours" / "Case_P002.nii.gz",
        studies / "labels" / "final" / "Case_P002.nii.gz",
    )
    image = read_nifti(studies / "Case_P001.nii.gz")
    array = image.array.astype(np.float32)
    noisy = np.abs(array + np.random.default_rng(0).normal(0.0, 0.5 * array.std(), array.shape))  # SNR ~2
    write_nifti(Volume(noisy.astype(np.float32), image.affine), studies / "Case_NOISY.nii.gz")
    (studies / "Case_BAD.nii.gz").write_bytes(b"not a NIfTI file" * 64)
    app = _make_app(studies, models, max_candidates="0")
    app._auto_update_scoring = False  # in-process: no server to run MONAI Label's background scoring
    first = app.scoring({"method": "epistemic"})
    return {"app": app, "models": models, "studies": studies, "phantom": phantom_dir, "first": first}


def _info(app, image_id: str) -> dict:
    return app.datastore().get_image_info(image_id)


def test_info_lists_strategies_and_scoring(setup):
    info = setup["app"].info()
    assert {"random", "first", "epistemic"} <= set(info["strategies"])
    assert set(info["scoring"]) == {"dice", "epistemic"}
    assert info["strategies"]["epistemic"]["passes"] == PASSES


def test_epistemic_scoring_stores_scores_once_per_model(setup):
    app = setup["app"]
    assert sorted(app.datastore().get_unlabeled_images()) == UNLABELLED
    first = setup["first"]
    assert first["scored"] == 4 and first["unlabeled"] == 4 and first["remaining"] == 0
    assert set(first["errors"]) == {"Case_BAD"} and "not a readable NIfTI" in first["errors"]["Case_BAD"]
    records = {i: _info(app, i)["epistemic"] for i in UNLABELLED}
    for image_id in ("Case_N003", "Case_NOISY", "Case_P001"):
        record = records[image_id]
        assert record["model"] == first["model"] and record["passes"] == PASSES
        assert 0.0 < record["score"] < np.log(5) and record["region"] == "predicted_lv"
    assert records["Case_NOISY"]["score"] > 3 * records["Case_P001"]["score"]  # the noisy copy is the uncertain one
    assert "Case_P002" not in first["errors"] and "epistemic" not in _info(app, "Case_P002")  # labelled: not scored

    again = app.scoring({"method": "epistemic"})
    assert again["scored"] == 0 and again["current"] == 4  # nothing recomputed for the same checkpoints


def test_bad_scoring_parameter_is_a_client_error(setup):
    with pytest.raises(HTTPException) as bad:
        setup["app"].scoring({"method": "epistemic", "max_images": "lots"})
    assert bad.value.status_code == 422 and "max_images must be an integer" in bad.value.detail


def test_strategy_picks_the_most_uncertain_unlabelled_study(setup):
    app = setup["app"]
    result = app.next_sample({"strategy": "epistemic"})
    assert result["id"] == "Case_NOISY" and result["scored_now"] == 0
    assert result["epistemic_score"] == _info(app, "Case_NOISY")["epistemic"]["score"]
    assert result["path"].endswith("Case_NOISY.nii.gz")
    with pytest.raises(HTTPException) as bad:
        app.next_sample({"strategy": "epistemic", "max_candidates": -1})
    assert bad.value.status_code == 422


def test_strategy_skips_a_study_it_just_handed_out(setup):
    app = setup["app"]
    ds = app.datastore()
    info = _info(app, "Case_NOISY")
    ds.update_image_info(
        "Case_NOISY", {"strategy": {**info.get("strategy", {}), "epistemic": {"ts": int(time.time())}}}
    )
    try:
        second = app.next_sample({"strategy": "epistemic"})
        scores = {i: _info(app, i)["epistemic"]["score"] for i in ("Case_N003", "Case_P001")}
        assert second["id"] == max(scores, key=scores.get)
    finally:
        ds.update_image_info("Case_NOISY", {"strategy": {}})


def test_new_checkpoint_makes_scores_stale(setup):
    app = setup["app"]
    seg = setup["models"] / "segmentation.pt"
    stat = seg.stat()
    before = _info(app, "Case_P001")["epistemic"]["model"]
    os.utime(seg, ns=(stat.st_atime_ns, stat.st_mtime_ns + 7_000_000_000))  # a trainer publishes a checkpoint
    result = app.next_sample({"strategy": "epistemic", "max_candidates": 1})
    assert result["scored_now"] == 1 and result["model"] != before  # one stale study scored on the fly
    fresh = [i for i in UNLABELLED if _info(app, i)["epistemic"]["model"] == result["model"]]
    assert len(fresh) == 1
    assert result["candidates"] == (0 if fresh[0] == "Case_BAD" else 1)  # an unreadable study is never a candidate
    capped = app.scoring({"method": "epistemic", "max_images": 1})  # one run scores at most max_images
    assert capped["scored"] == 1 and capped["current"] == 1 and capped["remaining"] == 2
    assert sum(_info(app, i)["epistemic"]["model"] == result["model"] for i in UNLABELLED) == 2


def test_dice_scoring_against_the_final_label(setup):
    app = setup["app"]
    first = app.scoring({"method": "dice"})
    assert first["labeled"] == 1 and first["scored"] == 1 and first["errors"] == {}
    record = _info(app, "Case_P002")["dice"]
    assert (
        record["classes"]["lv_cavity"] > 0.9 and record["classes"]["myocardium"] > 0.7
    )  # the shipped models target real LGE; on phantom studies myocardium averages 0.84 (model card)
    assert record["emidec"]["myocardium"] > 0.7 and record["emidec"]["infarct"] > 0.5
    inferred = app.infer({"model": "segmentation", "image": "Case_P002"})  # the infer task's label, by hand
    try:
        label = read_nifti(inferred["file"]).array
    finally:
        os.remove(inferred["file"])
    truth = np.round(read_nifti(setup["studies"] / "labels" / "final" / "Case_P002.nii.gz").array)
    assert record["classes"]["infarct"] == pytest.approx(dice(label == 3, truth == 3), abs=1e-6)
    assert record["emidec"]["myocardium"] == pytest.approx(
        dice(myocardium_mask(label), myocardium_mask(truth)), abs=1e-6
    )
    assert record["mean"] == pytest.approx(np.mean([v for v in record["classes"].values() if v is not None]), abs=1e-6)
    assert first["mean_dice"] == record["mean"]

    again = app.scoring({"method": "dice"})
    assert again["scored"] == 0 and again["mean_dice"] == record["mean"]  # same model, same label

    truth = read_nifti(setup["phantom"] / "emidec" / "Case_P002" / "Contours" / "Case_P002.nii.gz")
    corrected = np.round(truth.array).astype(np.uint8)
    corrected[corrected == 2] = 0  # a "correction" that erases the healthy myocardium
    path = setup["studies"].parent / "corrected.nii.gz"
    write_nifti(Volume(corrected, truth.affine), path)
    app.datastore().save_label("Case_P002", str(path), "final", {})
    changed = app.scoring({"method": "dice"})
    assert changed["scored"] == 1  # a new final label is scored again
    assert _info(app, "Case_P002")["dice"]["classes"]["myocardium"] == 0.0


def test_nothing_to_label(setup, tmp_path):
    from monailabel.datastore.local import LocalDatastore

    studies = tmp_path / "studies"
    (studies / "labels" / "final").mkdir(parents=True)
    shutil.copy(setup["studies"] / "Case_P002.nii.gz", studies / "Case_P002.nii.gz")
    shutil.copy(
        setup["studies"] / "labels" / "final" / "Case_P002.nii.gz", studies / "labels" / "final" / "Case_P002.nii.gz"
    )
    datastore = LocalDatastore(str(studies), extensions=("*.nii.gz",), auto_reload=False)
    assert datastore.get_unlabeled_images() == []
    strategy = setup["app"]._strategies["epistemic"]
    assert strategy({"strategy": "epistemic"}, datastore) is None
    assert setup["app"].next_sample({"strategy": "epistemic"})["id"]  # the app's own datastore still has work
