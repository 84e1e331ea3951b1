"""Active learning a clinician can follow: ``/viewer/training/...`` (the viewer's ``ohif/training.js``).

MONAI Label's Active Learning tab shows its progress bars white on white, "Training 100 %" before any
training (it reads an empty ``train_stats`` as one epoch of one), never notices that training ended, and its
"Update Model" published whatever the trainer published. These routes give the viewer what it needs instead:

- ``GET status``: labelled series of the archive, the training task as MONAI Label runs it (``idle``,
  ``running``, ``done``, ``failed``, ``stopped``), its phase and epochs with the validation Dice after each
  (from the run's own ``train_progress.json`` and ``history.json``), the new model waiting for review with
  its before/after figures and, when it cannot be published, why; and the served model (is a previous one
  kept to roll back to?). :func:`training_status` builds it from the files alone.
- ``POST start`` / ``POST stop``: start the ``segmentation`` trainer with the server's defaults (its publish
  policy is ``review``: nothing is served until a person publishes) or stop it.
- ``POST publish`` (``{"run": NAME}``, the run whose figures the person saw): :func:`cardiac_mi.retrain.
  publish_reviewed`: only a model validated on at least :data:`~cardiac_mi.retrain.MIN_VALIDATION_CASES`
  labelled series held out of its training replaces the served one; the served one is kept. 409 with the
  reason otherwise.
- ``POST rollback``: :func:`cardiac_mi.retrain.rollback`: the previous model is served again, byte for byte.

The infer tasks reload ``segmentation.pt`` when its mtime or size changes, so a publish or rollback is
served from the next Run on, without a restart.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException
from fastapi.responses import JSONResponse
from monailabel.config import settings
from monailabel.endpoints.user.auth import RBAC, User
from monailabel.interfaces.utils.app import app_instance

from cardiac_mi.retrain import (
    CHECKPOINT,
    MIN_VALIDATION_CASES,
    PREVIOUS,
    PublishRefused,
    file_sha256,
    publish_problem,
    publish_reviewed,
    read_progress,
    read_stats,
    rollback,
    served_entry,
)
from lgemri.errors import InputError
from lgemri.training.run_folder import HISTORY

__all__ = ["router", "PREFIX", "TRAINER", "training_status", "task_state"]

logger = logging.getLogger(__name__)

PREFIX = "/viewer/training"
TRAINER = "segmentation"
NO_CACHE = {"Cache-Control": "no-store"}
# MONAI Label's task status -> ours
_STATES = {"SUBMITTED": "running", "RUNNING": "running", "DONE": "done", "ERROR": "failed", "STOPPED": "stopped"}

router = APIRouter(prefix=PREFIX, include_in_schema=False)
_lock = threading.Lock()  # one publish or rollback at a time
_user = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))
_admin = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ADMIN))


_hashes: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str | None:
    """SHA-256 of a checkpoint, remembered by (path, mtime, size): the viewer asks every few seconds."""
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _hashes:
        if len(_hashes) > 64:
            _hashes.clear()
        _hashes[key] = file_sha256(path)
    return _hashes[key]


def _read_json(path: Path) -> dict:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return found if isinstance(found, dict) else {}


def _dice(metrics: Mapping[str, Any] | None) -> float | None:
    value = (metrics or {}).get("mean_dice")
    return round(float(value), 4) if isinstance(value, (int, float)) else None


def task_state(task: Mapping[str, Any] | None, progress: Mapping[str, Any]) -> dict:
    """The training as the viewer shows it: MONAI Label's last train task joined with the progress file the
    run wrote (only when the progress is of that task: it started after the task was submitted)."""
    if not task:
        return {"state": "idle", "phase": None, "progress": {}, "task": None}
    state = _STATES.get(str(task.get("status", "")).upper(), "running")
    started = str(task.get("start_ts") or "")
    mine = dict(progress) if str(progress.get("started_local") or "") >= started and progress else {}
    phase = mine.get("phase") or ("starting" if state == "running" else None)
    if state != "running":
        phase = "done" if state == "done" else state
    return {
        "state": state,
        "phase": phase,
        "progress": mine,
        "task": {"id": task.get("id"), "started": task.get("start_ts"), "finished": task.get("end_ts")},
    }


def _failure(state: str, progress: Mapping[str, Any]) -> str | None:
    if state == "failed":
        if progress.get("state") == "failed" and progress.get("message"):
            return f"Training failed: {progress['message']}"
        return "Training failed before it began (the server log, monailabel.log, says why)."
    if state == "stopped":
        return "Training was stopped; nothing was published."
    return None


def _epochs(progress: Mapping[str, Any]) -> dict:
    history = _read_json(Path(str(progress.get("train_dir") or ""), HISTORY)) if progress else {}
    epochs = [
        {
            "epoch": int(e.get("epoch", n + 1)),
            "val_dice": _dice(e),
            "train_loss": round(float(e["train_loss"]), 4) if isinstance(e.get("train_loss"), (int, float)) else None,
        }
        for n, e in enumerate(history.get("epochs") or [])
        if isinstance(e, dict)
    ]
    return {
        "epoch": len(epochs),
        "epochs": int(progress.get("epochs") or 0) if progress else 0,
        "val_dice": epochs[-1]["val_dice"] if epochs else None,
        "val_dice_before": _dice(history.get("init")),
        "history": epochs,
    }


def _candidate(models_dir: Path, stats: Mapping[str, Any], served_sha: str | None) -> dict | None:
    if not stats.get("best_checkpoint"):
        return None
    cases = stats.get("cases") or {}
    served = _sha256(Path(str(stats["best_checkpoint"]))) == served_sha and served_sha is not None
    problem = None if served else publish_problem(stats, models_dir)
    by_class = stats.get("val_dice_by_class") or {}
    return {
        "run": Path(str(stats.get("run_dir") or "")).name,
        "finished": stats.get("finished"),
        "val_dice_before": stats.get("val_dice_before"),
        "val_dice_after": stats.get("val_dice_after"),
        "val_dice_by_class": {"before": by_class.get("before"), "after": by_class.get("after")},
        "train_cases": int(cases.get("train") or 0),
        "val_cases": int(cases.get("val") or 0),
        "validation": cases.get("validation"),
        "val_image_ids": stats.get("val_image_ids") or [],
        "served": served,
        "publishable": not served and problem is None,
        "problem": problem,
        "review": stats.get("review"),
        "reason": stats.get("reason"),
    }


def _served(models_dir: Path, served_sha: str | None) -> dict:
    entry = served_entry(models_dir)
    if entry:
        source = f"retrained here (run {Path(str(entry.get('run_dir') or '')).name})"
    else:
        source = "the model the server started with"
    return {
        "sha256": served_sha,
        "source": source,
        "published_at": (entry or {}).get("at"),
        "previous": (models_dir / PREVIOUS).is_file(),
        "val_dice": (entry or {}).get("val_dice_after"),
    }


def training_status(
    models_dir: str | Path, task: Mapping[str, Any] | None = None, datastore: Mapping[str, Any] | None = None
) -> dict:
    """What the viewer's Active Learning tab shows, from the models folder's files.

    Args:
        models_dir: The served models' folder (``train_stats.json``, ``train_progress.json``, checkpoints).
        task: MONAI Label's last ``train`` task (``AsyncTask.status``), or None when none ran since start.
        datastore: The datastore's ``status()`` (``total``, ``completed``).

    Returns:
        ``{"annotated": {"labelled", "total"}, "training": {"state", "phase", "message", "epoch", "epochs",
        "val_dice", "val_dice_before", "history", "started", "finished", "cases"}, "candidate": {...} or None,
        "served": {"sha256", "source", "published_at", "previous", "val_dice"}, "min_validation_cases"}``.
    """
    models_dir = Path(models_dir)
    joined = task_state(task, read_progress(models_dir))
    progress = joined["progress"]
    served_sha = _sha256(models_dir / CHECKPOINT)
    training = {
        "state": joined["state"],
        "phase": joined["phase"],
        "message": _failure(joined["state"], progress),
        **_epochs(progress),
        "cases": progress.get("cases"),
        "started": (joined["task"] or {}).get("started"),
        "finished": (joined["task"] or {}).get("finished"),
    }
    store = datastore or {}
    return {
        "annotated": {"labelled": int(store.get("completed") or 0), "total": int(store.get("total") or 0)},
        "training": training,
        "candidate": _candidate(models_dir, read_stats(models_dir), served_sha),
        "served": _served(models_dir, served_sha),
        "min_validation_cases": MIN_VALIDATION_CASES,
    }


# ------------------------------------------------------------------------------ routes


def _models_dir() -> Path:
    return Path(app_instance().model_dir)


def _last_task() -> dict | None:
    from monailabel.utils.async_tasks.task import AsyncTask

    task, _ = AsyncTask.status("train")
    return dict(task) if isinstance(task, dict) else None


def _username(user: User) -> str:
    return getattr(user, "username", "") or ""


@router.get("/status")
def status(user: User = _user) -> JSONResponse:
    """The training status the viewer shows (:func:`training_status`)."""
    try:
        store = app_instance().datastore().status()
    except Exception as exc:  # the archive is away: the counts are unknown, the training status is not
        logger.warning("training status without datastore counts: %s", exc)
        store = {}
    return JSONResponse(training_status(_models_dir(), _last_task(), store), headers=NO_CACHE)


@router.post("/start")
def start(user: User = _admin) -> JSONResponse:
    """Start the ``segmentation`` trainer with the server's defaults; 409 while one runs."""
    from monailabel.utils.async_tasks.task import AsyncTask

    instance = app_instance()
    if TRAINER not in instance.info().get("trainers", {}):
        raise HTTPException(404, f"this server has no {TRAINER!r} trainer")
    if not instance.datastore().datalist():
        raise HTTPException(409, "Nothing to train on yet: save a corrected label of at least one series first.")
    task, detail = AsyncTask.run("train", request={"model": TRAINER}, enqueue=False)
    if task is None:
        raise HTTPException(409, "Training is already running; wait for it to end (or stop it) first.")
    logger.info("training started from the viewer by %s (task %s)", _username(user) or "a user", task.get("id"))
    return JSONResponse({"started": True, "task": task.get("id")}, headers=NO_CACHE)


@router.post("/stop")
def stop(user: User = _admin) -> JSONResponse:
    """Stop the running training (nothing is published); 409 when none runs."""
    from monailabel.endpoints.train import stop as stop_training

    stopped = stop_training()
    if not stopped:
        raise HTTPException(409, "No training is running.")
    return JSONResponse({"stopped": True}, headers=NO_CACHE)


@router.post("/publish")
def publish(body: dict | None = Body(None), user: User = _admin) -> JSONResponse:
    """Serve the last run's model after review (body ``{"run": NAME}``); 409 with the reason when refused."""
    run = (body or {}).get("run")
    if run is not None and not isinstance(run, str):
        raise HTTPException(422, f"run: expected the run's name (text), got {json.dumps(run)[:100]}")
    if _last_task() and _last_task().get("status") in ("SUBMITTED", "RUNNING"):
        raise HTTPException(409, "Not published: a training run is going on; publish when it has ended.")
    with _lock:
        try:
            result = publish_reviewed(_models_dir(), run=run, user=_username(user))
        except PublishRefused as exc:
            raise HTTPException(409, str(exc)) from None
        except InputError as exc:
            raise HTTPException(422, f"Not published: {exc}") from None
    return JSONResponse(result, headers=NO_CACHE)


@router.post("/rollback")
def roll_back(user: User = _admin) -> JSONResponse:
    """Serve the previous model again, byte for byte (the replaced one becomes the previous); 409 when none."""
    with _lock:
        try:
            result = rollback(_models_dir(), user=_username(user))
        except PublishRefused as exc:
            raise HTTPException(409, str(exc)) from None
    return JSONResponse(result, headers=NO_CACHE)
