"""The MONAI Label API as the viewer's MONAI Label panel sees it: ``/viewer/monailabel/...``.

MONAI Label 0.8.5's OHIF panel talks to a server URL (set by ``ohif/app-config.js`` to this prefix).
Two of its calls get answers shaped for the clinician's viewer; the rest are MONAI Label's own handlers,
mounted again under the prefix:

- ``info/``: only the viewer's tasks (:func:`viewer_tasks`, default ``segmentation``) and their labels.
  The panel offers every segmentation-type task, preselects the first (``localization``, an internal
  step of the cascade), and makes a segment for every label of every task.
- ``infer/{task}``: runs the task like MONAI Label's handler, but on the inference queue (MONAI Label's
  runs the model inside its ``async`` handler, which stalls the image loading of the viewer meanwhile), and
  answers the label as the panel reads it: a raw ``uint8`` NRRD whose voxels are in the order of the
  viewer's volume (columns, rows, then slices in increasing position along the slice normal, as
  Cornerstone3D sorts them), whatever order the task's NIfTI has. The panel copies those bytes into its
  labelmap as they are, without looking at the geometry.
- ``train/`` answers ``{"status": "NOT_RUNNING"}`` when the app has no training task running (MONAI
  Label answers 404, which the panel asks for every time it connects).

And one call of our own: ``label?image=SERIES`` answers the series' final label (the datastore's: its
newest MANUAL SEG) as the same NRRD, with its description in the ``X-Cardiac-Mi-Label`` header (JSON),
or 204 (no content) when the series has none. The viewer shows it when a study opens, so a correction continues
from the last saved one.

**The inference queue** (:data:`INFERENCE`). Every infer of the server (``/infer/{task}`` and this
``infer/{task}``) runs on threads of its own: ``$CARDIAC_MI_INFER_WORKERS`` at a time (default 1), the
others wait their turn, and beyond ``$CARDIAC_MI_INFER_QUEUE`` waiting or running (default 64) an infer
is answered 503 with ``Retry-After``. They never run on the thread pool that serves the study list,
the DICOMweb proxy, ``/info/`` and the labels, so a queue of infers cannot take its threads, and the
machine's cores are not shared by many models at once. An infer whose request is cancelled before its
turn never runs. ``bench/concurrent_infer.py`` measures it (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import nrrd
import numpy as np
from fastapi import APIRouter, BackgroundTasks, Depends, Form, HTTPException
from fastapi.responses import FileResponse, JSONResponse, Response
from monailabel.config import settings
from monailabel.endpoints.user.auth import RBAC, User
from monailabel.interfaces.utils.app import app_instance

from cardiac_mi.viewer.results import remember_inference
from lgemri.errors import InputError
from lgemri.images import read_image
from lgemri.labels import DISPLAY_NAMES, LABEL_NAMES
from lgemri.volume import Volume

__all__ = [
    "router",
    "PANEL_PREFIX",
    "DEFAULT_VIEWER_TASKS",
    "viewer_tasks",
    "viewer_order",
    "write_viewer_nrrd",
    "final_label_nrrd",
    "InferenceQueue",
    "INFERENCE",
    "run_panel_infer",
]

logger = logging.getLogger(__name__)

PANEL_PREFIX = "/viewer/monailabel"
DEFAULT_VIEWER_TASKS = ("segmentation",)
_LPS = np.diag([-1.0, -1.0, 1.0])

router = APIRouter(prefix=PANEL_PREFIX, include_in_schema=False)

T = TypeVar("T")
DEFAULT_INFER_WORKERS = 1
DEFAULT_INFER_QUEUE = 64


def _env_count(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        logger.error("$%s=%r is not a whole number of 1 or more: using %d", name, text, default)
        return default
    return value


class InferenceQueue:
    """Runs inferences on ``workers`` threads of their own, with at most ``limit`` waiting or running.

    ``await queue.run(func, ...)`` holds no thread of the server's shared pool while it waits, so the
    requests that pool serves (study list, DICOMweb proxy, ``/info/``) keep their threads during a queue
    of infers.
    """

    def __init__(self, workers: int = DEFAULT_INFER_WORKERS, limit: int = DEFAULT_INFER_QUEUE) -> None:
        if workers < 1 or limit < workers:
            raise ValueError(f"inference queue: {workers} workers and room for {limit}: need 1 <= workers <= limit")
        self.workers, self.limit = workers, limit
        self._lock = threading.Lock()
        self._pending = 0
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    @classmethod
    def from_environment(cls) -> InferenceQueue:
        workers = _env_count("CARDIAC_MI_INFER_WORKERS", DEFAULT_INFER_WORKERS)
        limit = max(_env_count("CARDIAC_MI_INFER_QUEUE", DEFAULT_INFER_QUEUE), workers)
        return cls(workers, limit)

    @property
    def pending(self) -> int:
        """Infers waiting or running."""
        return self._pending

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    self.workers, thread_name_prefix="cardiac-mi-infer"
                )
            return self._executor

    def _done(self, _future: concurrent.futures.Future) -> None:
        with self._lock:
            self._pending -= 1

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` on the queue's threads; 503 when the queue is full."""
        with self._lock:
            if self._pending >= self.limit:
                raise HTTPException(
                    503,
                    f"{self._pending} infers are waiting or running, the most this server "
                    f"takes ($CARDIAC_MI_INFER_QUEUE={self.limit}): try again shortly",
                    headers={"Retry-After": "5"},
                )
            self._pending += 1
        try:
            future = self._pool().submit(contextvars.copy_context().run, func, *args)
        except BaseException:
            with self._lock:
                self._pending -= 1
            raise
        future.add_done_callback(self._done)
        if self._pending > self.workers:
            logger.info("infer queued: %d waiting or running, %d at a time", self._pending, self.workers)
        # the request cancelled before its turn: the future is cancelled too and never runs
        return await asyncio.wrap_future(future)


INFERENCE = InferenceQueue.from_environment()


def viewer_tasks() -> tuple[str, ...]:
    """The infer tasks the viewer's panel offers: ``$CARDIAC_MI_VIEWER_TASKS`` (comma-separated) or segmentation."""
    names = tuple(n.strip() for n in os.environ.get("CARDIAC_MI_VIEWER_TASKS", "").split(",") if n.strip())
    return names or DEFAULT_VIEWER_TASKS


def viewer_order(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    """``volume`` as the viewer orders its voxels: ([i, j, k] array, 4x4 RAS affine) with ``k`` increasing
    along the slice normal ``i x j`` (``i`` along an image row, ``j`` down a column, as every volume of
    :mod:`lgemri` from DICOM)."""
    array, affine = np.asarray(volume.array), np.asarray(volume.affine, dtype=float)
    normal = np.cross(affine[:3, 0], affine[:3, 1])
    if float(normal @ affine[:3, 2]) < 0:
        last = affine @ np.array([0.0, 0.0, array.shape[2] - 1, 1.0])
        affine = affine.copy()
        affine[:3, 2] *= -1
        affine[:3, 3] = last[:3]
        array = array[:, :, ::-1]
    return array, affine


def write_viewer_nrrd(volume: Volume, path: str | os.PathLike) -> Path:
    """Write a label as the panel reads it: raw uint8 NRRD in the viewer's voxel order, LPS geometry."""
    array, affine = viewer_order(volume)
    if array.min(initial=0) < 0 or array.max(initial=0) > 255:
        raise InputError(f"label values {array.min()}..{array.max()} do not fit the viewer's 8-bit labelmap")
    directions = (_LPS @ affine[:3, :3]).T  # one row per array axis
    header = {
        "type": "uint8",
        "encoding": "raw",
        "space": "left-posterior-superior",
        "space directions": directions,
        "space origin": _LPS @ affine[:3, 3],
        "kinds": ["domain", "domain", "domain"],
    }
    nrrd.write(str(path), np.ascontiguousarray(array, dtype=np.uint8), header, index_order="F")
    return Path(path)


def display_labels(labels: dict[str, int] | list[str]) -> dict[str, int]:
    """A task's labels (names -> values, or names in value order from 1) under the names a clinician
    reads (:data:`lgemri.labels.DISPLAY_NAMES`: "LV blood pool", "Myocardium", "Infarct", "MVO")."""
    values = dict(labels) if isinstance(labels, dict) else {name: i + 1 for i, name in enumerate(labels)}
    display = {LABEL_NAMES[value]: DISPLAY_NAMES[value] for value in DISPLAY_NAMES}
    return {display.get(name, name): value for name, value in sorted(values.items(), key=lambda item: item[1])}


@router.get("/info/")
def panel_info(user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))) -> dict[str, Any]:
    """``/info/`` with only the viewer's tasks, their labels under their display names (the panel names its
    segments so; the viewer's extension puts them in class order)."""
    info = app_instance().info()
    tasks = viewer_tasks()
    models = {
        name: {**model, "labels": display_labels(model.get("labels", []))}
        for name, model in info.get("models", {}).items()
        if name in tasks
    }
    labels: list[str] = []
    for model in models.values():
        labels += [name for name in model["labels"] if name not in labels]
    return {**info, "models": models, "labels": labels}


@router.post("/infer/{model}")
async def panel_infer(
    model: str,
    background_tasks: BackgroundTasks,
    image: str = "",
    output: str = "image",
    params: str = Form("{}"),
    user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER)),
):
    """Run ``model`` on series ``image`` on the inference queue; see :func:`run_panel_infer`."""
    return await INFERENCE.run(run_panel_infer, model, background_tasks, image, output, params)


def run_panel_infer(model: str, background_tasks: BackgroundTasks, image: str, output: str, params: str):
    """Run ``model`` on series ``image``; the label as the panel reads it (``output=image``) or the JSON.

    Blocking: the routes run it on :data:`INFERENCE`."""
    if not image:
        raise HTTPException(422, "no image: give the SeriesInstanceUID as ?image=")
    try:
        options = json.loads(params) if params else {}
    except ValueError:
        raise HTTPException(422, f"params is not JSON: {params[:200]!r}") from None
    instance = app_instance()
    request = {"model": model, "image": image, **instance.info().get("config", {}).get("infer", {}), **options}
    result = instance.infer(request)
    if result is None:
        raise HTTPException(500, f"{model} returned nothing for series {image}")
    remember_inference(image, model, result.get("params") or {})
    label = result.get("file") or result.get("label")
    if label and os.path.exists(label):
        background_tasks.add_task(_remove, label)
    if output == "json" or not label:
        return JSONResponse(result.get("params") or {})
    if options.get("result_extension") != ".nrrd" or not str(label).endswith((".nii", ".nii.gz")):
        return FileResponse(label, filename=os.path.basename(label))
    fd, converted = tempfile.mkstemp(suffix=".nrrd", prefix="viewer_")
    os.close(fd)
    background_tasks.add_task(_remove, converted)
    try:
        write_viewer_nrrd(read_image(label), converted)
    except InputError as exc:
        raise HTTPException(422, f"{model} on series {image}: {exc}") from None
    return FileResponse(converted, media_type="application/octet-stream", filename=f"{model}.nrrd")


def final_label_nrrd(series_uid: str, folder: str | os.PathLike) -> tuple[Path, dict[str, Any]] | None:
    """The final label of a series as the viewer's NRRD in ``folder``, with its info; None when it has none."""
    datastore = app_instance().datastore()
    uri = datastore.get_label_uri(series_uid, "final")
    if not uri or not os.path.exists(uri):
        return None
    info = datastore.get_label_info(series_uid, "final") or {}
    path = write_viewer_nrrd(read_image(uri), Path(folder) / "final.nrrd")
    return path, info


@router.get("/label")
def panel_final_label(
    image: str, background_tasks: BackgroundTasks, user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))
):
    """The final label of series ``image`` as the panel's NRRD; 204 when the series has none."""
    folder = tempfile.mkdtemp(prefix="viewer_label_")
    background_tasks.add_task(shutil.rmtree, folder, True)
    try:
        found = final_label_nrrd(image, folder)
    except InputError as exc:
        raise HTTPException(422, f"final label of series {image}: {exc}") from None
    if found is None:  # not an error: most series have none yet
        return Response(status_code=204)
    path, info = found
    keep = ("seg_series_uid", "seg_datetime", "manual", "creator", "pending_upload")
    description = json.dumps({key: info.get(key) for key in keep}, ensure_ascii=True)
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename="final.nrrd",
        headers={"X-Cardiac-Mi-Label": description, "Cache-Control": "no-store"},
    )


@router.get("/train/")
def panel_train_status(check_if_running: bool = False, user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))):
    """MONAI Label's training status; ``NOT_RUNNING`` (200) where MONAI Label answers 404."""
    from monailabel.endpoints.train import status

    try:
        return status(all=False, check_if_running=check_if_running)
    except HTTPException as exc:
        if exc.status_code != 404:
            raise
        return {"status": "NOT_RUNNING", "detail": str(exc.detail)}


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
