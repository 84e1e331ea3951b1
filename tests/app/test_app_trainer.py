"""The app's ``segmentation`` trainer against MONAI Label's LocalDatastore holding phantom studies
with final labels: /info, training, publishing, hot reload by the infer task, bad input."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

pytest.importorskip("monailabel")

from lgemri.errors import InputError  # noqa: E402
from tests.helpers.app import MODELS, make_app  # noqa: E402

CASES = ("Case_P001", "Case_P002", "Case_N003")
CONF = {
    "synthetic_ratio": "0.5",
    "max_epochs": "1",
    "max_steps_per_epoch": "2",
    "train_batch_size": "4",
    "keep_runs": "2",
    "auto_retrain_after": "3",
}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _make_app(root: Path, phantom_dir: Path, labelled=CASES, **conf):
    """The app on a local studies folder holding the phantom images, ``labelled`` ones with a final label."""
    studies, models = root / "studies", root / "models"
    studies.mkdir()
    models.mkdir()
    for name in ("localization.pt", "segmentation.pt"):
        shutil.copy(MODELS / name, models / name)
    for case in CASES:
        shutil.copy(phantom_dir / "emidec" / case / "Images" / f"{case}.nii.gz", studies / f"{case}.nii.gz")
    app = make_app(studies, models, **{"train_dir": str(root / "runs"), **CONF, **conf})
    # after training MONAI Label asks its own HTTP server to re-run the scoring methods; in process there is none
    app._auto_update_scoring = False
    for case in labelled:  # what a clinician's save in the viewer does: a final label per image
        label = phantom_dir / "emidec" / case / "Contours" / f"{case}.nii.gz"
        app.datastore().save_label(case, str(label), "final", {})
    return app


@pytest.fixture(scope="module")
def app(tmp_path_factory, phantom_dir):
    return _make_app(tmp_path_factory.mktemp("trainer"), phantom_dir)


def test_info_lists_the_trainer_with_its_options(app):
    info = app.info()
    trainer = info["trainers"]["segmentation"]
    assert trainer["config"]["synthetic_ratio"] == 0.5 and trainer["config"]["max_epochs"] == 1
    assert trainer["config"]["publish"] == "review" and trainer["config"]["max_steps_per_epoch"] == 2
    assert trainer["auto_retrain_after"] == 3
    assert app._trainers["segmentation"].auto_retrain_after == 3
    assert "localization" not in info["trainers"]
    assert len(app.datastore().datalist()) == len(CASES)


def test_train_publishes_a_checkpoint_the_infer_task_reloads(app):
    models = Path(app.model_dir)
    before = app.infer({"model": "segmentation", "image": "Case_P001"})
    Path(before["file"]).unlink()
    loads = before["params"]["models"]["loads"]
    shipped = _sha(models / "segmentation.pt")

    runs = Path(app._trainers["segmentation"].train_dir)
    runs.mkdir(parents=True, exist_ok=True)
    for stale in ("20000101-000000-aaaaaa", "20000102-000000-bbbbbb"):
        (runs / stale).mkdir()
    result = app.train({"model": "segmentation", "publish": "always", "seed": 1})

    assert result["published"] and result["policy"] == "always"
    assert result["synthetic_ratio"] == 0.5 and result["slices"]["synthetic"] > 0
    assert result["image_ids"] == sorted(CASES) and result["cases"]["val"] >= 1
    assert result["config"]["seed"] == 1 and result["epochs"] == 1
    assert _sha(models / "segmentation.pt") != shipped == _sha(models / "segmentation.prev.pt")
    assert app._trainers["segmentation"].stats() == result == app.info()["train_stats"]["segmentation"]
    run_dir = Path(result["run_dir"])
    assert run_dir.parent == runs and (run_dir / "train" / "best.pt").is_file()
    assert sorted(p.name for p in runs.iterdir()) == ["20000102-000000-bbbbbb", run_dir.name]  # keep_runs 2

    after = app.infer({"model": "segmentation", "image": "Case_P001"})
    Path(after["file"]).unlink()
    assert after["params"]["models"]["loads"] == loads + 1  # picked up without a restart


def test_bad_requests_are_clear_errors(app):
    with pytest.raises(InputError, match=r"synthetic_ratio must lie in \[0, 1\)"):
        app.train({"model": "segmentation", "synthetic_ratio": 1.5})
    with pytest.raises(InputError, match="max_epochs: expected a whole number"):
        app.train({"model": "segmentation", "max_epochs": "two"})
    with pytest.raises(InputError, match="unknown publish policy 'maybe'"):
        app.train({"model": "segmentation", "publish": "maybe"})


def test_no_final_label_is_a_clear_error(tmp_path, phantom_dir):
    app = _make_app(tmp_path, phantom_dir, labelled=())
    with pytest.raises(InputError, match="no final labels in the datastore"):
        app.train({"model": "segmentation"})
    assert app._trainers["segmentation"].stats() == {}


def test_bad_conf_fails_at_start(tmp_path, phantom_dir):
    with pytest.raises(InputError, match="synthetic_ratio: expected a number"):
        _make_app(tmp_path, phantom_dir, labelled=(), synthetic_ratio="half")
