"""The embedded Orthanc and DICOMweb uploads against a real Orthanc (Debian packages orthanc, orthanc-dicomweb).

One Orthanc serves the module (free ports, a tmp state folder); a few tests start their own. Every
Orthanc is stopped by its fixture or ``with`` block, and the last test checks that none is left.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import socket
import stat
from pathlib import Path

import pytest
import requests

from cardiac_mi import orthanc as orthanc_module
from cardiac_mi.commands.upload import register
from cardiac_mi.orthanc import (
    AE_TITLE,
    EmbeddedOrthanc,
    OrthancError,
    find_dicomweb_plugin,
    find_orthanc_binary,
    free_port,
    read_credentials,
    running_orthanc,
    wait_for_http,
)
from cardiac_mi.store import DicomStore, DicomStoreError, upload
from lgemri.errors import InputError

SAMPLE = Path(__file__).resolve().parents[2] / "sample-data" / "dicom"

STARTED_PIDS: list[int] = []


def _start(orthanc: EmbeddedOrthanc) -> EmbeddedOrthanc:
    orthanc.start()
    STARTED_PIDS.append(orthanc.pid)
    return orthanc


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    """The module's Orthanc, with a DICOM server on a free port."""
    server = EmbeddedOrthanc(tmp_path_factory.mktemp("state"), http_port=0, dicom_port=0)
    _start(server)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def store(orthanc) -> DicomStore:
    return DicomStore.from_orthanc(orthanc)


@pytest.fixture(scope="module")
def first_upload(store):
    return upload([SAMPLE / "Case_P001"], store)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cardiac-mi")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


# --------------------------------------------------------------------------------------------- server


def test_system_answers_with_credentials_only(orthanc):
    assert orthanc.version and orthanc.startup_seconds is not None
    response = requests.get(f"{orthanc.url}/system", auth=orthanc.auth, timeout=10)
    assert response.status_code == 200
    assert response.json()["DicomAet"] == AE_TITLE
    assert requests.get(f"{orthanc.url}/system", timeout=10).status_code == 401
    assert requests.get(f"{orthanc.dicomweb_url}/studies", timeout=10).status_code == 401
    assert requests.get(f"{orthanc.url}/system", auth=(orthanc.user, "wrong"), timeout=10).status_code == 401
    assert orthanc.dicomweb_url == f"http://127.0.0.1:{orthanc.http_port}/dicom-web"


def test_config_and_credentials_files(orthanc):
    folder = orthanc.state / "orthanc"
    config = json.loads((folder / "orthanc.json").read_text())
    assert config["RemoteAccessAllowed"] is False and config["AuthenticationEnabled"] is True
    assert config["DicomAet"] == "CARDIACMI" and config["DicomServerEnabled"] is True
    assert config["StorageDirectory"] == config["IndexDirectory"] == str((folder / "db").resolve())
    assert config["DicomWeb"]["Enable"] and config["DicomWeb"]["Root"] == "/dicom-web/"
    assert config["OverwriteInstances"] is False and config["StableAge"] <= 5
    assert Path(config["Plugins"][0]) == find_dicomweb_plugin()
    credentials = json.loads((folder / "credentials.json").read_text())
    assert (credentials["user"], credentials["password"]) == orthanc.auth
    for name in ("credentials.json", "orthanc.json"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    assert (folder / "orthanc.log").read_text().strip()
    found = running_orthanc(orthanc.state)
    assert found is not None and found.pid == orthanc.pid and found.auth == orthanc.auth


def test_dicom_echo_needs_our_ae_title(orthanc):
    from pynetdicom import AE

    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context("1.2.840.10008.1.1")  # Verification
    assoc = ae.associate("127.0.0.1", orthanc.dicom_port, ae_title=AE_TITLE)
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    assert not ae.associate("127.0.0.1", orthanc.dicom_port, ae_title="SOMEONE").is_established


def test_lifecycle_credentials_kept_dicom_off(tmp_path):
    state = tmp_path / "state"
    with EmbeddedOrthanc(state) as server:
        STARTED_PIDS.append(server.pid)
        assert server.dicom_port is None
        assert json.loads(server.config_path.read_text())["DicomServerEnabled"] is False
        assert running_orthanc(state).pid == server.pid
        first_auth = server.auth
        with pytest.raises(OrthancError, match="already runs"):
            EmbeddedOrthanc(state).start()
    assert not server.running and running_orthanc(state) is None
    assert read_credentials(state) == first_auth
    assert not (state / "orthanc" / "server.json").exists()
    with EmbeddedOrthanc(state, user="alice", password="s3cret") as server:
        STARTED_PIDS.append(server.pid)
        assert server.auth != first_auth
        assert requests.get(f"{server.url}/system", auth=("alice", "s3cret"), timeout=10).status_code == 200
    assert json.loads((state / "orthanc" / "credentials.json").read_text()) == {"user": "alice", "password": "s3cret"}


def test_port_in_use(tmp_path, monkeypatch):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OrthancError, match=f"HTTP port {port} is already in use"):
            EmbeddedOrthanc(tmp_path / "a", http_port=port).start()
        # Lose the race after the check: Orthanc itself fails to bind and exits.
        monkeypatch.setattr(orthanc_module, "port_in_use", lambda p: False)
        server = EmbeddedOrthanc(tmp_path / "b", http_port=port, start_timeout=20)
        with pytest.raises(OrthancError, match=rf"could not listen on HTTP port {port}(.|\n)*already in use"):
            server.start()
        assert not server.running


def test_missing_binary_and_plugin(tmp_path, monkeypatch):
    with pytest.raises(OrthancError, match="apt-get install orthanc orthanc-dicomweb"):
        EmbeddedOrthanc(tmp_path, binary=tmp_path / "Orthanc").start()
    with pytest.raises(OrthancError, match="DICOMweb plugin"):
        EmbeddedOrthanc(tmp_path, plugin=tmp_path / "libOrthancDicomWeb.so").start()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(orthanc_module, "BINARY_LOCATIONS", ())
    with pytest.raises(OrthancError, match="apt-get install orthanc orthanc-dicomweb"):
        find_orthanc_binary()
    monkeypatch.setattr(orthanc_module, "PLUGIN_GLOBS", (str(tmp_path / "libOrthancDicomWeb.so*"),))
    with pytest.raises(OrthancError, match="apt-get install orthanc orthanc-dicomweb"):
        find_dicomweb_plugin()


def test_wait_for_http_times_out():
    with pytest.raises(TimeoutError, match="did not answer within"):
        wait_for_http(f"http://127.0.0.1:{free_port()}/system", timeout=0.3)


# --------------------------------------------------------------------------------------------- store


def test_upload_case_and_find_it(first_upload, store):
    files = sorted((SAMPLE / "Case_P001").glob("*.dcm"))
    assert sorted(first_upload.stored) == files
    assert not first_upload.skipped and not first_upload.refused
    assert len(first_upload.studies) == 1
    (study_uid,) = first_upload.studies
    found = {s.uid: s for s in store.studies(modality="MR")}
    assert study_uid in found
    assert found[study_uid].instances == len(files) and "MR" in found[study_uid].modalities
    assert found[study_uid].patient_id
    assert store.studies(modality="CT") == []


def test_upload_again_is_skipped(first_upload, store):
    again = upload([SAMPLE / "Case_P001"], store)
    assert sorted(again.skipped) == sorted(first_upload.stored)
    assert not again.stored and not again.refused
    assert again.studies == first_upload.studies


def test_bad_files_refused_with_reasons(tmp_path, store, caplog):
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = SAMPLE / "Case_P002" / "IM_0001.dcm"
    shutil.copy(good, folder / "good.dcm")
    shutil.copy(good, folder / "same-uid-again.dcm")
    data = good.read_bytes()
    (folder / "truncated.dcm").write_bytes(data[: len(data) // 2])
    (folder / "notes.txt").write_text("not an image\n")
    (folder / "empty.dcm").write_bytes(b"")
    (folder / ".hidden").write_text("ignored")
    with caplog.at_level(logging.WARNING, logger="cardiac_mi.store"):
        result = upload([folder], store)
    reasons = {r.path.name: r.reason for r in result.refused}
    assert set(reasons) == {"truncated.dcm", "notes.txt", "empty.dcm"}
    assert "truncated" in reasons["truncated.dcm"]
    assert "not a DICOM file" in reasons["notes.txt"]
    assert "empty" in reasons["empty.dcm"]
    assert [p.name for p in result.stored] == ["good.dcm"]
    assert [p.name for p in result.skipped] == ["same-uid-again.dcm"]
    assert "refused" in caplog.text and "truncated.dcm" in caplog.text
    assert result.summary() == "1 stored, 1 already there, 3 refused (1 study)"


def test_unreachable_and_wrong_credentials(store, first_upload):
    url = f"http://127.0.0.1:{free_port()}/dicom-web"
    with pytest.raises(DicomStoreError, match=f"cannot reach DICOMweb server at {url}"):
        DicomStore(url).ping()
    with pytest.raises(DicomStoreError, match=f"cannot reach DICOMweb server at {url}"):
        DicomStore(url).stow([SAMPLE / "Case_P001" / "IM_0001.dcm"])
    with pytest.raises(DicomStoreError, match="rejected the given user and password"):
        DicomStore(store.url, "cardiacmi", "wrong").ping()
    with pytest.raises(DicomStoreError, match="asks for a user and password"):
        DicomStore(store.url).ping()
    rest_root = store.url.removesuffix("/dicom-web")
    with pytest.raises(DicomStoreError, match=f"{rest_root} does not look like a DICOMweb root"):
        DicomStore(rest_root, *store.session.auth).ping()


# --------------------------------------------------------------------------------------------- CLI


def test_upload_cli_to_embedded_orthanc(orthanc, store, tmp_path, caplog):
    case = SAMPLE / "Case_N003"
    args = _parser().parse_args(["upload", str(case), "--state", str(orthanc.state)])
    with caplog.at_level(logging.INFO, logger="cardiac_mi"):
        args.func(args)
    n = len(list(case.glob("*.dcm")))
    assert f"{n} stored, 0 already there, 0 refused (1 study)" in caplog.text
    assert any(s.patient_id.endswith("N003") for s in store.studies())

    bad = tmp_path / "bad.dcm"
    bad.write_text("nope")
    args = _parser().parse_args(["upload", str(case / "IM_0001.dcm"), str(bad), "--state", str(orthanc.state)])
    with pytest.raises(InputError, match="1 of 2 files were refused"):
        args.func(args)


def test_upload_cli_other_server_and_errors(orthanc, tmp_path, monkeypatch):
    user, password = orthanc.auth
    case = SAMPLE / "Case_P002"
    server = ["--studies", orthanc.dicomweb_url, "--user", user, "--password", password]
    args = _parser().parse_args(["upload", str(case), *server])
    args.func(args)

    monkeypatch.setenv("CARDIAC_MI_STATE", str(tmp_path / "nowhere"))
    args = _parser().parse_args(["upload", str(case)])
    with pytest.raises(InputError, match="is not running: start it with `cardiac-mi serve --state"):
        args.func(args)
    args = _parser().parse_args(["upload", str(tmp_path / "missing"), *server])
    with pytest.raises(InputError, match="no such file or folder"):
        args.func(args)
    args = _parser().parse_args(["upload", str(case), "--studies", orthanc.dicomweb_url])
    with pytest.raises(DicomStoreError, match="asks for a user and password"):
        args.func(args)


def test_zz_no_orthanc_left_running(orthanc):
    """Every Orthanc but the module's has stopped (the module's stops at teardown, checked below)."""
    for pid in STARTED_PIDS:
        if pid == orthanc.pid:
            continue
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.fixture(scope="module", autouse=True)
def _check_stopped_at_end():
    yield
    for pid in STARTED_PIDS:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        pytest.fail(f"Orthanc pid {pid} is still running after the tests")
