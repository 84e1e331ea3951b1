"""Issue 16, points 7 and 10 in the app itself: MONAI Label's server on a folder datastore (no ``serve``
routes in front), so the checks of ``CardiacMIApp`` answer.

The ``server`` fixture of tests/app/conftest.py starts the real server on one NIfTI study, ``Case_P001``.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("monailabel")
requests = pytest.importorskip("requests")

from cardiac_mi.ids import device_problem  # noqa: E402
from tests.helpers.app import CASE, ROOT  # noqa: E402


def infer(server, image: str, model: str = "segmentation", params: dict | None = None) -> requests.Response:
    return requests.post(
        f"{server['url']}/infer/{model}",
        params={"image": image, "output": "json"},
        data={"params": json.dumps(params or {})},
        timeout=300,
    )


def detail(answer: requests.Response, status: int) -> str:
    assert answer.status_code == status, (answer.status_code, answer.text[:500])
    text = answer.json()["detail"]
    assert "Traceback" not in text
    return text


def test_server_paths_are_not_images(server):
    """A path in ?image= or in params gets one answer whether the file exists or not; nothing is read."""
    existing = [str(CASE / "Images" / "Case_P001.nii.gz"), "/etc/passwd", str(ROOT)]
    missing = [str(CASE / "Images" / "Case_X.nii.gz"), "/etc/no-such-file"]
    answers = set()
    for path in existing + missing:
        for answer in (infer(server, path), infer(server, "Case_P001", params={"image": path})):
            text = detail(answer, 422)
            assert "not an image id" in text and "NIfTI" not in text and "no such file" not in text
            answers.add(text.replace(repr(path)[:77], "PATH"))
    assert len(answers) == 1, answers
    # an id-shaped name that the datastore does not hold: 404, the same for a file of that name in the cwd
    assert "no such image in the datastore" in detail(infer(server, "Case_X999"), 404)


def test_unknown_tasks_and_devices(server):
    assert "'nosuch'" in detail(infer(server, "Case_P001", model="nosuch"), 404)
    assert "'nosuch'" in detail(requests.post(f"{server['url']}/activelearning/nosuch", json={}, timeout=60), 404)
    answer = requests.put(f"{server['url']}/model/nosuch", files={"file": ("x.pt", b"garbage")}, timeout=60)
    assert "'nosuch'" in detail(answer, 404)
    if device_problem("cuda:7") is not None:
        assert "cuda:7" in detail(infer(server, "Case_P001", params={"device": "cuda:7"}), 422)


def test_known_image_still_segments(server):
    answer = infer(server, "Case_P001", params={"device": "cpu"})
    assert answer.status_code == 200, answer.text[:500]
    assert answer.json()["volumes_ml"]["myocardium"] > 0


def test_an_uploaded_image_still_segments(server):
    """``file=``: MONAI Label saves the upload in the temporary folder and infers on it; that path is allowed."""
    with open(CASE / "Images" / "Case_P001.nii.gz", "rb") as fh:
        answer = requests.post(
            f"{server['url']}/infer/segmentation",
            params={"output": "json"},
            files={"file": ("Case_P001.nii.gz", fh)},
            timeout=300,
        )
    assert answer.status_code == 200, answer.text[:500]
    assert answer.json()["volumes_ml"]["myocardium"] > 0
