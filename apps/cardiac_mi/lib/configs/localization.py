"""Localization: where the LV is (coarse mask) and the ROI the segmentation network sees."""

from __future__ import annotations

import logging
import os
from typing import Any

from monailabel.interfaces.config import TaskConfig
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.train import TrainTask

from lib.infers import localization as infers

logger = logging.getLogger(__name__)


class Localization(TaskConfig):
    def init(self, name: str, model_dir: str, conf: dict[str, str], planner: Any, **kwargs):
        super().init(name, model_dir, conf, planner, **kwargs)
        self.labels = ["lv"]
        self.label_colors = {"lv": [255, 64, 64]}
        self.path = [os.path.join(model_dir, "localization.pt")]

    def infer(self) -> InferTask | dict[str, InferTask]:
        return {self.name: infers.Localization(self.model_dir, labels=self.labels)}

    def trainer(self) -> TrainTask | None:
        return None
