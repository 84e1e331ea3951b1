"""``cardiac-mi serve`` end to end: embedded Orthanc + MONAI Label on its DICOMweb datastore.

One serve start (free ports, a tmp state folder, the sample studies) serves the module; the last test
stops it and starts again with the same state (no second upload), then checks that no process is left.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

pytest.importorskip("monailabel")
requests = pytest.importorskip("requests")

from cardiac_mi.orthanc import OrthancError, free_port  # noqa: E402
from cardiac_mi.serve import SAMPLE_DICOM, SAMPLES_MARKER, serve  # noqa: E402
from lgemri.errors import InputError  # noqa: E402
from tests.helpers.serve import process_gone as _gone  # noqa: E402
from tests.helpers.serve import serve_options as _options  # noqa: E402
from tests.helpers.serve import start_blocking_serve  # noqa: E402  (no login: test_auth.py)

os.environ.setdefault("OMP_NUM_THREADS", "1")
TIMINGS: dict[str, float] = {}


def _sample_series() -> set[str]:
    import pydicom

    uids = set()
    for folder in sorted(p for p in SAMPLE_DICOM.iterdir() if p.is_dir()):
        first = sorted(folder.rglob("*.dcm"))[0]
        uids.add(str(pydicom.dcmread(first, stop_before_pixels=True).SeriesInstanceUID))
    return uids


@pytest.fixture(scope="module")
def state(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="module")
def served(state):
    tick = time.perf_counter()
    handle = serve(_options(state), block=False)
    TIMINGS["start"] = time.perf_counter() - tick
    print(f"serve start to ready: {TIMINGS['start']:.1f} s")
    yield handle
    handle.stop()


def test_first_start_uploads_samples(served, state):
    assert served.uploaded is not None and not served.uploaded.refused
    assert (state / SAMPLES_MARKER).is_file()
    assert (state / "monailabel.log").is_file()
    assert served.alive()


def test_info_lists_segmentation(served):
    info = requests.get(f"{served.url}/info/", timeout=10).json()
    assert "segmentation" in info["models"]
    assert requests.get(served.ohif_url, timeout=10).status_code == 200
    explorer = requests.get(served.orthanc_explorer_url, auth=served.orthanc.auth, timeout=10)
    assert explorer.status_code == 200


def test_datastore_lists_mr_sample_series(served):
    # the DICOMweb datastore of MONAI Label 0.8.5 lists its series (QIDO, Modality=MR) in the stats' total;
    # output=all only shows what it has downloaded to its cache
    stats = requests.get(f"{served.url}/datastore/", params={"output": "stats"}, timeout=60).json()
    series = _sample_series()
    assert stats["total"] == len(series) == 4


def test_infer_through_dicomweb(served):
    series = sorted(_sample_series())[0]
    tick = time.perf_counter()
    response = requests.post(
        f"{served.url}/infer/segmentation", params={"image": series, "output": "json"}, timeout=120
    )
    TIMINGS["infer"] = time.perf_counter() - tick
    print(f"first infer through DICOMweb: {TIMINGS['infer']:.2f} s")
    assert response.status_code == 200, response.text[:2000]
    data = response.json()
    assert data["volumes_ml"]["myocardium"] > 0
    assert len(data["quantification"]["segments"]) == 17
    cached = requests.get(f"{served.url}/datastore/", params={"output": "all"}, timeout=60).json()
    assert series in cached["objects"]


def test_port_in_use_is_an_input_error(served, state, tmp_path):
    options = _options(tmp_path / "other", "--no-samples")
    options.port = int(served.url.rsplit(":", 1)[1])
    with pytest.raises(InputError, match="already in use"):
        serve(options, block=False)


def test_restart_keeps_marker_and_stop_leaves_nothing(served, state):
    pids = served.pids
    assert len(pids) == 2
    served.stop()
    deadline = time.monotonic() + 10
    while not all(_gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(_gone(pid) for pid in pids)

    marker = (state / SAMPLES_MARKER).read_text()
    again = serve(_options(state), block=False)
    try:
        assert again.uploaded is None
        assert (state / SAMPLES_MARKER).read_text() == marker
        assert requests.get(f"{again.url}/info/", timeout=10).status_code == 200
    finally:
        pids = again.pids
        again.stop()
    assert all(_gone(pid) for pid in pids)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_blocking_serve_stops_on_signal_with_status_0(tmp_path, sig):
    import signal

    from cardiac_mi.orthanc import running_orthanc, wait_for_http

    port = free_port()
    proc, output = start_blocking_serve(tmp_path, port)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/info/", timeout=90, alive=lambda: proc.poll() is None, expect=200)
        deadline = time.monotonic() + 30
        while "press Ctrl-C" not in output.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        orthanc = running_orthanc(tmp_path)
        assert orthanc is not None
        proc.send_signal(getattr(signal, sig))
        proc.wait(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = output.read_text()
    assert proc.returncode == 0, out[-3000:]
    assert "OHIF viewer" in out and "/ohif/" in out
    assert not (tmp_path / SAMPLES_MARKER).exists()
    assert _gone(orthanc.pid)
    assert running_orthanc(tmp_path) is None


def test_orthanc_missing_is_an_input_error(tmp_path, monkeypatch):
    from cardiac_mi import orthanc as orthanc_module

    def missing():
        raise OrthancError("the Orthanc server binary is not installed")

    monkeypatch.setattr(orthanc_module, "find_orthanc_binary", missing)
    with pytest.raises(InputError, match="not installed"):
        serve(_options(tmp_path, "--no-samples"), block=False)


def test_server_exiting_early_is_an_input_error_with_its_log(tmp_path, monkeypatch):
    from cardiac_mi import serve as serve_module
    from cardiac_mi.orthanc import running_orthanc

    app = tmp_path / "broken_app"
    app.mkdir()
    (app / "main.py").write_text("raise RuntimeError('broken app for the test')\n")
    monkeypatch.setattr(serve_module, "APP_DIR", app)
    state = tmp_path / "state"
    with pytest.raises(InputError, match="exited early") as info:
        serve(_options(state, "--no-samples"), block=False)
    assert "broken app for the test" in str(info.value)
    assert running_orthanc(state) is None


def test_external_dicomweb_server(tmp_path):
    from cardiac_mi.orthanc import EmbeddedOrthanc, running_orthanc

    with EmbeddedOrthanc(tmp_path / "pacs", http_port=0) as pacs:
        state = tmp_path / "state"
        options = _options(state, "--studies", pacs.dicomweb_url, "--user", pacs.user, "--password", pacs.password)
        with serve(options, block=False) as handle:
            assert handle.orthanc is None and handle.studies_url == pacs.dicomweb_url
            stats = requests.get(f"{handle.url}/datastore/", params={"output": "stats"}, timeout=60).json()
            assert stats["total"] == 0  # nothing uploaded to an external server
        assert running_orthanc(state) is None
        assert not (state / SAMPLES_MARKER).exists()

        options = _options(state, "--studies", pacs.dicomweb_url, "--user", pacs.user, "--password", "wrong")
        with pytest.raises(InputError):
            serve(options, block=False)
