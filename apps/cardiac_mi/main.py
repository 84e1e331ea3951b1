"""The cardiac_mi MONAI Label app: LV localization and infarct segmentation on LGE MRI.

Start it with ``monailabel start_server --app apps/cardiac_mi --studies <folder or DICOMweb URL>
--conf models <folder>``; without ``models`` it uses ``$CARDIAC_MI_MODELS`` or the repository's
``models/``. Tasks: ``localization`` and ``segmentation`` (see ``lib/configs``).
"""

from __future__ import annotations

import logging
import os
from typing import Dict

import lgemri
from lgemri.inference import default_models_dir
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.config import TaskConfig
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

    def init_infers(self) -> Dict[str, InferTask]:
        infers: Dict[str, InferTask] = {}
        for config in self.models.values():
            task = config.infer()
            infers.update(task if isinstance(task, dict) else {config.name: task})
        return infers

    def init_trainers(self) -> Dict[str, TrainTask]:
        return {}  # the active-learning trainer comes with a later slice of issue 6

    def init_strategies(self) -> Dict[str, Strategy]:
        return {"random": Random(), "first": First()}
