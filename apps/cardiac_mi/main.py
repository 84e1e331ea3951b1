"""The cardiac_mi MONAI Label app: LV localization and infarct segmentation on LGE MRI.

Start it with ``monailabel start_server --app apps/cardiac_mi --studies <folder or DICOMweb URL>
--conf models <folder>``; without ``models`` it uses ``$CARDIAC_MI_MODELS`` or the repository's
``models/``. Tasks: ``localization`` and ``segmentation`` (see ``lib/configs``).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Dict

import lgemri
from lgemri.inference import default_models_dir
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.config import TaskConfig
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random

from lib.configs import Localization, Segmentation

logger = logging.getLogger(__name__)

CONFIGS: Dict[str, type] = {"localization": Localization, "segmentation": Segmentation}


class CardiacMIApp(MONAILabelApp):
    def __init__(self, app_dir, studies, conf):
        conf = dict(conf or {})
        self.model_dir = os.path.abspath(conf.get("models") or str(default_models_dir()))
        if not os.path.isdir(self.model_dir):
            raise ValueError(f"{self.model_dir}: no models folder (set --conf models <folder> or CARDIAC_MI_MODELS)")

        self.planner = None
        self.models: Dict[str, TaskConfig] = {}
        for name, config in CONFIGS.items():
            task = config()
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
        # MONAI Label 0.8.5 has no hook for the ``output=dicom_seg`` writer: its endpoint calls dcmqi with
        # client-given segment names; ours writes the coded EMIDEC segments of lgemri.seg instead.
        import monailabel.endpoints.infer as infer_endpoint

        from cardiac_mi.datastore import seg_for_series

        infer_endpoint.nifti_to_dicom_seg = seg_for_series
        datastore.on_final_label.append(self._count_final_label)
        logger.info("+++ datastore: %s (cache %s, lists refreshed every %.0f s)", datastore.url, cache, datastore.list_ttl)
        return datastore

    def infer(self, request, datastore=None):
        """MONAI Label's infer, with the datastore's fetch and convert seconds added to the answer's timings."""
        result = super().infer(request, datastore)
        store = datastore or self.datastore()
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
        auto, self._auto_update_scoring = self._auto_update_scoring, False
        try:
            super().on_init_complete()
        finally:
            self._auto_update_scoring = auto
        if auto and self._scoring_methods:
            delay = float(self.conf.get("scoring_delay", 120))
            timer = threading.Timer(delay, self.async_scoring, args=(None,))
            timer.daemon = True
            timer.start()
            logger.info("background scoring starts in %.0f s", delay)

    def next_sample(self, request):
        """MONAI Label's, without rescoring every study after each request: the strategy scores what it needs."""
        auto, self._auto_update_scoring = self._auto_update_scoring, False
        try:
            return super().next_sample(request)
        finally:
            self._auto_update_scoring = auto

    def on_save_label(self, image_id, label_id):
        """What the datastore did with this save (stored in Orthanc, queued, or kept as a non-final tag), in
        the answer; never an earlier save's answer (MONAI Label calls this right after save_label, in the
        same thread)."""
        outcome = getattr(self.datastore(), "save_outcome", None)
        return outcome(image_id) if outcome is not None else {}

    def init_infers(self) -> Dict[str, InferTask]:
        infers: Dict[str, InferTask] = {}
        for config in self.models.values():
            task = config.infer()
            infers.update(task if isinstance(task, dict) else {config.name: task})
        return infers

    def init_trainers(self) -> Dict[str, TrainTask]:
        trainers: Dict[str, TrainTask] = {}
        for config in self.models.values():
            task = config.trainer()
            if task is not None:
                trainers[config.name] = task
        return trainers

    def init_strategies(self) -> Dict[str, Strategy]:
        from lib.activelearning import Epistemic

        # conf: max_candidates (studies scored on the fly per request), mc_passes (Monte-Carlo passes)
        epistemic = Epistemic(self.model_dir, max_candidates=self.conf.get("max_candidates", 2), passes=self.conf.get("mc_passes", 8))
        return {"random": Random(), "first": First(), "epistemic": epistemic}

    def init_scoring_methods(self):
        """``dice`` and ``epistemic`` (``lib/scoring``), by name."""
        from lib.scoring import Dice, Epistemic

        # conf: scoring_max_images (studies per scoring run), mc_passes (as for the epistemic strategy)
        max_images = self.conf.get("scoring_max_images", 20)
        return {
            "dice": Dice(self.model_dir, max_images=max_images),
            "epistemic": Epistemic(self.model_dir, passes=self.conf.get("mc_passes", 8), max_images=max_images),
        }
