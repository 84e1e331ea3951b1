"""The real MONAI Label server with the cardiac_mi app on a local-folder datastore."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("monailabel")
requests = pytest.importorskip("requests")

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "apps" / "cardiac_mi"
MODELS = ROOT / "models"
CASE = ROOT / "sample-data" / "emidec" / "Case_P001"
START_TIMEOUT_S = 90


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("server")  # cwd without a .env: MONAI Label would read it
    studies = work / "studies"
    studies.mkdir()
    shutil.copy(CASE / "Images" / "Case_P001.nii.gz", studies / "Case_P001.nii.gz")
    port = _free_port()
    env = dict(os.environ)
    env["PATH"] = (
        str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    )  # itkimage2segimage: no dcmqi download
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [
        sys.executable,
        "-m",
        "monailabel.main",
        "start_server",
        "--app",
        str(APP_DIR),
        "--studies",
        str(studies),
        "--conf",
        "models_dir",
        str(MODELS),
        "--conf",
        "scoring_delay",
        "0",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    log = open(work / "server.log", "wb")
    tick = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{(work / 'server.log').read_text()[-3000:]}")
            if time.perf_counter() - tick > START_TIMEOUT_S:
                pytest.fail(f"server not ready in {START_TIMEOUT_S} s:\n{(work / 'server.log').read_text()[-3000:]}")
            try:
                if requests.get(f"{url}/info/", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.25)
        ready_s = time.perf_counter() - tick
        print(f"server ready in {ready_s:.1f} s")
        yield {"url": url, "ready_s": ready_s, "log": work / "server.log"}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def test_server_info(server):
    info = requests.get(f"{server['url']}/info/", timeout=10).json()
    assert info["name"] == "cardiac_mi"
    assert info["models"]["segmentation"]["labels"] == ["lv_cavity", "myocardium", "infarct", "no_reflow"]
    assert info["models"]["localization"]["labels"] == ["lv"]
    assert server["ready_s"] < START_TIMEOUT_S


def test_server_segmentation_infer(server):
    tick = time.perf_counter()
    response = requests.post(
        f"{server['url']}/infer/segmentation", params={"image": "Case_P001", "output": "json"}, timeout=120
    )
    elapsed = time.perf_counter() - tick
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["roi"]["size_mm"] == 128
    assert data["volumes_ml"]["myocardium"] > 0
    assert len(data["quantification"]["segments"]) == 17
    print(f"server segmentation infer: {elapsed:.2f} s")


def test_server_bad_image_is_an_error(server):
    response = requests.post(
        f"{server['url']}/infer/segmentation", params={"image": "no_such_case", "output": "json"}, timeout=60
    )
    assert response.status_code >= 400


def test_server_epistemic_strategy_and_scoring(server):
    response = requests.post(f"{server['url']}/activelearning/epistemic", json={}, timeout=120)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["id"] == "Case_P001"  # the only unlabelled study
    assert (
        data["epistemic_score"] > 0 and data["epistemic"]["score"] == data["epistemic_score"]
    )  # stored in the image info
    assert data["epistemic"]["model"] == data["model"]
    # every scoring method runs in the background once the start-up delay (0 here) has passed
    tasks = requests.get(f"{server['url']}/scoring/", params={"all": "true"}, timeout=30).json()
    assert {"dice", "epistemic"} <= {task["request"]["method"] for task in tasks}
