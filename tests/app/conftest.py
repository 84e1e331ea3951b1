"""Fixtures of the app tests: ``server``, the real MONAI Label server with the cardiac_mi app for the module.

It runs ``monailabel.main start_server`` on a free port with a local studies folder holding one NIfTI study,
``Case_P001``, and the shipped models; the tests that use it are marked ``integration`` (tests/conftest.py).
"""

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

from tests.helpers.app import APP_DIR, CASE, MODELS, START_TIMEOUT_S


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``{"url", "ready_s", "log"}`` of a running MONAI Label server; stopped at the module's end."""
    requests = pytest.importorskip("requests")
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
