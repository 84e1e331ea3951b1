"""cardiac_mi.monailabel_compat: the version check, the route order, the paused scoring; the app's task choice."""

from __future__ import annotations

import logging
import shutil

import pytest

monailabel = pytest.importorskip("monailabel")
from fastapi import APIRouter, FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from cardiac_mi import monailabel_compat as compat  # noqa: E402
from tests.helpers.app import APP_DIR, ROOT  # noqa: E402
from tests.helpers.app import app_class as _app_class  # noqa: E402


def test_check_version_warns_for_an_untested_version(monkeypatch, caplog):
    with caplog.at_level(logging.WARNING, logger="cardiac_mi.monailabel_compat"):
        assert compat.check_version() == monailabel.__version__
    assert caplog.text == ""  # the pinned version is the tested one
    monkeypatch.setattr(monailabel, "__version__", "0.9.0")
    with caplog.at_level(logging.WARNING, logger="cardiac_mi.monailabel_compat"):
        compat.check_version()
    assert "MONAI Label 0.9.0 runs; cardiac_mi is tested with 0.8.5" in caplog.text


def test_put_routes_first_wins_and_drops():
    app = FastAPI()
    app.get("/info")(lambda: {"who": "theirs"})
    app.get("/gone")(lambda: {"who": "dropped"})
    ours = APIRouter()
    ours.get("/info")(lambda: {"who": "ours"})

    added, dropped = compat.put_routes_first(
        app, lambda: app.include_router(ours), drop=lambda route: getattr(route, "path", "") == "/gone"
    )
    client = TestClient(app)
    assert (added, dropped) == (1, 1)
    assert client.get("/info").json() == {"who": "ours"}
    assert client.get("/gone").status_code == 404


def test_scoring_paused_restores_the_switch_even_on_error():
    class App:
        _auto_update_scoring = True

    app = App()
    with pytest.raises(RuntimeError), compat.scoring_paused(app):
        assert compat.auto_scoring(app) is False
        raise RuntimeError("inside")
    assert compat.auto_scoring(app) is True


def test_conf_models_picks_tasks_and_models_dir_names_the_folder(tmp_path):
    studies = tmp_path / "studies"
    studies.mkdir()
    models = tmp_path / "models"
    shutil.copytree(ROOT / "models", models)
    cls = _app_class()
    app = cls(app_dir=str(APP_DIR), studies=str(studies), conf={"models_dir": str(models), "models": "localization"})
    assert list(app.models) == ["localization"] and app.model_dir == str(models)
    assert set(app.info()["models"]) == {"localization"}
    with pytest.raises(ValueError, match=r"'segmentatoin' is no task; choose from all, localization, segmentation"):
        cls(app_dir=str(APP_DIR), studies=str(studies), conf={"models_dir": str(models), "models": "segmentatoin"})
    with pytest.raises(ValueError, match=r"the models folder is --conf models_dir <folder>"):
        cls(app_dir=str(APP_DIR), studies=str(studies), conf={"models": str(models)})
