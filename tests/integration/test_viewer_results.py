"""The results panel's server side (``/viewer/results``), against a real ``cardiac-mi serve`` and Orthanc.

The model's result after the panel's infer; the saved label's after a save, by any route; its bullseye;
the report from the final label, whose DICOM PDF and SR land in the study in Orthanc; clear refusals.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("monailabel")
requests = pytest.importorskip("requests")

from cardiac_mi.serve import SAMPLE_DICOM  # noqa: E402
from lgemri.dicom import read_dicom_series  # noqa: E402
from lgemri.emidec import load_case  # noqa: E402
from lgemri.quantification import quantify  # noqa: E402
from lgemri.volume import Volume, write_nifti  # noqa: E402

os.environ.setdefault("OMP_NUM_THREADS", "1")
RESULTS = "/viewer/results"


def _series(case: str):
    return read_dicom_series(SAMPLE_DICOM / case)


def _truth(case: str) -> np.ndarray:
    return np.asarray(load_case(SAMPLE_DICOM.parent / "emidec", case).label.array)


def _results(server, uid: str) -> requests.Response:
    return requests.get(f"{server.url}{RESULTS}", params={"image": uid}, timeout=60)


def _save_final(server, case: str, label: np.ndarray, tmp_path) -> None:
    series = _series(case)
    path = tmp_path / f"{case}.nii.gz"
    write_nifti(Volume(label.astype(np.uint8), series.volume.affine), path)
    with open(path, "rb") as fh:
        answer = requests.put(
            f"{server.url}/datastore/label",
            params={"image": series.series_uid, "tag": "final"},
            files={"label": (path.name, fh)},
            data={"params": json.dumps({"user": "reader"})},
            timeout=120,
        )
    assert answer.status_code == 200, answer.text[:500]


def _orthanc_modalities(server, study_uid: str) -> list[str]:
    answer = requests.get(
        f"{server.orthanc.dicomweb_url}/studies/{study_uid}/series",
        auth=server.orthanc.auth,
        headers={"Accept": "application/dicom+json"},
        timeout=30,
    )
    answer.raise_for_status()
    return sorted(item["00080060"]["Value"][0] for item in answer.json())


def test_model_result_after_the_panel_infer(server):
    uid = _series("Case_P002").series_uid
    assert _results(server, uid).status_code == 204  # nothing run, nothing saved yet
    answer = requests.post(
        f"{server.url}/viewer/monailabel/infer/segmentation",
        params={"image": uid},
        data={"params": json.dumps({"result_extension": ".nrrd"})},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text[:500]
    shown = _results(server, uid)
    assert shown.status_code == 200, shown.text[:500]
    view = shown.json()
    assert view["source"] == "model" and view["model"] == "segmentation" and view["image"] == uid
    assert view["quality"] == {"doubtful": False, "findings": []}
    # the same figures as the server's own infer JSON of the same study (the same cascade, run again)
    again = requests.post(
        f"{server.url}/infer/segmentation", params={"image": uid, "output": "json"}, data={"params": "{}"}, timeout=120
    ).json()
    figures = view["figures"]
    assert figures["infarct_percent_lv"] == round(again["quantification"]["infarct"]["percent_lv"], 1)
    assert figures["lv_mass_g"] == round(again["quantification"]["lv"]["myocardium_mass_g"], 1)
    assert len(view["segments"]) == 17 and {row["segment"] for row in view["segments"]} == set(range(1, 18))
    from lgemri.qc import UNCERTAINTY_LIMIT

    assert 0 <= view["uncertainty"]["mutual_information"] < UNCERTAINTY_LIMIT == view["uncertainty"]["limit"]
    png = requests.get(f"{server.url}{RESULTS}/bullseye.png", params={"image": uid}, timeout=60)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")


def test_saved_label_replaces_the_model_result_and_makes_the_report(server, tmp_path):
    case = "Case_P001"
    series = _series(case)
    uid = series.series_uid
    requests.post(
        f"{server.url}/viewer/monailabel/infer/segmentation", params={"image": uid}, data={"params": "{}"}, timeout=120
    ).raise_for_status()
    assert _results(server, uid).json()["source"] == "model"
    truth = _truth(case)
    _save_final(server, case, truth, tmp_path)
    view = _results(server, uid).json()
    assert view["source"] == "final label"
    # the SEG is in the archive: the label the viewer shows on opening does not say it waits for it
    shown = requests.get(f"{server.url}/viewer/monailabel/label", params={"image": uid}, timeout=60)
    assert shown.status_code == 200 and json.loads(shown.headers["X-Cardiac-Mi-Label"])["pending_upload"] is False
    assert view["label"]["pending_upload"] is False
    expected = quantify(series.volume, Volume(truth.astype(np.uint8), series.volume.affine))
    assert view["figures"]["infarct_percent_lv"] == round(expected["infarct"]["percent_lv"], 1)
    assert view["figures"]["infarct_volume_ml"] == round(expected["infarct"]["volume_ml"], 1)
    assert view["figures"]["mvo_volume_ml"] == round(expected["no_reflow"]["volume_ml"], 1)
    assert view["figures"]["infarcted_segments"] == expected["infarcted_segments"]
    assert view["quality"]["doubtful"] is False

    before = _orthanc_modalities(server, series.study_uid)
    report = requests.post(f"{server.url}{RESULTS}/report", params={"image": uid, "rv_insertion_deg": 110}, timeout=120)
    assert report.status_code == 200, report.text[:500]
    assert report.headers["content-type"] == "application/pdf" and report.content.startswith(b"%PDF")
    outcome = json.loads(report.headers["X-Cardiac-Mi-Report"])
    assert outcome["stored"] is True, outcome
    assert outcome["study_uid"] == series.study_uid
    assert outcome["infarct_percent_lv"] == pytest.approx(expected["infarct"]["percent_lv"])
    after = _orthanc_modalities(server, series.study_uid)
    assert len(after) == len(before) + 2 and sorted(set(after) - set(before)) in (["DOC", "SR"], ["SR"], ["DOC"])
    for sop in (outcome["pdf_sop_instance_uid"], outcome["sr_sop_instance_uid"]):
        found = requests.post(
            f"{server.orthanc.url}/tools/find",
            auth=server.orthanc.auth,
            timeout=30,
            json={"Level": "Instance", "Query": {"SOPInstanceUID": sop}},
        ).json()
        assert len(found) == 1, sop


def test_doubtful_saved_label_says_why(server, tmp_path):
    case = "Case_P004"
    truth = _truth(case)
    shifted = np.zeros_like(truth)
    # the heart pushed against the image's left edge: the LV touches the field-of-view border
    columns = np.nonzero(truth.any(axis=(1, 2)))[0]
    shift = int(columns.min())
    shifted[: truth.shape[0] - shift] = truth[shift:]
    _save_final(server, case, shifted, tmp_path)
    view = _results(server, _series(case).series_uid).json()
    assert view["source"] == "final label"
    assert view["quality"]["doubtful"] is True
    codes = {f["code"] for f in view["quality"]["findings"]}
    assert "lv_at_border" in codes
    assert any("edge of the image" in f["message"] for f in view["quality"]["findings"])


def test_refusals_are_clear(server):
    bad = requests.get(f"{server.url}{RESULTS}", params={"image": "not a uid"}, timeout=30)
    assert bad.status_code == 422 and "UID" in bad.json()["detail"]
    uid = _series("Case_N003").series_uid
    none = requests.post(f"{server.url}{RESULTS}/report", params={"image": uid}, timeout=60)
    assert none.status_code == 409 and "save the segmentation first" in none.json()["detail"]
    angle = requests.post(f"{server.url}{RESULTS}/report", params={"image": uid, "rv_insertion_deg": 1000}, timeout=30)
    assert angle.status_code == 422 and "rv_insertion_deg" in angle.json()["detail"]
    missing = requests.get(f"{server.url}{RESULTS}/bullseye.png", params={"image": uid}, timeout=30)
    assert missing.status_code == 404 and "run the segmentation" in missing.json()["detail"]
