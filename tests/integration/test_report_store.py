"""The clinical report reaches a real Orthanc: Encapsulated PDF and SR land in the image's study."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from cardiac_mi.cli import main
from cardiac_mi.orthanc import EmbeddedOrthanc
from cardiac_mi.report import make_report
from cardiac_mi.store import DicomStore, upload
from lgemri.dicom import read_dicom_series

SAMPLE = Path(__file__).resolve().parents[2] / "sample-data"
CASE = "Case_P001"


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    with EmbeddedOrthanc(tmp_path_factory.mktemp("state")) as server:
        yield server


def test_report_stored_in_the_image_study(orthanc, tmp_path):
    store = DicomStore.from_orthanc(orthanc)
    assert upload([SAMPLE / "dicom" / CASE], store).ok
    study_uid = read_dicom_series(SAMPLE / "dicom" / CASE).study_uid
    paths = make_report(
        SAMPLE / "dicom" / CASE,
        SAMPLE / "emidec" / CASE / "Contours" / f"{CASE}.nii.gz",
        tmp_path / "report",
        store_url=orthanc.dicomweb_url,
        username=orthanc.user,
        password=orthanc.password,
    )
    assert paths["json"].is_file()
    series = requests.get(f"{orthanc.dicomweb_url}/studies/{study_uid}/series", auth=orthanc.auth, timeout=10).json()
    modalities = sorted(s["00080060"]["Value"][0] for s in series)
    assert modalities == ["DOC", "MR", "SR"]


def test_report_cli_with_wrong_password_is_a_clear_error(orthanc, tmp_path, capsys):
    code = main(
        [
            "-q",
            "report",
            "--image",
            str(SAMPLE / "dicom" / CASE),
            "--label",
            str(SAMPLE / "emidec" / CASE / "Contours" / f"{CASE}.nii.gz"),
            "--out",
            str(tmp_path / "r"),
            "--store",
            orthanc.dicomweb_url,
            "--user",
            orthanc.user,
            "--password",
            "wrong",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and orthanc.dicomweb_url in err
