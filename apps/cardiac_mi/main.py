"""The cardiac_mi MONAI Label app: LV localization and infarct segmentation on LGE MRI.

Start it with ``monailabel start_server --app apps/cardiac_mi --studies <folder or DICOMweb URL>
--conf models_dir <folder>``; without ``models_dir`` it uses ``$CARDIAC_MI_MODELS`` or the repository's
``models/``. Tasks: ``localization`` and ``segmentation`` (see ``lib/configs``); ``--conf models`` picks
some of them, as in MONAI Label's sample apps (default all).

Requests are checked before any work starts (:meth:`CardiacMIApp.check_request`): an unknown task,
strategy or scoring method is a 404, a device this machine lacks a 422; an infer's ``image`` must be an
image id of the datastore (a SeriesInstanceUID on DICOMweb), never a server path, and an image of
another modality than MR is refused with a message.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
from collections.abc import Iterable
from typing import Any

from fastapi import HTTPException
from lib.configs import Localization, Segmentation
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.config import TaskConfig
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random

import lgemri
from cardiac_mi import monailabel_compat as compat
from cardiac_mi.ids import device_problem, is_local_image_id, is_uid, shown
from lgemri.dicom import SEGMENTED_MODALITIES
from lgemri.inference import default_models_dir

logger = logging.getLogger(__name__)

CONFIGS: dict[str, type] = {"localization": Localization, "segmentation": Segmentation}
# the request key naming the task of each kind of request, and what the kind is called in messages
TASK_KEYS = {
    "infer": ("model", "infer task"),
    "batch_infer": ("model", "infer task"),
    "train": ("model", "trainer"),
    "strategy": ("strategy", "active-learning strategy"),
    "scoring": ("method", "scoring method"),
}
# the name MONAI Label gives an uploaded image (tempfile.NamedTemporaryFile in the temporary folder)
_UPLOAD_NAME = re.compile(r"tmp[a-z0-9_]{8}(\.[A-Za-z0-9]+)*")


def unknown(kind: str, name: Any, known: Iterable[str]) -> HTTPException:
    """The 404 for a task name that is not one of ``known``."""
    return HTTPException(404, f"{kind} {shown(name)}: no such {kind} (available: {', '.join(sorted(known)) or 'none'})")


def no_such_image(image: Any) -> HTTPException:
    """The one answer for an image id the datastore does not hold, whatever a file of that name would be."""
    return HTTPException(
        404,
        f"image {shown(image)}: no such image in the datastore (an image is named by its id, "
        "the series' SeriesInstanceUID; file paths are not accepted)",
    )


def selected_tasks(models: str | None) -> list[str]:
    """The task configs that ``--conf models`` names (comma-separated, as in MONAI Label's sample apps; default all).

    Raises:
        ValueError: for a name that is no task, or a folder given there (the models folder is ``models_dir``).
    """
    if not models or models.strip() == "all":
        return list(CONFIGS)
    names = [name.strip() for name in models.split(",") if name.strip()]
    for name in names:
        if name not in CONFIGS:
            hint = " (the models folder is --conf models_dir <folder>)" if os.sep in name or os.path.isdir(name) else ""
            raise ValueError(
                f"--conf models {models}: {name!r} is no task; choose from all, {', '.join(CONFIGS)}{hint}"
            )
    return names


class CardiacMIApp(MONAILabelApp):
    def __init__(self, app_dir, studies, conf):
        conf = dict(conf or {})
        self.model_dir = os.path.abspath(conf.get("models_dir") or str(default_models_dir()))
        if not os.path.isdir(self.model_dir):
            raise ValueError(
                f"{self.model_dir}: no models folder (set --conf models_dir <folder> or CARDIAC_MI_MODELS)"
            )
        compat.check_version()

        self.planner = None
        self.models: dict[str, TaskConfig] = {}
        for name in selected_tasks(conf.get("models")):
            task = CONFIGS[name]()
            task.init(name, self.model_dir, conf, self.planner)
            self.models[name] = task
        logger.info("+++ cardiac_mi models folder: %s; tasks: %s", self.model_dir, ", ".join(self.models))

        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="cardiac_mi",
            description="Myocardial infarct segmentation and quantification on cardiac LGE MRI",
            version=lgemri.__version__,
        )

    def init_datastore(self) -> Datastore:
        """A DICOMweb ``--studies`` URL gets the Orthanc datastore (SEG labels, outbox); a folder MONAI Label's own."""
        if not self.studies.startswith(("http://", "https://")):
            return super().init_datastore()
        from monailabel.config import settings

        from cardiac_mi.datastore import OrthancDatastore

        cache = self.conf.get("datastore_cache") or settings.MONAI_LABEL_DICOMWEB_CACHE_PATH
        cache = cache or os.path.join(os.path.expanduser("~"), ".cache", "cardiac_mi", "datastore")
        user = settings.MONAI_LABEL_DICOMWEB_USERNAME or None
        password = settings.MONAI_LABEL_DICOMWEB_PASSWORD or None
        datastore = OrthancDatastore(
            self.studies.rstrip("/"),
            user,
            password if user else None,
            cache_dir=cache,
            # MONAI Label's own default lists CT only: MR unless the environment says otherwise
            search_filter=settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER
            if os.environ.get("MONAI_LABEL_DICOMWEB_SEARCH_FILTER")
            else {"Modality": "MR"},
            list_ttl=float(self.conf.get("datastore_refresh", 30)),
        )
        from cardiac_mi.datastore import seg_for_series

        compat.use_seg_writer(seg_for_series)  # output=dicom_seg: the coded EMIDEC segments of lgemri.seg
        datastore.on_final_label.append(self._count_final_label)
        logger.info(
            "+++ datastore: %s (cache %s, lists refreshed every %.0f s)", datastore.url, cache, datastore.list_ttl
        )
        return datastore

    # ------------------------------------------------------------------------------ request checks

    def _tasks(self, kind: str) -> dict[str, Any]:
        return {
            "infer": self._infers,
            "batch_infer": self._infers,
            "train": self._trainers,
            "strategy": self._strategies,
            "scoring": self._scoring_methods,
        }[kind]

    def check_request(self, kind: str, request: dict[str, Any]) -> None:
        """Refuse a request of ``kind`` (infer, batch_infer, train, strategy, scoring) before any work starts.

        Raises:
            HTTPException: 404 for an unknown task (strategy, method), 422 for a device this machine lacks.
        """
        key, name = TASK_KEYS[kind]
        tasks = self._tasks(kind)
        task = request.get(key) or ("random" if kind == "strategy" else None)
        if not isinstance(task, str) or task not in tasks:
            raise unknown(name, task, tasks)
        if request.get("device") is not None:
            problem = device_problem(request["device"])
            if problem:
                raise HTTPException(422, problem)

    def _dicomweb(self) -> bool:
        return str(self.studies).startswith(("http://", "https://"))

    def _request_file(self, path: str) -> bool:
        """Whether ``path`` is a file MONAI Label made for this request: an upload, or a session's image."""
        real = os.path.realpath(path)
        in_temp = os.path.dirname(real) == os.path.realpath(tempfile.gettempdir())
        if in_temp and _UPLOAD_NAME.fullmatch(os.path.basename(real)):
            return os.path.isfile(real)
        store = getattr(self._sessions, "store_path", None)
        return bool(store) and real.startswith(os.path.realpath(store) + os.sep) and os.path.exists(real)

    def check_image(self, image: Any, datastore: Datastore) -> None:
        """``image`` must name an image of ``datastore``: a SeriesInstanceUID on DICOMweb (no uploads, no
        sessions, never a path), an id of the folder datastore or the upload MONAI Label made for this request.
        Whether a file of that name exists on the server never changes the answer.

        Raises:
            HTTPException: 422 for a value that is not an image id, 404 for an id the datastore lacks, 422 for
                an image of another modality than MR.
        """
        if not isinstance(image, str) or not image:
            raise HTTPException(
                422, f"image: {shown(image)} is not an image id (give the series' SeriesInstanceUID as ?image=)"
            )
        if self._dicomweb():
            if not is_uid(image):
                raise HTTPException(
                    422, f"image: {shown(image)} is not a series UID (digits separated by dots, at most 64 characters)"
                )
            if os.path.exists(image):  # MONAI Label would read a file of that name relative to the server
                raise no_such_image(image)
            modality = str((datastore.get_image_info(image) or {}).get("Modality", "") or "").upper()
            if modality and modality not in SEGMENTED_MODALITIES:
                raise HTTPException(
                    422,
                    f"image {image} is a {modality} series; cardiac_mi segments "
                    f"{', '.join(SEGMENTED_MODALITIES)} (LGE) series only",
                )
            return
        if os.path.isabs(image) and self._request_file(image):
            return
        if not is_local_image_id(image):
            raise HTTPException(
                422, f"image: {shown(image)} is not an image id (letters, digits, '_', '-' and single dots)"
            )
        if os.path.exists(image) or image not in datastore.list_images():
            raise no_such_image(image)

    def model_file(self, model, validate=True):
        """MONAI Label's, with a 404 for a model that is no infer task (``PUT /model/nosuch`` was a 500)."""
        if model not in self._infers:
            raise unknown("model", model, self._infers)
        return super().model_file(model, validate)

    def batch_infer(self, request, datastore=None):
        self.check_request("batch_infer", request)
        return super().batch_infer(request, datastore)

    def train(self, request):
        self.check_request("train", request)
        return super().train(request)

    def scoring(self, request, datastore=None):
        self.check_request("scoring", request)
        return super().scoring(request, datastore)

    # ------------------------------------------------------------------------------ tasks

    def infer(self, request, datastore=None):
        """MONAI Label's infer after :meth:`check_request` and :meth:`check_image`, with the datastore's fetch and
        convert seconds added to the answer's timings."""
        store = datastore or self.datastore()
        self.check_request("infer", request)
        self.check_image(request.get("image"), store)
        result = super().infer(request, datastore)
        timings, image = getattr(store, "fetch_timings", None), request.get("image")
        params = result.get("params") if isinstance(result, dict) else None
        if timings is not None and isinstance(image, str) and not os.path.exists(image) and isinstance(params, dict):
            fetched = timings.pop(store.get_image_uri(image), None)  # cached by now: no request to the server
            params.setdefault("timings_s", {}).update(fetched or {"fetch": 0.0, "convert": 0.0})
        return result

    def _count_final_label(self, image_id: str, saved: dict) -> None:
        """Start the ``segmentation`` trainer after every ``auto_retrain_after`` new final labels (0: never)."""
        every = int(self.conf.get("auto_retrain_after", 0) or 0)
        if every <= 0:
            return
        self._new_final_labels = getattr(self, "_new_final_labels", 0) + 1
        if self._new_final_labels < every:
            logger.info("%d of %d new final labels before retraining", self._new_final_labels, every)
            return
        self._new_final_labels = 0
        from monailabel.utils.async_tasks.task import AsyncTask

        result, detail = AsyncTask.run("train", request={"model": "segmentation"}, enqueue=True)
        logger.info("%d new final labels: retraining segmentation (%s)", every, detail or result)

    def on_init_complete(self):
        """MONAI Label's start-up, with the first background scoring delayed (``--conf scoring_delay``, 120 s).

        On 2 CPU cores the scoring processes started with the server slowed the first clinician's
        request from 1.4 s to 3.5 s; later scoring runs after each training, when the model changed.
        """
        auto = compat.auto_scoring(self)
        with compat.scoring_paused(self):
            super().on_init_complete()
        if auto and self._scoring_methods:
            delay = float(self.conf.get("scoring_delay", 120))
            timer = threading.Timer(delay, self.async_scoring, args=(None,))
            timer.daemon = True
            timer.start()
            logger.info("background scoring starts in %.0f s", delay)

    def next_sample(self, request):
        """MONAI Label's, without rescoring every study after each request: the strategy scores what it needs."""
        self.check_request("strategy", request)
        with compat.scoring_paused(self):
            return super().next_sample(request)

    def on_save_label(self, image_id, label_id):
        """What the datastore did with this save (stored in Orthanc, queued, or kept as a non-final tag), in
        the answer; never an earlier save's answer (MONAI Label calls this right after save_label, in the
        same thread)."""
        outcome = getattr(self.datastore(), "save_outcome", None)
        return outcome(image_id) if outcome is not None else {}

    def _declared(self, method: str) -> dict[str, Any]:
        """The tasks each task config's ``method()`` declares, by name, as in MONAI Label's sample apps: None,
        one task (named after its config) or a dict of named tasks."""
        found: dict[str, Any] = {}
        for config in self.models.values():
            task = getattr(config, method)()
            if task is not None:
                found.update(task if isinstance(task, dict) else {config.name: task})
        return found

    def init_infers(self) -> dict[str, InferTask]:
        return self._declared("infer")

    def init_trainers(self) -> dict[str, TrainTask]:
        return self._declared("trainer")

    def init_strategies(self) -> dict[str, Strategy]:
        return {"random": Random(), "first": First(), **self._declared("strategy")}

    def init_scoring_methods(self) -> dict[str, Any]:
        return self._declared("scoring_method")
