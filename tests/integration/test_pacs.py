"""``cardiac-mi pacs`` against real DICOM peers: an Orthanc acting as the PACS, an Orthanc as the product's store.

The PACS holds four phantom studies (patients PHANTOM-P001, -P002, -N003 dated 2025-01-01, and an earlier
PHANTOM-P002 study dated 2024-03-15); the P001 study also has a DICOM SEG series. It knows our AE titles:
``CARDIACMI`` (the product Orthanc's DICOM port, the C-MOVE destination), ``CMIRECV`` (our own receive
port for C-MOVE) and ``CMILISTEN``/``CMICLI`` (listeners it sends to). A third Orthanc speaks DICOM over
TLS with certificates made here.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
import requests

from cardiac_mi.cli import main
from cardiac_mi.orthanc import EmbeddedOrthanc, free_port
from cardiac_mi.pacs import (
    Listener,
    PacsError,
    PacsSettings,
    Query,
    Spool,
    Tls,
    echo,
    find,
    normalize_date,
    retrieve,
)
from cardiac_mi.store import DicomStore, DicomStoreError
from lgemri.dicom import read_dicom_series, write_dicom_series
from lgemri.errors import InputError
from lgemri.seg import write_seg
from lgemri.volume import read_nifti

PACS_AET = "TESTPACS"
SCRIPT = Path(sys.executable).parent / "cardiac-mi"


# --------------------------------------------------------------------------------------------- data


@pytest.fixture(scope="module")
def studies(phantom_dir, tmp_path_factory) -> dict:
    """The PACS's content on disk: ``{"folder", "by_patient", "sops": {study: {series: {sop}}}, ...}``."""
    root = tmp_path_factory.mktemp("pacs_data")
    shutil.copytree(phantom_dir / "dicom", root, dirs_exist_ok=True)
    p001 = read_dicom_series(root / "Case_P001")
    label = read_nifti(phantom_dir / "emidec" / "Case_P001" / "Contours" / "Case_P001.nii.gz")
    (root / "Case_P001_seg").mkdir()
    write_seg(label, p001, root / "Case_P001_seg" / "seg.dcm", manual=True)
    image = read_nifti(phantom_dir / "emidec" / "Case_P002" / "Images" / "Case_P002.nii.gz")
    write_dicom_series(
        image,
        root / "Case_P002_2024",
        patient_id="PHANTOM-P002",
        patient_name="Phantom^P002",
        study_date="20240315",
        study_description="earlier LGE",
    )
    sops: dict[str, dict[str, set[str]]] = {}
    info: dict[str, dict] = {}
    for path in sorted(root.rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        sops.setdefault(ds.StudyInstanceUID, {}).setdefault(ds.SeriesInstanceUID, set()).add(ds.SOPInstanceUID)
        info.setdefault(ds.StudyInstanceUID, {"patient": ds.PatientID, "date": ds.StudyDate, "series": {}})
        info[ds.StudyInstanceUID]["series"][ds.SeriesInstanceUID] = ds.Modality
    by_patient: dict[str, list[str]] = {}
    for uid, item in sorted(info.items(), key=lambda kv: kv[1]["date"]):
        by_patient.setdefault(item["patient"], []).append(uid)
    return {"folder": root, "sops": sops, "info": info, "by_patient": by_patient}


def _all_sops(studies: dict, study_uid: str, modality: str | None = None) -> set[str]:
    series = studies["sops"][study_uid]
    return {
        sop
        for uid, sops in series.items()
        for sop in sops
        if modality is None or studies["info"][study_uid]["series"][uid] == modality
    }


# --------------------------------------------------------------------------------------------- peers


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    taken: list[int] = []
    names = ("pacs", "product", "receive", "listen", "listen_cli", "tls_pacs", "tls_listen")
    for _ in names:
        taken.append(free_port(exclude=tuple(taken)))
    return dict(zip(names, taken))


def _modality(aet: str, port: int, **extra) -> dict:
    return {
        "AET": aet,
        "Host": "127.0.0.1",
        "Port": port,
        "AllowEcho": True,
        "AllowFind": True,
        "AllowGet": True,
        "AllowMove": True,
        "AllowStore": True,
        **extra,
    }


@pytest.fixture(scope="module")
def product(tmp_path_factory, ports):
    """The product's store: an embedded Orthanc with its DICOM port (AE CARDIACMI) for C-MOVE."""
    with EmbeddedOrthanc(tmp_path_factory.mktemp("product_state"), http_port=0, dicom_port=ports["product"]) as server:
        yield server


@pytest.fixture(scope="module")
def pacs(tmp_path_factory, ports, studies):
    """The PACS: an Orthanc that knows our AE titles, with the phantom studies uploaded over REST."""
    config = {
        "DicomModalities": {
            "cardiacmi": _modality("CARDIACMI", ports["product"]),
            "receiver": _modality("CMIRECV", ports["receive"]),
            "listener": _modality("CMILISTEN", ports["listen"]),
            "listener_cli": _modality("CMICLI", ports["listen_cli"]),
            "find_only": _modality("CMIFIND", ports["receive"], AllowGet=False, AllowMove=False),
        }
    }
    with EmbeddedOrthanc(
        tmp_path_factory.mktemp("pacs_state"), http_port=0, dicom_port=ports["pacs"], aet=PACS_AET, extra_config=config
    ) as server:
        for path in sorted(studies["folder"].rglob("*.dcm")):
            response = requests.post(f"{server.url}/instances", data=path.read_bytes(), auth=server.auth, timeout=30)
            response.raise_for_status()
        yield server


@pytest.fixture(scope="module")
def settings(pacs) -> PacsSettings:
    return PacsSettings("127.0.0.1", pacs.dicom_port, PACS_AET, "CARDIACMI", timeout=10)


@pytest.fixture
def store(product) -> DicomStore:
    """The product's store, emptied before the test."""
    for orthanc_id in requests.get(f"{product.url}/studies", auth=product.auth, timeout=10).json():
        requests.delete(f"{product.url}/studies/{orthanc_id}", auth=product.auth, timeout=10).raise_for_status()
    return DicomStore.from_orthanc(product)


def _store_content(store: DicomStore) -> dict[str, tuple[int | None, int | None]]:
    """Study UID -> (series, instances) as the store's QIDO-RS reports them."""
    return {study.uid: (study.series, study.instances) for study in store.studies()}


def _orthanc_study_id(server: EmbeddedOrthanc, study_uid: str) -> str:
    found = requests.post(f"{server.url}/tools/lookup", data=study_uid, auth=server.auth, timeout=10).json()
    return next(item["ID"] for item in found if item["Type"] == "Study")


def _wait_for(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@pytest.fixture(autouse=True)
def _logging(restore_logging):
    """``cardiac-mi`` commands reconfigure logging; each test gets it back (tests/conftest.py)."""


def _pacs_args(settings: PacsSettings) -> list[str]:
    return ["--host", settings.host, "--port", str(settings.port), "--pacs-aet", settings.called_aet]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.startswith("cardiac-mi pacs: error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------------------------- echo, find


def test_echo(settings):
    assert echo(settings) < 5.0


def test_echo_cli_from_environment(settings, monkeypatch, capsys):
    monkeypatch.setenv("CARDIAC_MI_PACS_HOST", settings.host)
    monkeypatch.setenv("CARDIAC_MI_PACS_PORT", str(settings.port))
    monkeypatch.setenv("CARDIAC_MI_PACS_AET", settings.called_aet)
    assert main(["pacs", "echo"]) == 0
    err = capsys.readouterr().err
    assert f"C-ECHO {PACS_AET}@127.0.0.1:{settings.port} as CARDIACMI: success" in err
    assert "pynetdicom" not in err  # its association log stays quiet without -v


def test_find_by_patient_id(settings, studies):
    matches = find(settings, Query(patient_id="PHANTOM-P002"))
    assert [m.study_uid for m in matches] == studies["by_patient"]["PHANTOM-P002"]
    assert [m.study_date for m in matches] == ["20240315", "20250101"]
    for match in matches:
        assert match.modalities == ("MR",)
        assert match.instances == len(_all_sops(studies, match.study_uid))
        assert match.series == 1


def test_find_by_date_and_ranges(settings, studies):
    earlier = studies["by_patient"]["PHANTOM-P002"][0]
    assert [m.study_uid for m in find(settings, Query(date="20240101-20241231"))] == [earlier]
    assert [m.study_uid for m in find(settings, Query(date="-20241231"))] == [earlier]
    assert [m.study_uid for m in find(settings, Query(date="2024-01-01..2024-12-31"))] == [earlier]
    assert len(find(settings, Query(date="20250101"))) == 3
    assert len(find(settings, Query(date="20250101-"))) == 3
    assert find(settings, Query(date="19990101-19991231")) == []


def test_find_by_modality_at_study_and_series_level(settings, studies):
    p001 = studies["by_patient"]["PHANTOM-P001"][0]
    seg_studies = find(settings, Query(modality="SEG"))
    assert [m.study_uid for m in seg_studies] == [p001]
    assert seg_studies[0].modalities == ("MR", "SEG")
    assert seg_studies[0].series == 2

    seg_series = find(settings, Query(modality="seg"), level="series")
    seg_uid = next(uid for uid, mod in studies["info"][p001]["series"].items() if mod == "SEG")
    assert [(m.study_uid, m.series_uid, m.modalities, m.instances) for m in seg_series] == [
        (p001, seg_uid, ("SEG",), 1)
    ]

    mr_series = find(settings, Query(modality="MR"), level="SERIES")
    assert len(mr_series) == 4
    assert {m.series_uid for m in mr_series} == {
        uid for info in studies["info"].values() for uid, mod in info["series"].items() if mod == "MR"
    }


def test_find_cli_json_and_no_match(settings, studies, capsys):
    import json

    assert main(["pacs", "find", *_pacs_args(settings), "--patient-id", "PHANTOM-P00*", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert sorted(m["patient_id"] for m in found) == ["PHANTOM-P001", "PHANTOM-P002", "PHANTOM-P002"]

    assert main(["pacs", "find", *_pacs_args(settings), "--patient-id", "NOBODY"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no study on TESTPACS@127.0.0.1" in captured.err and "matches patient ID NOBODY" in captured.err


# --------------------------------------------------------------------------------------------- retrieve


def test_retrieve_by_c_get(settings, store, studies, tmp_path):
    p001 = studies["by_patient"]["PHANTOM-P001"][0]
    spool = Spool(tmp_path / "spool")
    report = retrieve(settings, store, Query(patient_id="PHANTOM-P001"), spool=spool)
    assert report.ok, report.summary()
    expected = _all_sops(studies, p001)
    [item] = report.items
    assert (item.expected, item.completed, item.failed, item.in_store) == (
        len(expected),
        len(expected),
        0,
        len(expected),
    )
    assert len(report.stow.stored) == len(expected)
    assert store.instance_uids(p001) == expected
    assert _store_content(store) == {p001: (2, len(expected))}  # the MR series and the SEG
    assert spool.pending() == []


def test_retrieve_by_c_get_only_the_modality_series(settings, store, studies, tmp_path):
    p001 = studies["by_patient"]["PHANTOM-P001"][0]
    report = retrieve(settings, store, Query(study_uids=(p001,), modality="MR"), spool=Spool(tmp_path / "spool"))
    assert report.ok and [item.series_uid is not None for item in report.items] == [True]
    assert store.instance_uids(p001) == _all_sops(studies, p001, "MR")
    assert _store_content(store) == {p001: (1, len(_all_sops(studies, p001, "MR")))}


def test_retrieve_cli_by_c_move_into_the_product_orthanc(settings, store, studies, product, tmp_path, capsys):
    earlier = studies["by_patient"]["PHANTOM-P002"][0]
    code = main(
        [
            "pacs",
            "retrieve",
            *_pacs_args(settings),
            "--date",
            "20240101-20241231",
            "--method",
            "move",
            "--state",
            str(product.state),
            "--spool",
            str(tmp_path / "spool"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"C-MOVE destination: the embedded Orthanc, AE CARDIACMI on DICOM port {product.dicom_port}" in err
    expected = _all_sops(studies, earlier)
    assert f"{len(expected)} of {len(expected)} instances in the store" in err
    assert store.instance_uids(earlier) == expected
    assert _store_content(store) == {earlier: (1, len(expected))}
    assert not (tmp_path / "spool" / "incoming").exists()  # C-MOVE to the Orthanc does not use the spool


def test_retrieve_by_c_move_to_our_receive_port(settings, store, studies, ports, tmp_path):
    n003 = studies["by_patient"]["PHANTOM-N003"][0]
    receiver = PacsSettings(settings.host, settings.port, PACS_AET, "CMIRECV", timeout=10)
    spool = Spool(tmp_path / "spool")
    report = retrieve(
        receiver, store, Query(patient_id="PHANTOM-N003"), spool=spool, method="move", receive_port=ports["receive"]
    )
    assert report.ok, report.summary()
    assert report.destination == "CMIRECV"
    assert store.instance_uids(n003) == _all_sops(studies, n003)
    assert len(report.stow.stored) == len(_all_sops(studies, n003))
    assert spool.pending() == []


def test_store_down_keeps_the_spool_then_flush(settings, store, studies, product, tmp_path, capsys):
    p002 = studies["by_patient"]["PHANTOM-P002"][1]
    spool = Spool(tmp_path / "spool")
    down = DicomStore(f"http://127.0.0.1:{free_port()}/dicom-web")
    with pytest.raises(DicomStoreError, match="cannot reach DICOMweb server"):
        retrieve(settings, down, Query(study_uids=(p002,)), spool=spool)
    expected = _all_sops(studies, p002)
    assert {path.stem for path in spool.pending()} == expected  # every instance kept, none lost
    assert (spool.folder.stat().st_mode & 0o777) == 0o700  # patient data: private to us
    assert store.instance_uids(p002) == set()

    assert main(["pacs", "flush", "--state", str(product.state), "--spool", str(spool.folder)]) == 0
    assert f"{len(expected)} stored" in capsys.readouterr().err
    assert spool.pending() == []
    assert store.instance_uids(p002) == expected


def test_retrieve_reports_an_unknown_move_destination(settings, store, tmp_path):
    report = retrieve(
        settings,
        store,
        Query(patient_id="PHANTOM-N003"),
        spool=Spool(tmp_path / "s"),
        method="move",
        move_destination="NOBODY",
    )
    assert not report.ok
    [item] = report.items
    assert item.in_store == 0 and item.completed == 0
    assert "destination" in item.error


def test_retrieve_refuses_bad_requests(settings, store, tmp_path):
    spool = Spool(tmp_path / "spool")
    with pytest.raises(InputError, match="will not fetch the whole PACS"):
        retrieve(settings, store, Query(), spool=spool)
    with pytest.raises(InputError, match="needs a destination"):
        retrieve(settings, store, Query(patient_id="X"), spool=spool, method="move")
    with pytest.raises(InputError, match="choose get"):
        retrieve(settings, store, Query(patient_id="X"), spool=spool, method="push")
    with pytest.raises(PacsError, match="no study on TESTPACS.* matches patient ID NOBODY"):
        retrieve(settings, store, Query(patient_id="NOBODY"), spool=spool)
    with pytest.raises(InputError, match="4 studies match .* more than --max-studies 2"):
        retrieve(settings, store, Query(patient_id="PHANTOM*"), spool=spool, max_studies=2)
    assert store.studies() == []


# --------------------------------------------------------------------------------------------- listen


def test_listener_forwards_what_the_pacs_sends(pacs, store, studies, ports, tmp_path):
    p001 = studies["by_patient"]["PHANTOM-P001"][0]
    expected = _all_sops(studies, p001)
    with Listener(store, Spool(tmp_path / "spool"), port=ports["listen"], aet="CMILISTEN") as listener:
        sent = requests.post(
            f"{pacs.url}/modalities/listener/store",
            json={"Resources": [_orthanc_study_id(pacs, p001)], "Synchronous": True},
            auth=pacs.auth,
            timeout=60,
        )
        assert sent.status_code == 200, sent.text
        assert _wait_for(lambda: store.instance_uids(p001) == expected)
        assert listener.received == len(expected)
    assert listener.spool.pending() == []
    assert _store_content(store) == {p001: (2, len(expected))}


def test_listener_keeps_the_spool_while_the_store_is_down(pacs, store, studies, ports, tmp_path):
    p002 = studies["by_patient"]["PHANTOM-P002"][1]
    expected = _all_sops(studies, p002)
    spool = Spool(tmp_path / "spool")
    down = DicomStore(f"http://127.0.0.1:{free_port()}/dicom-web")
    with Listener(down, spool, port=ports["listen"], aet="CMILISTEN", retry_interval=0.2) as listener:
        sent = requests.post(
            f"{pacs.url}/modalities/listener/store",
            json={"Resources": [_orthanc_study_id(pacs, p002)], "Synchronous": True},
            auth=pacs.auth,
            timeout=60,
        )
        assert sent.status_code == 200, sent.text  # the PACS got success for every instance
        assert _wait_for(lambda: listener.last_error is not None)
        assert "cannot reach DICOMweb server" in listener.last_error
    assert {path.stem for path in spool.pending()} == expected  # nothing lost after stop either
    assert spool.flush(store).stored and spool.pending() == []
    assert store.instance_uids(p002) == expected


def test_listen_cli_forwards_and_stops_cleanly(pacs, store, studies, product, ports, tmp_path):
    n003 = studies["by_patient"]["PHANTOM-N003"][0]
    env = {**os.environ, "CARDIAC_MI_AET": "CMICLI", "CARDIAC_MI_LISTEN_PORT": str(ports["listen_cli"])}
    process = subprocess.Popen(
        [
            str(SCRIPT),
            "pacs",
            "listen",
            "--state",
            str(product.state),
            "--spool",
            str(tmp_path / "spool"),
            "--allow-aet",
            PACS_AET,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _wait_for(lambda: _listening(ports["listen_cli"]) or process.poll() is not None, 30)
        assert process.poll() is None, process.communicate()
        sent = requests.post(
            f"{pacs.url}/modalities/listener_cli/store",
            json={"Resources": [_orthanc_study_id(pacs, n003)], "Synchronous": True},
            auth=pacs.auth,
            timeout=60,
        )
        assert sent.status_code == 200, sent.text
        assert _wait_for(lambda: store.instance_uids(n003) == _all_sops(studies, n003))
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert f"stopped: {len(_all_sops(studies, n003))} instances received" in err


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_listener_rejects_a_taken_port(store, ports, pacs, tmp_path):
    with pytest.raises(PacsError, match="already in use"):
        Listener(store, Spool(tmp_path), port=pacs.dicom_port).start()


# --------------------------------------------------------------------------------------------- errors


def test_unknown_host_closed_port_and_wrong_ae_titles(settings):
    with pytest.raises(PacsError, match="unknown PACS host 'no-such-host.invalid'"):
        echo(PacsSettings("no-such-host.invalid", settings.port, PACS_AET))
    with pytest.raises(PacsError, match="connection refused"):
        echo(PacsSettings("127.0.0.1", free_port(), PACS_AET))
    with pytest.raises(PacsError, match="rejected the association .*Called AE title not recognised.*--pacs-aet"):
        echo(PacsSettings("127.0.0.1", settings.port, "WRONGPACS"))
    with pytest.raises(PacsError, match="may not allow AE 'STRANGER'"):
        find(PacsSettings("127.0.0.1", settings.port, PACS_AET, "STRANGER", timeout=10), Query(patient_id="X"))


def test_retrieve_by_an_ae_allowed_only_to_query(settings, store, tmp_path):
    find_only = PacsSettings(settings.host, settings.port, PACS_AET, "CMIFIND", timeout=10)
    assert len(find(find_only, Query(patient_id="PHANTOM-N003"))) == 1
    with pytest.raises(PacsError, match="may not allow AE 'CMIFIND'.*C-GET allowed"):
        retrieve(find_only, store, Query(patient_id="PHANTOM-N003"), spool=Spool(tmp_path / "spool"))
    assert store.studies() == []


def test_a_refused_c_get_is_not_taken_for_a_timeout_on_a_loaded_machine(settings, store, tmp_path, monkeypatch):
    """Issue 16.12: the refusal is told by what the PACS sent, not by the time the C-GET waited.

    Orthanc answers a C-GET from an AE without AllowGet with an A-ABORT at once. On a loaded machine
    pynetdicom's reactor thread can take the wake-up that abort puts on the DIMSE queue (its pause
    handshake with the requesting thread is not atomic); the C-GET then waits out the whole DIMSE timeout.
    Here the wake-up is taken on purpose, and the clock jumps as a stalled process sees it: the answer
    must still be the refusal, and come at once.
    """
    from pynetdicom.dimse import DIMSEServiceProvider

    real_get_msg = DIMSEServiceProvider.get_msg
    taken = []

    def get_msg(self, block=False):
        item = real_get_msg(self, block=block)
        if block and item == (None, None) and not taken:
            taken.append(time.perf_counter())  # as if the reactor had it: the C-GET waits on
            item = real_get_msg(self, block=block)
        return item

    real_monotonic = time.monotonic
    monkeypatch.setattr(DIMSEServiceProvider, "get_msg", get_msg)
    monkeypatch.setattr(time, "monotonic", lambda: real_monotonic() + (30.0 if taken else 0.0))
    find_only = PacsSettings(settings.host, settings.port, PACS_AET, "CMIFIND", timeout=5)
    with pytest.raises(
        PacsError,
        match=r"ended the association .*\(it sent an A-ABORT\).*may not allow AE 'CMIFIND'"
        ".*C-GET allowed",
    ):
        retrieve(find_only, store, Query(patient_id="PHANTOM-N003"), spool=Spool(tmp_path / "spool"))
    assert taken, "the PACS's abort never reached the C-GET"
    waited = time.perf_counter() - taken[0]
    assert waited < 2.5, f"the C-GET waited {waited:.1f} s for a PACS that had refused it at once"
    assert store.studies() == []


def test_cli_errors_are_one_line(settings, capsys):
    assert main(["pacs", "echo", "--host", "127.0.0.1", "--port", str(settings.port), "--pacs-aet", "WRONG"]) == 2
    assert "Called AE title not recognised" in _one_line_error(capsys)
    assert main(["pacs", "echo", "--host", "127.0.0.1", "--port", str(free_port()), "--pacs-aet", PACS_AET]) == 2
    assert "connection refused" in _one_line_error(capsys)
    assert main(["pacs", "find", *_pacs_args(settings), "--date", "20241301"]) == 2
    assert "not a calendar date" in _one_line_error(capsys)
    assert main(["pacs", "echo", "--port", "104", "--pacs-aet", PACS_AET]) == 2
    assert "no PACS host" in _one_line_error(capsys)
    assert main(["pacs", "echo", "--host", "h", "--pacs-aet", "A\\B"]) == 2
    assert "not an AE title" in _one_line_error(capsys)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20240131", "20240131"),
        ("20240101-20241231", "20240101-20241231"),
        ("20240101-", "20240101-"),
        ("-20241231", "-20241231"),
        ("2024-01-31", "20240131"),
        ("2024-01-01..2024-12-31", "20240101-20241231"),
        ("2024-01-01..", "20240101-"),
        ("..2024-12-31", "-20241231"),
    ],
)
def test_normalize_date(text, expected):
    assert normalize_date(text) == expected


@pytest.mark.parametrize(
    "text", ["2024", "20240230", "20241231-20240101", "-", "2024-13-01", "yesterday", "2024010120241231"]
)
def test_normalize_date_refuses(text):
    with pytest.raises(InputError):
        normalize_date(text)


# --------------------------------------------------------------------------------------------- TLS


def _certificates(folder: Path) -> dict[str, Path]:
    """A CA, a server and a client certificate (for 127.0.0.1 / localhost), and an unrelated CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    paths: dict[str, Path] = {}

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def save(stem: str, cert: x509.Certificate, key) -> None:
        paths[stem] = folder / f"{stem}.crt"
        paths[stem].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths[f"{stem}_key"] = folder / f"{stem}.key"
        paths[f"{stem}_key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
            )
        )

    def builder(subject: str, issuer: x509.Name, key) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    def ca(stem: str):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            builder(stem, name(stem), key)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256())
        )
        save(stem, cert, key)
        return cert, key

    ca_cert, ca_key = ca("ca")
    ca("other_ca")
    for stem in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            builder(stem, ca_cert.subject, key)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                False,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), False
            )
            .sign(ca_key, hashes.SHA256())
        )
        save(stem, cert, key)
    return paths


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, Path]:
    return _certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_pacs(tmp_path_factory, ports, certs, studies):
    """A PACS that speaks DICOM over TLS only and requires client certificates signed by the test CA."""
    config = {
        "DicomTlsEnabled": True,
        "DicomTlsCertificate": str(certs["server"]),
        "DicomTlsPrivateKey": str(certs["server_key"]),
        "DicomTlsTrustedCertificates": str(certs["ca"]),
        "DicomTlsRemoteCertificateRequired": True,
        "DicomModalities": {
            "cardiacmi": _modality("CARDIACMI", ports["product"]),
            "tls_listener": _modality("CMITLS", ports["tls_listen"], UseDicomTls=True),
        },
    }
    with EmbeddedOrthanc(
        tmp_path_factory.mktemp("tls_state"),
        http_port=0,
        dicom_port=ports["tls_pacs"],
        aet=PACS_AET,
        extra_config=config,
    ) as server:
        for path in sorted((studies["folder"] / "Case_N003").glob("*.dcm")):
            requests.post(
                f"{server.url}/instances", data=path.read_bytes(), auth=server.auth, timeout=30
            ).raise_for_status()
        yield server


def test_tls_echo_and_find(tls_pacs, certs, studies):
    tls = Tls(ca=certs["ca"], cert=certs["client"], key=certs["client_key"])
    settings = PacsSettings("127.0.0.1", tls_pacs.dicom_port, PACS_AET, tls=tls, timeout=10)
    assert echo(settings) < 5.0
    assert [m.study_uid for m in find(settings, Query(patient_id="PHANTOM-N003"))] == studies["by_patient"][
        "PHANTOM-N003"
    ]


def test_tls_errors_name_the_problem(tls_pacs, certs):
    port = tls_pacs.dicom_port
    with pytest.raises(PacsError, match="expect DICOM over TLS"):
        echo(PacsSettings("127.0.0.1", port, PACS_AET, timeout=10))
    untrusted = Tls(ca=certs["other_ca"], cert=certs["client"], key=certs["client_key"])
    with pytest.raises(PacsError, match="certificate is not trusted.*--tls-ca"):
        echo(PacsSettings("127.0.0.1", port, PACS_AET, tls=untrusted, timeout=10))
    with pytest.raises(PacsError, match="requires a client certificate"):
        echo(PacsSettings("127.0.0.1", port, PACS_AET, tls=Tls(ca=certs["ca"]), timeout=10))
    with pytest.raises(InputError, match="both --tls-cert and --tls-key"):
        Tls(ca=certs["ca"], cert=certs["client"])


def test_tls_listener_receives_from_a_tls_pacs(tls_pacs, store, certs, studies, ports, tmp_path):
    n003 = studies["by_patient"]["PHANTOM-N003"][0]
    tls = Tls(ca=certs["ca"], cert=certs["server"], key=certs["server_key"])
    with Listener(store, Spool(tmp_path / "spool"), port=ports["tls_listen"], aet="CMITLS", tls=tls):
        sent = requests.post(
            f"{tls_pacs.url}/modalities/tls_listener/store",
            json={"Resources": [_orthanc_study_id(tls_pacs, n003)], "Synchronous": True},
            auth=tls_pacs.auth,
            timeout=60,
        )
        assert sent.status_code == 200, sent.text
        assert _wait_for(lambda: store.instance_uids(n003) == _all_sops(studies, n003))
