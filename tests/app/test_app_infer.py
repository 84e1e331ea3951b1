"""The MONAI Label app's infer tasks, in-process on a local-folder datastore."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("monailabel")

from lgemri.labels import myocardium_mask  # noqa: E402
from lgemri.volume import read_nifti  # noqa: E402
from tests.helpers.app import APP_DIR, CASE, MODELS, ROOT, app_class  # noqa: E402

DICOM_CASE = ROOT / "sample-data" / "dicom" / "Case_P001"
SEG_LABELS = ["lv_cavity", "myocardium", "infarct", "no_reflow"]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def _make_app(studies: Path, models: Path):
    cls = app_class()
    assert cls is not None and cls.__name__ == "CardiacMIApp"
    return cls(app_dir=str(APP_DIR), studies=str(studies), conf={"models_dir": str(models)})


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    studies = tmp_path_factory.mktemp("studies")
    shutil.copy(CASE / "Images" / "Case_P001.nii.gz", studies / "Case_P001.nii.gz")
    return _make_app(studies, MODELS)


def test_info_lists_both_models_with_list_labels(app):
    info = app.info()
    assert info["name"] == "cardiac_mi"
    assert info["models"]["segmentation"]["labels"] == SEG_LABELS
    assert info["models"]["localization"]["labels"] == ["lv"]
    assert isinstance(info["labels"], list) and set(SEG_LABELS) <= set(info["labels"])
    assert set(info["strategies"]) == {"random", "first", "epistemic"}
    assert set(info["scoring"]) == {"dice", "epistemic"}
    assert set(info["trainers"]) == {"segmentation"}
    assert info["datastore"]["total"] == 1


def test_segmentation_infer(app):
    tick = time.perf_counter()
    result = app.infer({"model": "segmentation", "image": "Case_P001"})
    elapsed = time.perf_counter() - tick
    path = result["file"]
    try:
        label = read_nifti(path)
        image = read_nifti(CASE / "Images" / "Case_P001.nii.gz")
        truth = read_nifti(CASE / "Contours" / "Case_P001.nii.gz")
        assert label.shape == image.shape
        assert np.allclose(label.affine, image.affine, atol=1e-3)
        assert set(np.unique(label.array)) <= {0, 1, 2, 3, 4}
        assert (
            _dice(myocardium_mask(label.array), myocardium_mask(np.round(truth.array))) >= 0.7
        )  # the shipped models target real LGE; on phantom studies myocardium averages 0.84 (model card)
    finally:
        os.remove(path)
    params = result["params"]
    assert params["roi"]["size_mm"] == 128 and len(params["roi"]["box_voxel_1mm"]) == 4
    assert params["volumes_ml"]["myocardium"] > 0
    assert "segments" in params["quantification"] and len(params["quantification"]["segments"]) == 17
    assert params["label_names"] == {name: i + 1 for i, name in enumerate(SEG_LABELS)}
    assert set(params["label_colors"]) == set(SEG_LABELS)
    assert elapsed < 20, f"segmentation infer took {elapsed:.1f} s"


def test_localization_infer(app):
    result = app.infer({"model": "localization", "image": "Case_P001"})
    try:
        mask = read_nifti(result["file"])
        assert mask.shape == read_nifti(CASE / "Images" / "Case_P001.nii.gz").shape
        assert mask.array.any() and set(np.unique(mask.array)) <= {0, 1}
    finally:
        os.remove(result["file"])
    roi = result["params"]["roi"]
    i0, j0, i1, j1 = roi["box_voxel_1mm"]
    assert i1 - i0 == 128 and j1 - j0 == 128
    assert len(roi["box_corners_ras_mm"]) == 4
    assert result["params"]["lv_voxels"] == int(mask.array.sum())


def test_dicom_folder_through_task(app):
    task = app._infers["segmentation"]
    path, params = task({"image": str(DICOM_CASE)})
    try:
        label = read_nifti(path)
        assert label.shape[2] == len(list(DICOM_CASE.glob("*.dcm")))
        assert myocardium_mask(label.array).any()
    finally:
        os.remove(path)
    assert params["quantification"].get("segments")


def test_bad_input_is_an_http_422_with_message(app, tmp_path):
    from fastapi import HTTPException

    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    # the app takes image ids of its datastore, never a server path (issue 16, point 7)
    with pytest.raises(HTTPException, match="not an image id") as err:
        app.infer({"model": "segmentation", "image": str(bad)})
    assert err.value.status_code == 422
    # the task itself, given a file that is no image, names the problem
    with pytest.raises(HTTPException, match="expected a NIfTI file") as err:
        app._infers["segmentation"]({"image": str(bad)})
    assert err.value.status_code == 422


def test_checkpoint_update_reloads(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for name in ("localization.pt", "segmentation.pt"):
        shutil.copy(MODELS / name, models / name)
    studies = tmp_path / "studies"
    studies.mkdir()
    shutil.copy(CASE / "Images" / "Case_P001.nii.gz", studies / "Case_P001.nii.gz")
    app = _make_app(studies, models)
    task = app._infers["segmentation"]
    assert task.cache is app._infers["localization"].cache  # one set of networks for both tasks
    assert task.cache.loads == 0  # lazy: nothing loaded before the first request

    first = app.infer({"model": "segmentation", "image": "Case_P001"})
    os.remove(first["file"])
    assert first["params"]["models"]["loads"] == 1
    again = app.infer({"model": "localization", "image": "Case_P001"})
    os.remove(again["file"])
    assert again["params"]["models"]["loads"] == 1  # unchanged checkpoints: no reload

    seg = models / "segmentation.pt"
    stat = seg.stat()
    os.utime(seg, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # a new checkpoint lands
    after = app.infer({"model": "segmentation", "image": "Case_P001"})
    os.remove(after["file"])
    assert after["params"]["models"]["loads"] == 2
    assert task.cache.signature[1][1] == seg.stat().st_mtime_ns


def test_auto_retrain_after_n_final_labels(app, monkeypatch):
    from monailabel.utils.async_tasks.task import AsyncTask

    started = []
    monkeypatch.setattr(AsyncTask, "run", staticmethod(lambda method, **kw: started.append((method, kw)) or ({}, None)))
    monkeypatch.setitem(app.conf, "auto_retrain_after", "2")
    app._new_final_labels = 0
    for image in ("a", "b", "c"):
        app._count_final_label(image, {"stored": True})
    assert [method for method, _ in started] == ["train"]
    assert started[0][1]["request"] == {"model": "segmentation"}
    monkeypatch.setitem(app.conf, "auto_retrain_after", "0")
    app._count_final_label("d", {"stored": True})
    assert len(started) == 1
