"""Segmentation infer task: the EMIDEC label (cavity, myocardium, infarct, no-reflow) and its numbers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lgemri.errors import InputError
from lgemri.inference import InferenceResult
from lgemri.quantification import quantify
from lgemri.volume import Volume

from .cascade import CascadeInfer


class Segmentation(CascadeInfer):
    """The full cascade's label; JSON: ROI, volumes, infarct %, quantification, label names/colours."""

    def __init__(self, models_dir, labels: Sequence[str], label_colors: dict[str, Any] | None = None):
        super().__init__(
            models_dir,
            labels=list(labels),
            description="LV cavity, myocardium, infarct and no-reflow on short-axis LGE MRI",
            checkpoint="segmentation.pt",
        )
        self.label_colors = dict(label_colors or {})

    def label_of(self, result: InferenceResult) -> Volume:
        return result.label

    def result_json(self, image: Volume, result: InferenceResult) -> dict[str, Any]:
        data = result.summary()
        data["label_names"] = {name: i + 1 for i, name in enumerate(self.labels)}
        data["label_colors"] = self.label_colors
        if result.label.array.any():
            try:
                data["quantification"] = quantify(image, result.label)
            except InputError as exc:
                data["quantification"] = {"error": str(exc)}
        else:
            data["quantification"] = {"error": "empty label: nothing to quantify"}
        return data
