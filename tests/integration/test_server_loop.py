"""The active-learning loop through MONAI Label's REST API, against a real Orthanc.

``cardiac-mi serve`` starts once for the module (free ports, a temporary state folder, the four sample
studies, a copy of the shipped models): infer both tasks, save corrections as SEGs in Orthanc, read them
back in a fresh datastore, ask for the next study, and refuse bad requests with clear messages.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("monailabel")
requests = pytest.importorskip("requests")

from cardiac_mi.datastore import OrthancDatastore  # noqa: E402
from cardiac_mi.serve import SAMPLE_DICOM  # noqa: E402
from lgemri.dicom import read_dicom_series  # noqa: E402
from lgemri.emidec import load_case  # noqa: E402
from lgemri.metrics import dice  # noqa: E402
from lgemri.volume import Volume, read_nifti, write_nifti  # noqa: E402

os.environ.setdefault("OMP_NUM_THREADS", "1")
SAMPLES = SAMPLE_DICOM.parent
CASE = "Case_P001"


def _uid(case: str) -> str:
    return read_dicom_series(SAMPLE_DICOM / case).series_uid


def _truth(case: str) -> np.ndarray:
    return np.asarray(load_case(SAMPLES / "emidec", case).label.array)


def _infer(server, model: str, uid: str, output: str = "image", **params) -> requests.Response:
    return requests.post(
        f"{server.url}/infer/{model}",
        params={"image": uid, "output": output},
        data={"params": json.dumps(params)},
        timeout=120,
    )


def _nifti(response: requests.Response, tmp_path: Path) -> Volume:
    path = tmp_path / f"answer{time.monotonic_ns()}.nii.gz"
    path.write_bytes(response.content)
    return read_nifti(path)


def _orthanc_segs(server) -> list[dict]:
    response = requests.get(
        f"{server.orthanc.dicomweb_url}/series", params={"Modality": "SEG"}, auth=server.orthanc.auth, timeout=30
    )
    return response.json() if response.status_code == 200 else []


def _save(server, uid: str, label: np.ndarray, tmp_path: Path, name: str = "label.nii.gz", tag: str = "final"):
    image = read_dicom_series(SAMPLE_DICOM / CASE).volume if uid == _uid(CASE) else None
    affine = image.affine if image is not None else np.eye(4)
    path = tmp_path / name
    write_nifti(Volume(label.astype(np.uint8), affine), path)
    with open(path, "rb") as fh:
        return requests.put(
            f"{server.url}/datastore/label",
            params={"image": uid, "tag": tag},
            files={"label": (name, fh)},
            data={"params": json.dumps({"user": "reader"})},
            timeout=120,
        )


def test_info_lists_tasks_and_labels(server):
    info = requests.get(f"{server.url}/info/", timeout=30).json()
    assert {"localization", "segmentation"} <= set(info["models"])
    assert info["models"]["segmentation"]["labels"] == ["lv_cavity", "myocardium", "infarct", "no_reflow"]
    assert {"random", "first"} <= set(info["strategies"])


def test_localization_returns_lv_mask_and_roi(server, tmp_path):
    uid = _uid(CASE)
    response = _infer(server, "localization", uid)
    assert response.status_code == 200, response.text[:500]
    mask = _nifti(response, tmp_path).array > 0
    truth = _truth(CASE)
    assert dice(mask, truth > 0) > 0.7
    roi = _infer(server, "localization", uid, output="json").json()["roi"]
    assert isinstance(roi, dict) and roi


def test_segmentation_matches_phantom_truth(server, tmp_path):
    uid = _uid(CASE)
    tick = time.perf_counter()
    response = _infer(server, "segmentation", uid)
    elapsed = time.perf_counter() - tick
    assert response.status_code == 200, response.text[:500]
    label = _nifti(response, tmp_path).array
    truth = _truth(CASE)
    assert label.shape == truth.shape
    # the myocardium {2,3,4}: the shipped models target real LGE; on phantom studies it averages 0.84 (model card)
    assert dice(np.isin(label, (2, 3, 4)), np.isin(truth, (2, 3, 4))) > 0.7
    assert dice(label > 0, truth > 0) > 0.9
    print(f"segmentation round trip: {elapsed:.2f} s")


def test_dicom_seg_output_is_a_coded_seg(server):
    import pydicom

    response = _infer(server, "segmentation", _uid(CASE), output="dicom_seg", label_info=[])
    assert response.status_code == 200, response.text[:500]
    ds = pydicom.dcmread(io.BytesIO(response.content))
    assert ds.Modality == "SEG"
    codes = {item.SegmentLabel: item.SegmentedPropertyTypeCodeSequence[0].CodeValue for item in ds.SegmentSequence}
    assert codes["myocardium"] == "74281007" and codes["infarct"] == "55641003"
    assert {str(item.SegmentAlgorithmType) for item in ds.SegmentSequence} == {"AUTOMATIC"}
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == _uid(CASE)


def test_saved_corrections_become_the_label(server, tmp_path):
    uid = _uid(CASE)
    truth = _truth(CASE)
    before = len(_orthanc_segs(server))
    response = _save(server, uid, truth, tmp_path)
    assert response.status_code == 200, response.text[:500]
    answer = response.json()
    assert answer["stored"] is True and answer["image"] == uid
    assert len(_orthanc_segs(server)) == before + 1

    # a fresh datastore on an empty cache reads the SEG back from Orthanc, voxel for voxel
    user, password = server.orthanc.auth
    fresh = OrthancDatastore(server.orthanc.dicomweb_url, user, password, cache_dir=tmp_path / "fresh")
    assert uid in fresh.get_labeled_images()
    np.testing.assert_array_equal(read_nifti(fresh.get_label_uri(uid, "final")).array, truth)

    # a second, newer correction wins, in the server and in a fresh datastore
    corrected = truth.copy()
    corrected[truth == 4] = 3
    assert _save(server, uid, corrected, tmp_path, "second.nii.gz").status_code == 200
    fresh.refresh()
    np.testing.assert_array_equal(read_nifti(fresh.get_label_uri(uid, "final")).array, corrected)
    stats = requests.get(f"{server.url}/datastore/", params={"output": "stats"}, timeout=60).json()
    assert stats["completed"] == 1 and stats["total"] == 4
    train = requests.get(f"{server.url}/datastore/", params={"output": "train"}, timeout=60).json()
    assert len(train) == 1
    np.testing.assert_array_equal(read_nifti(train[0]["label"]).array, corrected)


def test_activelearning_returns_an_unlabelled_study(server, tmp_path):
    labelled = _uid(CASE)
    all_series = {_uid(p.name) for p in SAMPLE_DICOM.iterdir() if p.is_dir()}
    seen = set()
    for strategy in ("first", "random", "random", "random"):
        response = requests.post(f"{server.url}/activelearning/{strategy}", timeout=120)
        assert response.status_code == 200, response.text[:500]
        chosen = response.json()["id"]
        seen.add(chosen)
    assert seen <= all_series - {labelled}


def test_bad_requests_get_clear_answers(server, tmp_path):
    unknown = _infer(server, "segmentation", "1.2.3.4.5.6")
    assert unknown.status_code == 404 and "not in" in unknown.json()["detail"]

    segs = _orthanc_segs(server)
    assert segs
    seg_uid = segs[0]["0020000E"]["Value"][0]
    not_mr = _infer(server, "segmentation", seg_uid)
    assert not_mr.status_code == 422 and "SEG" in not_mr.json()["detail"]

    empty = _save(server, _uid(CASE), np.zeros_like(_truth(CASE)), tmp_path, "empty.nii.gz")
    assert empty.status_code == 422 and "empty" in empty.json()["detail"]
    wrong = _save(server, _uid(CASE), np.ones((4, 4, 2)), tmp_path, "small.nii.gz")
    assert wrong.status_code == 422 and "shape" in wrong.json()["detail"]
    # the server keeps serving
    assert requests.get(f"{server.url}/info/", timeout=30).status_code == 200


def test_save_while_orthanc_is_down_is_kept_and_retried(server, tmp_path):
    uid = _uid(CASE)
    truth = _truth(CASE)
    before = len(_orthanc_segs(server))
    server.orthanc.stop()
    try:
        response = _save(server, uid, truth, tmp_path, "offline.nii.gz")
        assert response.status_code == 200, response.text[:500]
        answer = response.json()
        assert answer["stored"] is False and "retried" in answer["message"]
        assert Path(answer["pending"]).is_file()
    finally:
        server.orthanc.start()
    deadline = time.monotonic() + 90
    while len(_orthanc_segs(server)) == before and time.monotonic() < deadline:
        time.sleep(1)
    assert len(_orthanc_segs(server)) == before + 1
    assert not Path(answer["pending"]).exists()


def test_short_training_run_publishes_a_checkpoint_infer_picks_up(server, tmp_path):
    import hashlib

    checkpoint = server.models / "segmentation.pt"
    before = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    loads = _infer(server, "segmentation", _uid(CASE), output="json").json()["models"]["loads"]
    # publishing needs 2 labelled series held out of training (cardiac_mi.retrain.MIN_VALIDATION_CASES)
    for case in ("Case_P001", "Case_P002", "Case_N003"):
        path = tmp_path / f"{case}.nii.gz"
        write_nifti(Volume(_truth(case).astype(np.uint8), read_dicom_series(SAMPLE_DICOM / case).volume.affine), path)
        with open(path, "rb") as fh:
            saved = requests.put(
                f"{server.url}/datastore/label",
                params={"image": _uid(case), "tag": "final"},
                files={"label": (path.name, fh)},
                timeout=120,
            )
        assert saved.status_code == 200, saved.text[:500]
    params = {
        "max_epochs": 1,
        "max_steps_per_epoch": 2,
        "train_batch_size": 4,
        "synthetic_slices": 8,
        "publish": "always",
        "seed": 3,
    }
    response = requests.post(f"{server.url}/train/segmentation", json=params, timeout=60)
    assert response.status_code == 200, response.text[:500]
    deadline = time.monotonic() + 600
    status = {}
    while time.monotonic() < deadline:
        status = requests.get(f"{server.url}/train/", timeout=30).json()
        if status.get("status") in ("DONE", "ERROR"):
            break
        time.sleep(2)
    assert status.get("status") == "DONE", json.dumps(status)[-2000:]
    assert hashlib.sha256(checkpoint.read_bytes()).hexdigest() != before
    assert (server.models / "segmentation.prev.pt").is_file()
    stats = requests.get(f"{server.url}/info/", timeout=30).json()["train_stats"]["segmentation"]
    assert stats["published"] is True and stats["cases"]["val"] >= 2 and stats["cases"]["validation"] == "held_out"

    # the running server serves the new checkpoint without a restart
    answer = _infer(server, "segmentation", _uid(CASE), output="json").json()
    assert answer["models"]["loads"] == loads + 1
