"""The bad inputs of issue 16 (points 7, 8 and 10) against a real ``cardiac-mi serve``: each answers a clear 4xx.

One serve start (free ports, a temporary state folder, the four sample studies; ``serve_options`` of
tests/helpers/serve.py, as test_security.py does) serves the module. Every refusal is JSON with a ``detail`` that
names the problem and holds no traceback, and nothing was started, written or segmented behind it.

7. ``image=`` is a SeriesInstanceUID of the datastore, never a server path, and the answer for a path is
   the same whether the file exists or not (also when the path comes in ``params``).
8. Unknown model, params not JSON or a JSON list, a 10 kB image id, ``image/info`` bad JSON, the dataset
   download, an unknown strategy, ``PUT /model`` for an unknown model, a SEG with truncated PixelData,
   series with zero pixel spacing or zero orientation. Labels save for series whose instances lack any
   Type 2 patient/study attribute (written empty in the SEG).
10. Unknown models for ``/train`` and ``/batch/infer`` (no background task starts), ``device=cuda:7``
    without that GPU, a CT series, an unknown label's info (404, not 200 ``{}``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("monailabel")
requests = pytest.importorskip("requests")

from cardiac_mi.ids import device_problem  # noqa: E402
from cardiac_mi.serve import SAMPLE_DICOM, serve  # noqa: E402
from cardiac_mi.store import DicomStore  # noqa: E402
from lgemri.dicom import read_dicom_series  # noqa: E402
from lgemri.emidec import load_case  # noqa: E402
from lgemri.seg import TYPE2_PATIENT_STUDY, write_seg  # noqa: E402
from lgemri.volume import Volume, write_nifti  # noqa: E402
from tests.helpers.serve import serve_options as _options  # noqa: E402

os.environ.setdefault("OMP_NUM_THREADS", "1")
CASE = "Case_P001"
PANEL = "/viewer/monailabel"


@pytest.fixture(scope="module")
def state(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bad-inputs") / "state"


@pytest.fixture(scope="module")
def served(state):
    handle = serve(_options(state), block=False)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def uid() -> str:
    return read_dicom_series(SAMPLE_DICOM / CASE).series_uid


@pytest.fixture(scope="module")
def label_file(tmp_path_factory) -> Path:
    """The sample case's true label as NIfTI on its series grid (also the grid of the edited copies)."""
    truth = np.asarray(load_case(SAMPLE_DICOM.parent / "emidec", CASE).label.array).astype(np.uint8)
    path = tmp_path_factory.mktemp("label") / "label.nii.gz"
    write_nifti(Volume(truth, read_dicom_series(SAMPLE_DICOM / CASE).volume.affine), path)
    return path


def refused(answer: requests.Response, status: int, *words: str) -> str:
    """``answer`` is a JSON refusal with ``status`` whose detail holds ``words``; returns the detail."""
    assert answer.status_code == status, (answer.status_code, answer.text[:500])
    assert answer.headers["content-type"].startswith("application/json"), answer.headers["content-type"]
    detail = answer.json()["detail"]
    assert isinstance(detail, str) and "Traceback" not in detail and 'File "' not in detail, detail
    for word in words:
        assert word in detail, (word, detail)
    return detail


def infer(served, image: str, model: str = "segmentation", params=None, prefix: str = "", **query) -> requests.Response:
    data = {"params": params if isinstance(params, str) else json.dumps(params or {})}
    return requests.post(
        f"{served.url}{prefix}/infer/{model}",
        params={"image": image, "output": "json", **query},
        data=data,
        timeout=300,
    )


def upload_copy(served, tmp_path: Path, name: str, delete=(), **values) -> str:
    """The sample series with new UIDs, ``delete``d attributes and ``values``, stored in Orthanc; its series UID."""
    import pydicom
    from pydicom.uid import generate_uid

    study, series = generate_uid(), generate_uid()
    folder = tmp_path / name
    folder.mkdir()
    for path in sorted((SAMPLE_DICOM / CASE).glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        for keyword in delete:
            if keyword in ds:
                delattr(ds, keyword)
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        ds.save_as(folder / path.name)
    result = DicomStore(served.orthanc.dicomweb_url, *served.orthanc.auth).stow(sorted(folder.glob("*.dcm")))
    assert result.ok, result.summary()
    return series


def orthanc_instance(served, series_uid: str):
    """The first instance of a series, read from Orthanc's REST API."""
    import io

    import pydicom

    auth, url = served.orthanc.auth, served.orthanc.url
    found = requests.post(
        f"{url}/tools/find",
        json={"Level": "Instance", "Query": {"SeriesInstanceUID": series_uid}},
        auth=auth,
        timeout=30,
    ).json()
    assert found, f"no instance of series {series_uid} in Orthanc"
    data = requests.get(f"{url}/instances/{found[0]}/file", auth=auth, timeout=30).content
    return pydicom.dcmread(io.BytesIO(data))


def put_label(served, image: str, label: Path, tag: str = "final") -> requests.Response:
    with open(label, "rb") as fh:
        return requests.put(
            f"{served.url}/datastore/label",
            params={"image": image, "tag": tag},
            files={"label": ("label.nii.gz", fh)},
            data={"params": json.dumps({"user": "reader"})},
            timeout=300,
        )


# ------------------------------------------------------------------------------------------------ 7. image ids


def test_image_paths_are_refused_alike(served, state):
    existing = [str(next(state.rglob("*.json"))), "/etc/passwd", str(state), str(SAMPLE_DICOM / CASE)]
    missing = ["/etc/no-such-file", str(state / "nothing.nii.gz"), str(SAMPLE_DICOM / "Case_X999")]
    details = set()
    for path in existing + missing:
        detail = refused(infer(served, path), 422, "image:")
        details.add(detail.replace(repr(path)[:77], "PATH"))
        assert "no such file" not in detail and "expected a NIfTI" not in detail
    assert len(details) == 1, details  # existence changes nothing
    # nor can params carry a path (MONAI Label's params override ?image=)
    for path in existing + missing:
        detail = refused(infer(served, "", params={"image": path}), 422, "params", "image")
        assert path not in detail
        refused(infer(served, "", params={"image": path}, prefix=PANEL), 422, "params", "image")


def test_image_must_be_a_known_series(served, uid):
    refused(infer(served, "1.2.3.4.5"), 404, "1.2.3.4.5")
    detail = refused(infer(served, "1" * 10_000), 422, "image:", "not a series UID")
    assert len(detail) < 300
    refused(infer(served, "1." * 5000 + "1"), 422, "image:")
    answer = requests.get(f"{served.url}/datastore/image/info", params={"image": "x" * 10_000}, timeout=30)
    refused(answer, 422, "image:")


# ------------------------------------------------------------------------------------------------ 8. clear 4xx


def test_unknown_model(served, uid):
    refused(infer(served, uid, model="nosuch"), 404, "'nosuch'", "segmentation")
    refused(infer(served, uid, model="nosuch", prefix=PANEL), 404, "'nosuch'")
    refused(requests.get(f"{served.url}/model/nosuch", timeout=30), 404, "nosuch")


@pytest.mark.parametrize(
    "params, words",
    [
        ("{bad", ("params", "not JSON")),
        ("not json at all", ("params", "not JSON")),
        ("[1, 2]", ("params", "JSON list")),
        ('"text"', ("params", "JSON str")),
        ("7", ("params", "JSON int")),
        ("null", ("params", "JSON NoneType")),
    ],
)
def test_params_must_be_a_json_object(served, uid, params, words):
    refused(infer(served, uid, params=params), 422, *words)
    refused(infer(served, uid, params=params, prefix=PANEL), 422, *words)


def test_image_and_label_info_must_be_json_objects(served, uid):
    for prefix in ("", PANEL):
        for info, words in (("{bad", ("info", "not JSON")), ("[1]", ("info", "JSON list"))):
            answer = requests.put(
                f"{served.url}{prefix}/datastore/image/info", params={"image": uid}, data={"info": info}, timeout=60
            )
            refused(answer, 422, *words)
            answer = requests.put(
                f"{served.url}{prefix}/datastore/label/info",
                params={"label": uid, "tag": "draft"},
                data={"info": info},
                timeout=60,
            )
            refused(answer, 422, *words)
    # a good one still works
    answer = requests.put(
        f"{served.url}/datastore/image/info",
        params={"image": uid},
        data={"info": json.dumps({"note": "checked"})},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text[:300]
    info = requests.get(f"{served.url}/datastore/image/info", params={"image": uid}, timeout=30).json()
    assert info["note"] == "checked"


def test_unknown_strategy(served):
    for prefix in ("", PANEL):
        refused(
            requests.post(f"{served.url}{prefix}/activelearning/nosuch", json={}, timeout=60), 404, "'nosuch'", "random"
        )


def test_put_model_for_an_unknown_model(served, state):
    models = state / "models"  # serve's models folder (seeded from the shipped ones)
    before = {p.name: p.stat().st_mtime_ns for p in models.iterdir()}
    assert "segmentation.pt" in before
    answer = requests.put(f"{served.url}/model/nosuch", files={"file": ("nosuch.pt", b"garbage")}, timeout=60)
    refused(answer, 404, "'nosuch'", "segmentation")
    refused(requests.delete(f"{served.url}/model/nosuch", timeout=30), 404, "'nosuch'")
    assert {p.name: p.stat().st_mtime_ns for p in models.iterdir()} == before


def test_seg_with_truncated_pixel_data(served, uid, tmp_path):
    import pydicom

    from tests.helpers.uploads import multipart

    dicom = read_dicom_series(SAMPLE_DICOM / CASE)
    truth = np.asarray(load_case(SAMPLE_DICOM.parent / "emidec", CASE).label.array).astype(np.uint8)
    path = write_seg(Volume(truth, dicom.volume.affine), dicom, tmp_path / "seg.dcm", manual=True)
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    ds.save_as(tmp_path / "truncated.dcm")
    content_type, body = multipart((tmp_path / "truncated.dcm").read_bytes())
    answer = requests.post(
        f"{served.url}/viewer/labels/studies", data=body, headers={"Content-Type": content_type}, timeout=120
    )
    refused(answer, 422, "pixel data")
    # the same file through the datastore's own save
    with open(tmp_path / "truncated.dcm", "rb") as fh:
        answer = requests.put(
            f"{served.url}/datastore/label",
            params={"image": uid, "tag": "final"},
            files={"label": ("label.dcm", fh)},
            timeout=120,
        )
    refused(answer, 422, "pixel data")


@pytest.mark.parametrize(
    "values, keyword",
    [
        ({"PixelSpacing": [0, 0]}, "PixelSpacing"),
        ({"ImageOrientationPatient": [0, 0, 0, 0, 0, 0]}, "ImageOrientationPatient"),
    ],
    ids=["zero spacing", "zero orientation"],
)
def test_series_with_impossible_geometry(served, tmp_path, values, keyword):
    series = upload_copy(served, tmp_path, "bad-geometry", **values)
    refused(infer(served, series), 422, "invalid geometry", keyword)
    refused(infer(served, series, prefix=PANEL, output="image"), 422, "invalid geometry", keyword)


def test_dataset_download(served, uid, label_file, tmp_path):
    refused(requests.get(f"{served.url}/datastore/dataset", params={"limit_cases": 0}, timeout=60), 422, "limit_cases")
    answer = requests.get(f"{served.url}/datastore/dataset", timeout=120)
    if answer.status_code == 404:  # no final label yet
        refused(answer, 404, "no image has a final label")
        assert put_label(served, uid, label_file).status_code == 200
        answer = requests.get(f"{served.url}/datastore/dataset", timeout=120)
    assert answer.status_code == 200, answer.text[:500]
    import io
    import zipfile

    names = zipfile.ZipFile(io.BytesIO(answer.content)).namelist()
    assert f"image/{uid}.nii.gz" in names and f"label/{uid}.nii.gz" in names and "datalist.json" in names
    assert json.loads(zipfile.ZipFile(io.BytesIO(answer.content)).read("datalist.json"))[0]["image_id"]


@pytest.mark.parametrize("keyword", TYPE2_PATIENT_STUDY)
def test_label_saves_for_series_without_type2_attribute(served, tmp_path, label_file, keyword):
    series = upload_copy(served, tmp_path, "no-" + keyword, delete=[keyword])
    assert keyword not in orthanc_instance(served, series)
    answer = put_label(served, series, label_file)
    assert answer.status_code == 200, answer.text[:500]
    saved = answer.json()
    assert saved["stored"] is True, saved
    seg = orthanc_instance(served, saved["seg_series_uid"])
    assert keyword in seg and str(seg[keyword].value or "") == ""
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series
    # and it is the series' final label, read back from that SEG
    answer = requests.get(f"{served.url}/datastore/label/info", params={"label": series, "tag": "final"}, timeout=60)
    assert answer.status_code == 200 and answer.json().get("seg_series_uid") == saved["seg_series_uid"], answer.text


# ------------------------------------------------------------------------------------------------ 10. refused first


def _task_requests(served, path: str) -> list[dict]:
    answer = requests.get(f"{served.url}{path}", params={"all": "true"}, timeout=30)
    if answer.status_code == 404:
        return []
    assert answer.status_code == 200, answer.text[:300]
    tasks = answer.json()
    return [task.get("request", {}) for task in (tasks if isinstance(tasks, list) else [tasks])]


def test_unknown_train_batch_and_scoring_start_nothing(served):
    answer = requests.post(f"{served.url}/train/nosuch", json={}, timeout=60)
    refused(answer, 404, "trainer", "'nosuch'", "segmentation")
    refused(requests.post(f"{served.url}{PANEL}/train/nosuch", json={}, timeout=60), 404, "'nosuch'")
    refused(requests.post(f"{served.url}/batch/infer/nosuch", timeout=60), 404, "'nosuch'", "segmentation")
    refused(requests.post(f"{served.url}/batch/infer/nosuch", json={"device": "cpu"}, timeout=60), 404, "'nosuch'")
    refused(requests.post(f"{served.url}/scoring/nosuch", json={}, timeout=60), 404, "scoring method", "'nosuch'")
    assert not [r for r in _task_requests(served, "/train/") if r.get("model") == "nosuch"]
    assert not [r for r in _task_requests(served, "/batch/infer") if r.get("model") == "nosuch"]
    assert not [r for r in _task_requests(served, "/scoring/") if r.get("method") == "nosuch"]


def test_device_this_machine_lacks(served, uid):
    if device_problem("cuda:7") is None:
        pytest.skip("this machine has a GPU cuda:7")
    for prefix in ("", PANEL):
        answer = infer(served, uid, params={"device": "cuda:7"}, prefix=prefix)
        refused(answer, 422, "device", "cuda:7", "not available")
    refused(infer(served, uid, params={"device": "tpu"}), 422, "device", "not a device")
    refused(requests.post(f"{served.url}/train/segmentation", json={"device": "cuda:7"}, timeout=60), 422, "cuda:7")
    answer = requests.post(f"{served.url}/batch/infer/segmentation", json={"device": "cuda:7"}, timeout=60)
    refused(answer, 422, "cuda:7")
    assert not [r for r in _task_requests(served, "/train/") if r.get("device") == "cuda:7"]


def test_ct_series_is_refused_with_a_message(served, tmp_path):
    series = upload_copy(served, tmp_path, "ct", Modality="CT", SOPClassUID="1.2.840.10008.5.1.4.1.1.2")
    for prefix in ("", PANEL):
        refused(infer(served, series, prefix=prefix), 422, "CT", "MR")


def test_unknown_label_info_is_404(served, uid, label_file):
    for prefix in ("", PANEL):
        refused(
            requests.get(
                f"{served.url}{prefix}/datastore/label/info", params={"label": "1.2.3.4", "tag": "final"}, timeout=30
            ),
            404,
            "1.2.3.4",
            "final",
        )
        refused(
            requests.get(
                f"{served.url}{prefix}/datastore/label/info", params={"label": uid, "tag": "nosuch"}, timeout=30
            ),
            404,
            "nosuch",
        )
    assert put_label(served, uid, label_file, tag="draft").status_code == 200
    answer = requests.get(f"{served.url}/datastore/label/info", params={"label": uid, "tag": "draft"}, timeout=30)
    assert answer.status_code == 200 and answer.json(), answer.text[:300]


def test_a_good_infer_still_works(served, uid):
    answer = infer(served, uid, params={"device": "cpu"})
    assert answer.status_code == 200, answer.text[:500]
    assert answer.json()["volumes_ml"]["myocardium"] > 0
