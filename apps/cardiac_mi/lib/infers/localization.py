"""Localization infer task: the coarse LV mask of the first stage and the ROI box around it."""

from __future__ import annotations

from typing import Any

from lgemri.inference import InferenceResult
from lgemri.volume import Volume

from .cascade import CascadeInfer


class Localization(CascadeInfer):
    """Label 1 = LV (cavity and wall) as found by the localization network; JSON: the ROI."""

    def __init__(self, models_dir, labels=("lv",)):
        super().__init__(
            models_dir,
            labels=list(labels),
            description="LV localization on LGE MRI: coarse LV mask and the 128 x 128 mm ROI",
            checkpoint="localization.pt",
        )

    def label_of(self, result: InferenceResult) -> Volume:
        return result.lv_mask

    def result_json(self, image: Volume, result: InferenceResult) -> dict[str, Any]:
        return {
            "shape": list(result.lv_mask.shape),
            "roi": result.roi,
            "lv_voxels": int((result.lv_mask.array > 0).sum()),
            "label_names": {name: i + 1 for i, name in enumerate(self.labels)},
            "timings_s": {k: round(v, 4) for k, v in result.timings.items()},
            "warnings": result.warnings,
        }
