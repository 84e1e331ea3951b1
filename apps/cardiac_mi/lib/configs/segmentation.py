"""Segmentation: the EMIDEC classes with an attention-residual U-Net inside the localization ROI."""

from __future__ import annotations

import logging
import os
from typing import Any

from monailabel.interfaces.config import TaskConfig
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.train import TrainTask

from lgemri.labels import LABEL_NAMES
from lgemri.preview import OUTLINE_COLOURS
from lib.infers import segmentation as infers

logger = logging.getLogger(__name__)


def _rgb(hex_colour: str) -> list[int]:
    return [int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]


class Segmentation(TaskConfig):
    def init(self, name: str, model_dir: str, conf: dict[str, str], planner: Any, **kwargs):
        super().init(name, model_dir, conf, planner, **kwargs)
        # A list of names, in label-value order (1..4): OHIF's MONAI Label panel breaks on a dict.
        self.labels = [LABEL_NAMES[v] for v in sorted(LABEL_NAMES) if v != 0]
        self.label_colors = {LABEL_NAMES[v]: _rgb(c) for v, c in sorted(OUTLINE_COLOURS.items())}
        self.path = [os.path.join(model_dir, "segmentation.pt"), os.path.join(model_dir, "localization.pt")]

    def infer(self) -> InferTask | dict[str, InferTask]:
        return {self.name: infers.Segmentation(self.model_dir, labels=self.labels, label_colors=self.label_colors)}

    def trainer(self) -> TrainTask | None:
        from lib.trainers import Segmentation as SegmentationTrainer

        return SegmentationTrainer(self.model_dir, conf=self.conf)

    def strategy(self) -> dict[str, Any]:
        """``epistemic``: the study the model is least sure about (conf ``max_candidates``, ``mc_passes``)."""
        from lib.activelearning import Epistemic

        passes = self.conf.get("mc_passes", 8)
        return {
            "epistemic": Epistemic(self.model_dir, max_candidates=self.conf.get("max_candidates", 2), passes=passes)
        }

    def scoring_method(self) -> dict[str, Any]:
        """``dice`` and ``epistemic`` (``lib/scoring``; conf ``scoring_max_images``, ``mc_passes``)."""
        from lib.scoring import Dice, Epistemic

        max_images = self.conf.get("scoring_max_images", 20)
        return {
            "dice": Dice(self.model_dir, max_images=max_images),
            "epistemic": Epistemic(self.model_dir, passes=self.conf.get("mc_passes", 8), max_images=max_images),
        }
