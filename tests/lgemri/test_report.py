"""Tests for lgemri.report: schema, bullseye, HTML/PDF, DICOM Encapsulated PDF and SR, STOW, CLI."""

from __future__ import annotations

import argparse
import base64
import copy
import http.server
import json
import threading
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from cardiac_mi.commands.report import register
from cardiac_mi.report import make_report, store_dicom
from lgemri.dicom import read_dicom_series
from lgemri.errors import InputError
from lgemri.report.api import FILE_NAMES
from lgemri.report.bullseye import SEGMENT_GEOMETRY, bullseye_png
from lgemri.report.dicom_report import ENCAPSULATED_PDF_STORAGE
from lgemri.report.schema import SCHEMA, SCHEMA_VERSION, schema_errors, validate
from lgemri.volume import Volume, write_nifti

SAMPLE = Path(__file__).resolve().parents[2] / "sample-data"
P001_DICOM = SAMPLE / "dicom" / "Case_P001"
P001_LABEL = SAMPLE / "emidec" / "Case_P001" / "Contours" / "Case_P001.nii.gz"
N003_IMAGE = SAMPLE / "emidec" / "Case_N003" / "Images" / "Case_N003.nii.gz"
N003_LABEL = SAMPLE / "emidec" / "Case_N003" / "Contours" / "Case_N003.nii.gz"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
UNREACHABLE = "http://127.0.0.1:9/dicom-web"


@pytest.fixture(scope="module")
def dicom_report(tmp_path_factory) -> dict[str, Path]:
    """The report of sample Case_P001: DICOM image folder, NIfTI label."""
    return make_report(P001_DICOM, P001_LABEL, tmp_path_factory.mktemp("p001"), rv_insertion_deg=121.5)


@pytest.fixture(scope="module")
def nifti_report(tmp_path_factory) -> dict[str, Path]:
    """The report of sample Case_N003 (normal): NIfTI image and label."""
    return make_report(N003_IMAGE, N003_LABEL, tmp_path_factory.mktemp("n003"))


def _json(paths: dict[str, Path]) -> dict:
    return json.loads(paths["json"].read_text())


# -- files and the JSON ---------------------------------------------------------------------------


def test_all_report_files_are_written(dicom_report):
    assert set(dicom_report) == set(FILE_NAMES)
    for role, path in dicom_report.items():
        assert path.is_file() and path.name == FILE_NAMES[role]
    assert dicom_report["bullseye"].read_bytes().startswith(PNG_SIGNATURE)
    assert dicom_report["pdf"].read_bytes().startswith(b"%PDF")
    assert not list(dicom_report["json"].parent.glob(".*tmp*"))  # atomic writes left nothing behind


def test_json_report_follows_its_schema(dicom_report):
    report = _json(dicom_report)
    validate(report)
    assert report["schema_version"] == SCHEMA_VERSION == SCHEMA["version"]
    assert SCHEMA["$id"].endswith(SCHEMA_VERSION)
    q = report["quantification"]
    assert q["infarct"]["percent_lv"] == pytest.approx(18.544, abs=0.01)  # sample-data/phantom.json
    assert q["classification"]["label"] == "pathological"
    assert report["study"]["patient_id"] == "PHANTOM-P001"
    assert report["files"]["dicom"] == FILE_NAMES["dicom"]
    assert report["disclaimer"].lower().startswith("for research use only")


def test_broken_reports_fail_validation(dicom_report):
    report = _json(dicom_report)
    broken = copy.deepcopy(report)
    del broken["quantification"]["infarct"]["percent_lv"]
    broken["quantification"]["segments"][3]["transmurality_bin"] = "half"
    broken["schema_version"] = "0.9"
    with pytest.raises(InputError, match="percent_lv") as excinfo:
        validate(broken)
    assert "transmurality_bin" in str(excinfo.value) and "schema_version" in str(excinfo.value)
    wrong_type = copy.deepcopy(report)
    wrong_type["quantification"]["lv"]["myocardium_mass_g"] = "81 g"
    assert schema_errors(wrong_type)


@pytest.mark.parametrize("use_jsonschema", [True, False])
def test_both_validators_agree(dicom_report, use_jsonschema):
    report = _json(dicom_report)
    assert schema_errors(report, use_jsonschema=use_jsonschema) == []
    broken = copy.deepcopy(report)
    broken["quantification"]["segments"] = broken["quantification"]["segments"][:16]
    broken["quantification"]["n_infarcted_segments"] = True
    del broken["study"]
    errors = schema_errors(broken, use_jsonschema=use_jsonschema)
    assert len(errors) == 3
    assert any("segments" in e for e in errors) and any("study" in e for e in errors)


def test_html_is_one_self_contained_page(dicom_report):
    text = dicom_report["html"].read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert "research use" in text.lower()
    assert "PHANTOM-P001" in text and "Phantom P001" in text  # DICOM person name made readable
    for method in ("2SD", "3SD", "5SD", "FWHM", "Segmentation (labels 3+4)"):
        assert method in text
    start = text.index("data:image/png;base64,") + len("data:image/png;base64,")
    png = base64.b64decode(text[start : text.index('"', start)])
    assert png.startswith(PNG_SIGNATURE)
    assert "mid anterolateral" in text  # the segment table


# -- DICOM ----------------------------------------------------------------------------------------


def test_encapsulated_pdf_is_in_the_image_study(dicom_report):
    series = read_dicom_series(P001_DICOM)
    ds = pydicom.dcmread(dicom_report["dicom"])
    assert ds.SOPClassUID == ENCAPSULATED_PDF_STORAGE == ds.file_meta.MediaStorageSOPClassUID
    assert ds.StudyInstanceUID == series.study_uid
    assert ds.PatientID == series.patient_id and str(ds.PatientName) == series.patient_name
    assert ds.SeriesInstanceUID != series.series_uid and ds.Modality == "DOC"
    assert ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
    document = bytes(ds.EncapsulatedDocument)
    assert document.startswith(b"%PDF")
    assert document[: ds.EncapsulatedDocumentLength] == dicom_report["pdf"].read_bytes()
    referenced = {item.ReferencedSOPInstanceUID for item in ds.SourceInstanceSequence}
    assert referenced == {d.SOPInstanceUID for d in series.datasets}
    assert ds.ConceptNameCodeSequence[0].CodeValue == "126000"
    assert _json(dicom_report)["dicom"]["pdf_sop_instance_uid"] == ds.SOPInstanceUID


def _numbers(item, found: list) -> list:
    """(concept meaning, value) of every NUM content item under ``item``."""
    for child in getattr(item, "ContentSequence", []):
        if child.ValueType == "NUM":
            value = float(child.MeasuredValueSequence[0].NumericValue)
            found.append((child.ConceptNameCodeSequence[0].CodeMeaning, value))
        _numbers(child, found)
    return found


def test_measurement_sr_holds_the_measures(dicom_report):
    series = read_dicom_series(P001_DICOM)
    ds = pydicom.dcmread(dicom_report["sr"])
    report = _json(dicom_report)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert ds.StudyInstanceUID == series.study_uid and ds.PatientID == series.patient_id
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    numbers = _numbers(ds, [])
    q = report["quantification"]
    assert ("Left Ventricle Mass", pytest.approx(q["lv"]["myocardium_mass_g"], abs=1e-3)) in numbers
    percents = [v for name, v in numbers if name == "Percent of left ventricular myocardium"]
    assert percents[0] == pytest.approx(q["infarct"]["percent_lv"], abs=1e-3)
    assert percents[1] == pytest.approx(q["no_reflow"]["percent_lv"], abs=1e-3)
    present = sum(row["present"] for row in q["segments"])
    assert sum(name == "Mean transmural extent of infarct" for name, _ in numbers) == present

    def evidence(keyword):
        return {
            item.ReferencedSOPInstanceUID
            for study in ds.get(keyword, [])
            for s in study.ReferencedSeriesSequence
            for item in s.ReferencedSOPSequence
        }

    assert evidence("CurrentRequestedProcedureEvidenceSequence") == {d.SOPInstanceUID for d in series.datasets}
    assert evidence("PertinentOtherEvidenceSequence") == {report["dicom"]["pdf_sop_instance_uid"]}
    groups = hd.sr.Comprehensive3DSR.from_dataset(ds).content.get_image_measurement_groups()  # TID 1500 parses
    names = [g.tracking_identifier for g in groups[:3]]
    assert names == ["LV myocardium", "Infarct (labels 3+4)", "No-reflow (label 4)"]
    assert len(groups) == 3 + present


def test_nifti_images_get_a_new_study(nifti_report):
    report = _json(nifti_report)
    pdf = pydicom.dcmread(nifti_report["dicom"])
    sr = pydicom.dcmread(nifti_report["sr"])
    assert pdf.StudyInstanceUID == sr.StudyInstanceUID == report["study"]["study_uid"]
    assert pdf.PatientID == "Case_N003" == report["study"]["patient_id"]
    assert "SourceInstanceSequence" not in pdf
    assert report["study"]["source"] == "nifti"


def test_a_normal_study_reports_no_infarct(nifti_report):
    report = _json(nifti_report)
    q = report["quantification"]
    assert q["infarct"]["present"] is False and q["classification"]["label"] == "normal"
    assert q["infarcted_segments"] == []
    assert "none found" in nifti_report["html"].read_text()


# -- bullseye -------------------------------------------------------------------------------------


def test_bullseye_layout_is_the_standard_aha_display():
    def centre(segment):
        r0, r1, start, end = SEGMENT_GEOMETRY[segment]
        return (start + end) / 2.0 % 360.0, (r0 + r1) / 2.0

    assert centre(1)[0] == 90.0  # basal anterior at 12 o'clock
    assert centre(2)[0] == 150.0 and centre(3)[0] == 210.0  # septum on the left, counter-clockwise
    assert centre(4)[0] == 270.0 and centre(6)[0] == 30.0
    assert centre(7)[0] == 90.0 and centre(1)[1] > centre(7)[1] > centre(13)[1] > centre(17)[1] == 0.125
    assert centre(13)[0] == 90.0 and centre(14)[0] == 180.0 and centre(16)[0] == 0.0


def test_bullseye_png_with_missing_segments(dicom_report):
    q = _json(dicom_report)["quantification"]
    assert q["segments"][16]["present"] is False  # no apex cap in Case_P001
    assert bullseye_png(q, dpi=40).startswith(PNG_SIGNATURE)


# -- bad input ------------------------------------------------------------------------------------


def test_label_without_myocardium_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty.nii.gz"
    image = pydicom.dcmread(P001_DICOM / "IM_0001.dcm")
    series = read_dicom_series(P001_DICOM)
    write_nifti(Volume(np.zeros(series.volume.shape, dtype=np.uint8), series.volume.affine), empty)
    with pytest.raises(InputError, match="no myocardium"):
        make_report(P001_DICOM, empty, tmp_path / "out")
    assert image.PatientID  # the inputs are untouched
    assert not (tmp_path / "out" / "report.json").exists()


def test_one_slice_study(tmp_path):
    from lgemri.volume import read_nifti

    image, label = read_nifti(N003_IMAGE), read_nifti(N003_LABEL)
    k = 4
    write_nifti(Volume(image.array[:, :, k : k + 1], image.affine), tmp_path / "image.nii.gz")
    write_nifti(Volume(label.array[:, :, k : k + 1], label.affine), tmp_path / "label.nii.gz")
    paths = make_report(tmp_path / "image.nii.gz", tmp_path / "label.nii.gz", tmp_path / "out")
    q = _json(paths)["quantification"]
    assert [s["level"] for s in q["slices"]] == ["mid"]
    assert [row["segment"] for row in q["segments"] if row["present"]] == list(range(7, 13))
    assert any("one slice" in w for w in q["warnings"])


def test_label_of_another_grid_is_rejected(tmp_path):
    with pytest.raises(InputError, match="shape"):
        make_report(P001_DICOM, N003_LABEL, tmp_path)


# -- STOW-RS --------------------------------------------------------------------------------------


def test_unreachable_server_is_named(dicom_report):
    with pytest.raises(InputError, match=r"127\.0\.0\.1:9.*unreachable"):
        store_dicom([dicom_report["dicom"]], UNREACHABLE, username="u", password="p", timeout=5)
    with pytest.raises(InputError, match="http"):
        store_dicom([dicom_report["dicom"]], "localhost:8042/dicom-web")


def test_failed_store_still_writes_the_report(tmp_path):
    with pytest.raises(InputError, match="unreachable"):
        make_report(N003_IMAGE, N003_LABEL, tmp_path, store_url=UNREACHABLE)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["stored"] is None and (tmp_path / "report-pdf.dcm").is_file()


class _StowHandler(http.server.BaseHTTPRequestHandler):
    received: list = []
    status = 200

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = self.headers
        type(self).received.append((self.path, headers.get("Authorization"), headers.get("Content-Type"), body))
        self.send_response(type(self).status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def stow_server():
    _StowHandler.received = []
    _StowHandler.status = 200
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StowHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/dicom-web", _StowHandler
    server.shutdown()
    server.server_close()


def test_store_posts_the_report_with_basic_auth(dicom_report, stow_server):
    url, handler = stow_server
    uids = store_dicom([dicom_report["dicom"], dicom_report["sr"]], url, username="orthanc", password="secret")
    assert len(uids) == 2
    path, auth, content_type, body = handler.received[0]
    assert path == "/dicom-web/studies"
    assert auth == "Basic " + base64.b64encode(b"orthanc:secret").decode()
    assert content_type.startswith("multipart/related") and 'type="application/dicom"' in content_type
    assert all(uid.encode() in body for uid in uids)


def test_rejected_credentials_are_named(dicom_report, stow_server):
    url, handler = stow_server
    handler.status = 401
    with pytest.raises(InputError, match="credentials"):
        store_dicom([dicom_report["dicom"]], url, username="orthanc", password="wrong")


# -- command line ---------------------------------------------------------------------------------


def _parser(default_store=None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cardiac-mi")
    register(parser.add_subparsers(dest="command", required=True), default_store=default_store)
    return parser


def test_cli_report_writes_the_files(tmp_path, stow_server):
    url, handler = stow_server
    args = _parser().parse_args(
        [
            "report",
            "--image",
            str(N003_IMAGE),
            "--label",
            str(N003_LABEL),
            "--out",
            str(tmp_path),
            "--viability-threshold",
            "75",
            "--rv-insertion",
            "103.5",
            "--store",
            url,
            "--user",
            "u",
            "--password",
            "p",
        ]
    )
    args.func(args)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["quantification"]["parameters"]["viability_threshold_percent"] == 75.0
    assert report["quantification"]["parameters"]["rv_insertion_source"] == "given"
    assert report["stored"]["url"] == url and len(report["stored"]["sop_instance_uids"]) == 2
    assert len(handler.received) == 1


def test_cli_bad_input(tmp_path, capsys):
    parser = _parser()
    missing = str(tmp_path / "missing.nii.gz")
    args = parser.parse_args(["report", "--image", missing, "--label", str(N003_LABEL), "--out", str(tmp_path)])
    with pytest.raises(InputError, match="missing.nii.gz"):
        args.func(args)
    with pytest.raises(SystemExit):
        parser.parse_args(["report", "--image", "a", "--label", "b", "--out", "c", "--viability-threshold", "150"])
    assert "percentage" in capsys.readouterr().err


def test_cli_store_without_url_uses_the_configured_server(tmp_path, stow_server, monkeypatch):
    url, handler = stow_server
    for name in ("CARDIAC_MI_DICOMWEB_URL", "CARDIAC_MI_DICOMWEB_USER", "CARDIAC_MI_DICOMWEB_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    argv = ["report", "--image", str(N003_IMAGE), "--label", str(N003_LABEL), "--out", str(tmp_path), "--store"]
    args = _parser().parse_args(argv)
    with pytest.raises(InputError, match="CARDIAC_MI_DICOMWEB_URL"):
        args.func(args)
    args = _parser(default_store=lambda: (url, "orthanc", "secret")).parse_args(argv)
    args.func(args)
    assert handler.received[0][1] == "Basic " + base64.b64encode(b"orthanc:secret").decode()
