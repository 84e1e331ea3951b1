"""The real MONAI Label server with the cardiac_mi app on a local-folder datastore."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("monailabel")
requests = pytest.importorskip("requests")

from tests.helpers.app import START_TIMEOUT_S  # noqa: E402  (the server fixture: tests/app/conftest.py)


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
