"""The server side of the viewer's active learning (cardiac_mi.viewer.training, cardiac_mi.retrain): the
held-out split, the publish gate, a reviewed publish, rollback byte for byte, the progress of a real (tiny)
retraining and the status the viewer reads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("monailabel")

from cardiac_mi.retrain import (  # noqa: E402
    MIN_VALIDATION_CASES,
    PublishRefused,
    RetrainConfig,
    _split_train_val,
    prepare_pairs,
    publish_problem,
    publish_reviewed,
    read_progress,
    read_published,
    read_stats,
    retrain,
    rollback,
)
from cardiac_mi.viewer.training import training_status  # noqa: E402
from lgemri.errors import InputError  # noqa: E402
from lgemri.volume import read_nifti, write_nifti  # noqa: E402
from tests.helpers.retrain import CASES, phantom_pairs  # noqa: E402
from tests.helpers.retrain import sha256 as _sha  # noqa: E402
from tests.helpers.retrain import tiny_checkpoint as _tiny_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models"
STATUS_KEYS = {"annotated", "training", "candidate", "served", "min_validation_cases"}
TRAINING_KEYS = {
    "state",
    "phase",
    "message",
    "epoch",
    "epochs",
    "val_dice",
    "val_dice_before",
    "history",
    "cases",
    "started",
    "finished",
}
CANDIDATE_KEYS = {
    "run",
    "finished",
    "val_dice_before",
    "val_dice_after",
    "val_dice_by_class",
    "train_cases",
    "val_cases",
    "validation",
    "val_image_ids",
    "served",
    "publishable",
    "problem",
    "review",
    "reason",
}


def _pairs(phantom_dir: Path, cases=CASES) -> list[dict]:
    """Training pairs with their image ids, as the datastore gives them."""
    return phantom_pairs(phantom_dir, cases, image_ids=True)


def _no_temporaries(folder: Path) -> bool:
    return not [p.name for p in folder.iterdir() if p.name.startswith(".") or p.name == "segmentation.next.pt"]


@pytest.fixture
def reviewed(tmp_path) -> dict:
    """A models folder with a served model, and the stats of a finished run whose model waits for review
    (as :func:`retrain` writes them with the ``review`` policy), validated on ``val`` held-out series."""
    models = tmp_path / "models"
    served = _tiny_checkpoint(models / "segmentation.pt", 1)
    run = tmp_path / "runs" / "20250101-000000-abcdef"
    best = _tiny_checkpoint(run / "train" / "best.pt", 2)

    def write(val: int = 2, validation: str = "held_out", **extra) -> dict:
        val_ids = [f"1.2.3.{n}" for n in range(val)] if validation == "held_out" else []
        stats = {
            "run_dir": str(run),
            "best_checkpoint": str(best),
            "init": str(served),
            "init_sha256": _sha(served),
            "cases": {"train": 1, "val": val if validation == "held_out" else 1, "validation": validation},
            "train_image_ids": ["1.2.3.99"],
            "val_image_ids": val_ids,
            "val_dice_before": 0.70,
            "val_dice_after": 0.74,
            "published": False,
            "review": "pending",
            **extra,
        }
        (models / "train_stats.json").write_text(json.dumps(stats))
        (run / "stats.json").write_text(json.dumps(stats))
        return stats

    return {"models": models, "served": served, "old": _sha(served), "best": best, "run": run.name, "write": write}


# ------------------------------------------------------------------------------ the split


def test_the_split_holds_out_the_publish_minimum():
    three = {"a": "infarct", "b": "infarct", "c": "normal"}
    split, on_training = _split_train_val(three, 0.2, 0, MIN_VALIDATION_CASES)
    assert not on_training and sorted(split.values()) == ["train", "val", "val"]
    split, _ = _split_train_val({"a": "infarct", "b": "normal"}, 0.2, 0, MIN_VALIDATION_CASES)
    assert sorted(split.values()) == ["train", "val"]
    assert _split_train_val({"a": "infarct"}, 0.2, 0, MIN_VALIDATION_CASES) == ({"a": "train"}, True)
    # decided cases keep their side: the served model's training labels, the earlier validation labels
    split, _ = _split_train_val({**three, "d": "infarct"}, 0.2, 0, MIN_VALIDATION_CASES, {"a": "val", "c": "train"})
    assert split["a"] == "val" and split["c"] == "train" and list(split.values()).count("val") >= 2


def test_prepare_pairs_keeps_the_fixed_split(phantom_dir, tmp_path):
    result = prepare_pairs(_pairs(phantom_dir), tmp_path / "real", min_val_cases=2, fixed_split={"Case_P001": "train"})
    assert result["train_cases"] == ["Case_P001"] and result["val_cases"] == ["Case_N003", "Case_P002"]


# ------------------------------------------------------------------------------ the gate


def test_gate_refuses_a_model_validated_on_its_training_case(reviewed):
    stats = reviewed["write"](validation="training_case")
    problem = publish_problem(stats, reviewed["models"])
    assert "trained on (1 labelled series)" in problem and "at least 2 labelled series held out" in problem
    assert "label 2 more series" in problem


def test_gate_refuses_below_the_minimum_of_held_out_series(reviewed):
    problem = publish_problem(reviewed["write"](val=1), reviewed["models"])
    assert problem.startswith("Not published: only 1 labelled series was held out") and "at least 2" in problem
    assert publish_problem(reviewed["write"](val=2), reviewed["models"]) is None


def test_gate_refuses_a_stale_comparison_or_a_missing_model(reviewed):
    stats = reviewed["write"]()
    assert "served model changed" in publish_problem({**stats, "init_sha256": "0" * 64}, reviewed["models"])
    assert "no validation score" in publish_problem({**stats, "val_dice_after": None}, reviewed["models"])
    gone = {**stats, "best_checkpoint": str(reviewed["models"] / "gone.pt")}
    assert "is gone" in publish_problem(gone, reviewed["models"])


def test_publish_refused_with_one_label_leaves_the_served_model(reviewed):
    reviewed["write"](validation="training_case")
    with pytest.raises(PublishRefused, match="Publishing needs at least 2 labelled series held out"):
        publish_reviewed(reviewed["models"], run=reviewed["run"])
    assert _sha(reviewed["served"]) == reviewed["old"]
    assert not (reviewed["models"] / "segmentation.prev.pt").exists() and read_published(reviewed["models"]) == []
    status = training_status(reviewed["models"])
    assert status["candidate"]["publishable"] is False and "held out" in status["candidate"]["problem"]


# ------------------------------------------------------------------------------ publish and rollback


def test_reviewed_publish_then_rollback_byte_for_byte(reviewed):
    models, served, old = reviewed["models"], reviewed["served"], reviewed["old"]
    stats = reviewed["write"]()
    with pytest.raises(PublishRefused, match="another training run finished"):
        publish_reviewed(models, run="20240101-000000-000000")
    result = publish_reviewed(models, run=reviewed["run"], user="dr.a")
    assert result["published"] and result["val_dice_before"] == 0.70 and result["val_dice_after"] == 0.74
    assert result["val_cases"] == 2 and result["previous"] and "Roll back" in result["message"]
    assert _sha(served) == _sha(reviewed["best"]) and _sha(models / "segmentation.prev.pt") == old
    log = read_published(models)
    assert [e["action"] for e in log] == ["publish"] and log[0]["train_image_ids"] == stats["train_image_ids"]
    assert read_stats(models)["review"] == "published" and read_stats(models)["published_by"] == "dr.a"
    with pytest.raises(PublishRefused, match="already the served model"):
        publish_reviewed(models, run=reviewed["run"])
    status = training_status(models)
    assert status["candidate"]["served"] and status["served"]["previous"]
    assert "retrained here" in status["served"]["source"] and status["served"]["published_at"]

    back = rollback(models, user="dr.a")
    assert _sha(served) == old
    assert back["sha256"] == old and back["replaced_sha256"] == _sha(reviewed["best"])
    assert _sha(models / "segmentation.prev.pt") == _sha(reviewed["best"]) and _no_temporaries(models)
    assert read_stats(models)["review"] == "rolled_back"
    # the comparison holds again (the served model is the one the run was scored against): publishable
    assert training_status(models)["candidate"]["publishable"]
    rollback(models)  # a second click returns to the newer model
    assert _sha(served) == _sha(reviewed["best"]) and _sha(models / "segmentation.prev.pt") == old
    assert [e["action"] for e in read_published(models)] == ["publish", "rollback", "rollback"]


def test_rollback_restores_the_exact_bytes(reviewed):
    models, served = reviewed["models"], reviewed["served"]
    original = served.read_bytes()
    reviewed["write"]()
    publish_reviewed(models)
    assert served.read_bytes() != original
    rollback(models)
    assert served.read_bytes() == original


def test_rollback_without_a_previous_model_is_refused(reviewed, tmp_path):
    with pytest.raises(PublishRefused, match="No previous model to go back to"):
        rollback(reviewed["models"])
    (reviewed["models"] / "segmentation.prev.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(PublishRefused, match="The previous model cannot be served"):
        rollback(reviewed["models"])
    assert _sha(reviewed["served"]) == reviewed["old"]


def test_validation_series_the_served_model_learned_from_are_refused(reviewed):
    stats = reviewed["write"]()
    publish_reviewed(reviewed["models"])
    # a later run scored against the new model, validated on a series the new model was trained on
    later = {**stats, "init_sha256": _sha(reviewed["served"]), "val_image_ids": ["1.2.3.99", "1.2.3.0"]}
    assert "served model was trained on validation series 1.2.3.99" in publish_problem(later, reviewed["models"])


# ------------------------------------------------------------------------------ status of real runs


def test_a_review_run_writes_progress_and_waits_for_a_person(phantom_dir, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(SHIPPED / "segmentation.pt", models)
    shipped = _sha(models / "segmentation.pt")
    config = RetrainConfig(synthetic_ratio=0.0, max_epochs=2, max_steps_per_epoch=1, batch_size=2)
    assert config.publish == "review"
    stats = retrain(_pairs(phantom_dir), models, tmp_path / "run", config)

    assert not stats["published"] and stats["review"] == "pending" and stats["publishable"]
    assert stats["reason"].startswith("waiting for review: validation Dice")
    assert _sha(models / "segmentation.pt") == shipped and not (models / "segmentation.prev.pt").exists()
    assert stats["cases"]["val"] == 2 and stats["cases"]["train"] == 1 and len(stats["val_image_ids"]) == 2
    assert not set(stats["val_image_ids"]) & set(stats["train_image_ids"])
    progress = read_progress(models)
    assert progress["state"] == "done" and progress["epochs"] == 2 and progress["cases"]["val"] == 2

    task = {"id": "t1", "status": "DONE", "start_ts": "2000-01-01 00:00:00", "end_ts": "2000-01-01 00:01:00"}
    status = training_status(models, task, {"total": 4, "completed": 3})
    assert set(status) == STATUS_KEYS and set(status["training"]) == TRAINING_KEYS
    assert set(status["candidate"]) == CANDIDATE_KEYS
    assert status["annotated"] == {"labelled": 3, "total": 4} and status["min_validation_cases"] == 2
    training = status["training"]
    assert training["state"] == "done" and training["epoch"] == training["epochs"] == 2
    assert [e["epoch"] for e in training["history"]] == [1, 2] and 0 < training["val_dice"] <= 1
    assert training["val_dice_before"] == pytest.approx(stats["val_dice_before"], abs=1e-4)
    candidate = status["candidate"]
    assert candidate["publishable"] and not candidate["served"] and candidate["val_cases"] == 2
    assert candidate["val_dice_after"] == stats["val_dice_after"]
    assert status["served"] == {
        "sha256": shipped,
        "source": "the model the server started with",
        "published_at": None,
        "previous": False,
        "val_dice": None,
    }
    # a running task whose run has not written its progress yet is "starting", not the old run's state
    running = {"id": "t2", "status": "RUNNING", "start_ts": "2999-01-01 00:00:00"}
    now = training_status(models, running)["training"]
    assert now["state"] == "running" and now["phase"] == "starting" and now["epoch"] == 0 and now["history"] == []

    publish_reviewed(models, run=Path(stats["run_dir"]).name)
    assert _sha(models / "segmentation.pt") == _sha(Path(stats["best_checkpoint"]))
    assert _sha(models / "segmentation.prev.pt") == shipped
    rollback(models)
    assert _sha(models / "segmentation.pt") == shipped


def test_a_failed_run_says_why_in_words(phantom_dir, tmp_path):
    models = tmp_path / "models"
    _tiny_checkpoint(models / "segmentation.pt", 0)
    pair = _pairs(phantom_dir, ["Case_P001"])[0]
    label = read_nifti(pair["label"])
    empty = tmp_path / "empty.nii.gz"
    write_nifti(type(label)(np.zeros_like(np.asarray(label.array)), label.affine), empty)
    with pytest.raises(InputError, match="holds myocardium"):
        retrain([{**pair, "label": str(empty)}], models, tmp_path / "run", RetrainConfig(synthetic_ratio=0.0))
    progress = read_progress(models)
    assert progress["state"] == "failed" and "holds myocardium" in progress["message"]
    task = {"id": "t", "status": "ERROR", "start_ts": "2000-01-01 00:00:00", "end_ts": "2000-01-01 00:00:05"}
    training = training_status(models, task)["training"]
    assert training["state"] == "failed" and training["message"].startswith("Training failed: none of the 1 labels")
    assert "Traceback" not in training["message"]
    assert training_status(models)["training"]["state"] == "idle"  # no task since the server started


def test_trainer_options_from_the_environment(monkeypatch):
    import sys

    sys.path.insert(0, str(ROOT / "apps" / "cardiac_mi"))
    try:
        from lib.trainers.segmentation import environment_options
    finally:
        sys.path.remove(str(ROOT / "apps" / "cardiac_mi"))
    monkeypatch.setenv("CARDIAC_MI_TRAIN_OPTIONS", '{"max_epochs": 2, "synthetic_ratio": 0}')
    assert environment_options() == {"max_epochs": 2, "synthetic_ratio": 0}
    monkeypatch.setenv("CARDIAC_MI_TRAIN_OPTIONS", "[1]")
    with pytest.raises(InputError, match="expected a JSON object"):
        environment_options()
    monkeypatch.setenv("CARDIAC_MI_TRAIN_OPTIONS", '{"epochz": 2}')
    with pytest.raises(InputError, match="epochz: no such trainer option"):
        environment_options()
