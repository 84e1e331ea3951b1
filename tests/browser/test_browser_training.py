"""Active learning a clinician can follow (issue 14, point 6), in Chromium against a real Orthanc and server.

The Active Learning tab of MONAI Label's panel gets cardiac_mi's box (``ohif/training.js``): readable bars
(labelled series, training epochs), the training's phase and validation Dice from the server's status, a
notice when training ends, and the new model's review: Publish shows the served and the new model's
validation Dice on the same held-out series, is refused with a message when too few series were held out,
and Roll back serves the previous model again. Training is tiny ($CARDIAC_MI_TRAIN_OPTIONS: 2 epochs of 1
step, no synthetic slices).

The module imports ``training.js`` into the page itself (``watchTraining`` is idempotent), so the test
holds whether or not the extension starts it already.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

import numpy as np
import pytest

pytest.importorskip("playwright")
pytest.importorskip("monailabel")
requests = pytest.importorskip("requests")

from cardiac_mi.serve import SAMPLE_DICOM  # noqa: E402
from tests.helpers.viewer import notification, open_in_viewer, open_study_list, sample_series  # noqa: E402

TINY_TRAINING = {"max_epochs": 2, "max_steps_per_epoch": 1, "train_batch_size": 2, "synthetic_ratio": 0}
TRAINING_MINUTES = 10
WATCH = """async () => {
  const module = await import('/ohif/cardiac-mi/training.js');
  module.watchTraining({ servicesManager: { services: window.services } });
}"""


@pytest.fixture(scope="module", autouse=True)
def tiny_training():
    """The trainer's defaults of the module's ``serve`` (set before it starts; MONAI Label's training process
    inherits them)."""
    before = os.environ.get("CARDIAC_MI_TRAIN_OPTIONS")
    os.environ["CARDIAC_MI_TRAIN_OPTIONS"] = json.dumps(TINY_TRAINING)
    yield
    if before is None:
        os.environ.pop("CARDIAC_MI_TRAIN_OPTIONS", None)
    else:
        os.environ["CARDIAC_MI_TRAIN_OPTIONS"] = before


def models_dir(served):
    return served.options.state / "models"


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def put_truth(served, case: str, tmp_path) -> None:
    """Save the phantom's true label of ``case`` as its series' final label (MONAI Label's datastore API)."""
    from lgemri.dicom import read_dicom_series
    from lgemri.emidec import load_case
    from lgemri.volume import Volume, write_nifti

    truth = np.asarray(load_case(SAMPLE_DICOM.parent / "emidec", case).label.array).astype(np.uint8)
    path = tmp_path / f"{case}.nii.gz"
    write_nifti(Volume(truth, read_dicom_series(SAMPLE_DICOM / case).volume.affine), path)
    with open(path, "rb") as stream:
        answer = requests.put(
            f"{served.url}/datastore/label",
            params={"image": sample_series()[case][1], "tag": "final"},
            files={"label": (path.name, stream)},
            timeout=120,
        )
    assert answer.status_code == 200, answer.text[:500]


def status(served) -> dict:
    answer = requests.get(f"{served.url}/viewer/training/status", timeout=60)
    assert answer.status_code == 200, answer.text[:500]
    return answer.json()


def open_training_box(page, served):
    """Open Case_P001 in the viewer, its Active Learning tab, and cardiac_mi's box in it."""
    open_study_list(page, served)
    open_in_viewer(page, served, sample_series()["Case_P001"][0])
    page.get_by_text("Active Learning", exact=True).click()
    page.evaluate(WATCH)
    box = page.locator("#cardiac-mi-training")
    box.wait_for(timeout=30_000)
    box.locator('[data-cmi="annotated"]').wait_for(timeout=30_000)
    box.scroll_into_view_if_needed()
    return box


def text(box, name: str) -> str:
    return box.locator(f'[data-cmi-text="{name}"]').inner_text()


def train_until_finished(page, box, served, artifacts, shot: str) -> list[str]:
    """Click Update Model, see the status change, wait for the notice of its end; the training lines seen."""
    seen = []
    box.locator('[data-cmi-button="start"]').click()
    notification(page, "Training started")
    box.locator('[data-cmi-button="stop"]').wait_for(timeout=30_000)  # the button follows the real status
    assert status(served)["training"]["state"] == "running"
    seen.append(text(box, "training"))
    page.wait_for_function(
        "() => /Training: epoch|Scoring|Finished/.test("
        "document.querySelector('[data-cmi-text=\"training\"]').textContent)",
        timeout=TRAINING_MINUTES * 60_000,
    )
    seen.append(text(box, "training"))
    page.screenshot(path=str(artifacts / f"{shot}-running.png"))
    notification(page, "Training finished", timeout=TRAINING_MINUTES * 60_000)
    box.locator('[data-cmi-button="start"]').wait_for(timeout=30_000)  # Stop Training is gone
    assert box.locator('[data-cmi-button="stop"]').count() == 0
    seen.append(text(box, "training"))
    page.screenshot(path=str(artifacts / f"{shot}-finished.png"))
    return seen


def test_training_status_changes_and_ends_and_publish_is_refused_with_one_label(served, page, tmp_path, artifacts):
    put_truth(served, "Case_P001", tmp_path)
    served_model = models_dir(served) / "segmentation.pt"
    before = served_model.read_bytes()
    box = open_training_box(page, served)

    # readable, true figures before any training: 1 of 4 labelled, no "100 %" of a training that never ran
    assert text(box, "annotated") == "Annotated: 1 of 4 series have a saved label"
    assert text(box, "training").startswith("Not started")
    assert box.locator('[data-cmi="training"] [role="progressbar"]').get_attribute("aria-valuenow") == "0"
    tab = page.locator(".tab-content", has=page.get_by_text("Next Sample", exact=True))
    assert not tab.get_by_title("1/4 samples annotated").is_visible()  # MONAI Label's white-on-white bars
    assert tab.get_by_role("button", name="Update Model").count() == 1  # ours; the bundle's is hidden
    page.screenshot(path=str(artifacts / "training-01-idle.png"))

    seen = train_until_finished(page, box, served, artifacts, "training-02")
    assert seen[0] != seen[-1] and seen[-1].startswith("Finished: 2 of 2 epochs, validation Dice 0.")
    assert re.match(r"(Starting|Preparing|Training: epoch|Scoring)", seen[0]), seen
    finished = status(served)
    training = finished["training"]
    assert training["state"] == "done" and training["epoch"] == training["epochs"] == 2
    assert [e["epoch"] for e in training["history"]] == [1, 2] and 0 < training["val_dice"] <= 1
    candidate = finished["candidate"]
    assert candidate["validation"] == "training_case" and not candidate["publishable"] and not candidate["served"]
    assert "on the 1 series it was trained on" in text(box, "dice")
    assert text(box, "verdict").startswith("It cannot be published: the new model was checked only on the series")

    # publish with one label: refused with a message, nothing replaced
    with page.expect_response("**/viewer/training/publish") as answer:
        box.locator('[data-cmi-button="publish"]').click()
    assert answer.value.status == 409
    message = notification(page, "Not published: the new model was checked only on the series it was trained on")
    assert "at least 2 labelled series held out of training" in message and "label 2 more series" in message
    page.screenshot(path=str(artifacts / "training-03-publish-refused.png"))
    assert served_model.read_bytes() == before and not (models_dir(served) / "segmentation.prev.pt").exists()
    assert status(served)["served"]["sha256"] == sha(served_model)
    direct = requests.post(f"{served.url}/viewer/training/publish", json={"run": candidate["run"]}, timeout=60)
    assert direct.status_code == 409 and direct.json()["detail"].startswith("Not published:")
    rollback = requests.post(f"{served.url}/viewer/training/rollback", timeout=60)
    assert rollback.status_code == 409 and "No previous model" in rollback.json()["detail"]
    assert page.problems.unexpected("/viewer/training/publish") == []


def test_publish_after_review_shows_the_figures_and_rolls_back(served, page, tmp_path, artifacts):
    for case in ("Case_P001", "Case_P002", "Case_N003"):
        put_truth(served, case, tmp_path)
    served_model = models_dir(served) / "segmentation.pt"
    original = served_model.read_bytes()
    box = open_training_box(page, served)
    page.wait_for_function(
        "() => document.querySelector('[data-cmi-text=\"annotated\"]').textContent.startsWith('Annotated: 3 of 4')",
        timeout=60_000,
    )

    train_until_finished(page, box, served, artifacts, "training-04")
    candidate = status(served)["candidate"]
    assert candidate["validation"] == "held_out" and candidate["val_cases"] == 2 and candidate["publishable"]
    assert text(box, "verdict") == "Not served yet: it waits for your review."
    assert served_model.read_bytes() == original  # training replaced nothing

    box.locator('[data-cmi-button="publish"]').click()
    figures = text(box, "figures")
    expected = f"served model {candidate['val_dice_before']:.3f} → new model {candidate['val_dice_after']:.3f}"
    assert figures.startswith(f"Validation Dice: {expected}") and "on the same 2 series held out of training" in figures
    worse = box.locator('[data-cmi-text="worse"]').count() == 1
    assert worse == (candidate["val_dice_after"] < candidate["val_dice_before"])
    page.screenshot(path=str(artifacts / "training-05-publish-confirm.png"))
    with page.expect_response("**/viewer/training/publish") as answer:
        box.locator('[data-cmi-button="confirm-publish"]').click()
    assert answer.value.status == 200, answer.value.text()
    notification(page, "The new model is served now")
    stats = json.loads((models_dir(served) / "train_stats.json").read_text())
    assert served_model.read_bytes() != original
    assert sha(served_model) == hashlib.sha256(open(stats["best_checkpoint"], "rb").read()).hexdigest()
    assert (models_dir(served) / "segmentation.prev.pt").read_bytes() == original
    page.wait_for_function(
        "() => (document.querySelector('[data-cmi-text=\"verdict\"]') || {}).textContent"
        " === 'This new model is the served model.'",
        timeout=30_000,
    )
    page.screenshot(path=str(artifacts / "training-06-published.png"))

    box.locator('[data-cmi-button="rollback"]').click()
    notification(page, "The previous model is served again")
    assert served_model.read_bytes() == original  # byte for byte
    page.wait_for_function(
        "() => (document.querySelector('[data-cmi-text=\"verdict\"]') || {}).textContent"
        " === 'Not served yet: it waits for your review.'",
        timeout=30_000,
    )
    page.screenshot(path=str(artifacts / "training-07-rolled-back.png"))
    assert page.problems.unexpected() == []
