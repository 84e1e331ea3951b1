"""Dice scoring: how far the current model is from the clinicians' final labels.

For every study with a final label the segmentation cascade (the ``segmentation`` infer task's
code path) runs again and its label is compared with the final one. The image info gets, under
:data:`KEY` (``"dice"``)::

    {"mean": 0.91,                                   # over the classes present in either label
     "classes": {"lv_cavity": 0.96, "myocardium": 0.88, "infarct": 0.79, "no_reflow": null},
     "emidec": {"myocardium": 0.93, "infarct": 0.80, "no_reflow": null},  # nested EMIDEC structures
     "model": "3f1c...", "label": "Case_P001:1732180000:...", "ts": ..., "seconds": 0.5}

A class absent from both labels has no Dice (``null``) and does not count in the mean. A record
(or an ``{"error": ...}`` record for a study that cannot be read) is current while both the
checkpoints and the final label are unchanged. One run scores at most
``max_images`` studies; the run's answer also gives the mean over all current records, the
model's agreement with the clinicians on this datastore.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.tasks.scoring import ScoringMethod

from lgemri.dicom import read_dicom_series
from lgemri.errors import InputError
from lgemri.images import is_nifti, read_image
from lgemri.inference import Models, segment_volume
from lgemri.labels import LABEL_NAMES, NUM_CLASSES, as_label, infarct_mask, myocardium_mask
from lgemri.metrics import dice
from lgemri.seg import read_seg
from lgemri.volume import Volume, read_nifti

from .common import current_models, final_label_uri, request_setting, setting, store_info

logger = logging.getLogger(__name__)

KEY = "dice"
DEFAULT_MAX_IMAGES = 20
GRID_ATOL_MM = 0.01


def read_label(label_path: str | os.PathLike, image_path: str | os.PathLike, image: Volume) -> np.ndarray:
    """The final label as a uint8 EMIDEC array on ``image``'s grid.

    Args:
        label_path: A NIfTI label, or a DICOM SEG file of the image series.
        image_path: The image's NIfTI file or DICOM series folder (a SEG needs the series).
        image: The image read from ``image_path``.

    Raises:
        InputError: Unreadable label, values outside 0-4, or a grid that is not the image's.
    """
    path = Path(label_path)
    if is_nifti(path):
        volume = read_nifti(path)
        if volume.shape != image.shape or not np.allclose(volume.affine, image.affine, atol=GRID_ATOL_MM):
            raise InputError(f"{path}: the label's grid {volume.shape} does not match the image's {image.shape}")
        return as_label(volume.array, path)
    if path.is_file() and Path(image_path).is_dir():
        return read_seg(path, read_dicom_series(image_path))
    raise InputError(f"{path}: expected a NIfTI label, or a DICOM SEG of a DICOM series")


def label_dice(pred: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Per-class (exclusive) and EMIDEC (nested) Dice, ``None`` where both labels lack the structure."""

    def score(p: np.ndarray, t: np.ndarray) -> float | None:
        return round(dice(p, t), 6) if p.any() or t.any() else None

    classes = {LABEL_NAMES[c]: score(pred == c, truth == c) for c in range(1, NUM_CLASSES)}
    present = [v for v in classes.values() if v is not None]
    emidec = {
        "myocardium": score(myocardium_mask(pred), myocardium_mask(truth)),
        "infarct": score(infarct_mask(pred), infarct_mask(truth)),
        "no_reflow": score(pred == 4, truth == 4),
    }
    return {"mean": round(float(np.mean(present)), 6) if present else None, "classes": classes, "emidec": emidec}


def label_signature(datastore: Datastore, image_id: str, label_id: str, label_path: str) -> str:
    """Which final label this is: its id, its save time and, for a local file, its mtime and size."""
    info = datastore.get_label_info(label_id, DefaultLabelTag.FINAL) or {}
    parts = [str(label_id), str(info.get("ts", ""))]
    if label_path and os.path.isfile(label_path):
        st = os.stat(label_path)
        parts += [str(st.st_mtime_ns), str(st.st_size)]
    return ":".join(parts)


class Dice(ScoringMethod):
    """Dice between the current model's label and the final label of every labelled study.

    Args:
        models_dir: The models folder (shared with the infer tasks through the model cache).
        max_images: At most this many studies per run (request parameter ``max_images``).
    """

    def __init__(self, models_dir: str | os.PathLike, max_images: int = DEFAULT_MAX_IMAGES):
        super().__init__("Dice between the segmentation model's label and the final (clinician) label")
        self.models_dir = models_dir
        self.max_images = setting({}, "max_images", max_images, minimum=1)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "key": KEY, "max_images": self.max_images}

    def _score(self, datastore: Datastore, image_id: str, label_path: str, models: Models) -> dict[str, Any]:
        tick = time.perf_counter()
        image_path = datastore.get_image_uri(image_id)
        image = read_image(image_path)
        truth = read_label(label_path, image_path, image)
        result = segment_volume(image, models)
        record = label_dice(result.label.array, truth)
        record["seconds"] = round(time.perf_counter() - tick, 3)
        if result.warnings:
            record["warnings"] = result.warnings
        return record

    def __call__(self, request, datastore: Datastore) -> dict[str, Any]:
        tick = time.perf_counter()
        max_images = request_setting(request, "max_images", self.max_images, minimum=1, where="dice scoring")
        models, signature = current_models(self.models_dir)
        images = sorted(datastore.get_labeled_images())
        done, errors, means = 0, {}, []
        stale = 0
        for image_id in images:
            # a remote datastore may know the label before it has a local copy: its id is then the image's
            label_id = datastore.get_label_by_image_id(image_id, DefaultLabelTag.FINAL) or image_id
            previous = datastore.get_image_info(image_id).get(KEY)
            try:
                label_path = final_label_uri(datastore, image_id, label_id)
                if not label_path:
                    raise InputError("the datastore returned no file")
                label_sig = label_signature(datastore, image_id, label_id, label_path)
            except Exception as exc:  # a label that cannot be fetched: report it, score the others
                logger.warning("dice: %s: final label unavailable (%s)", image_id, exc)
                errors[image_id] = f"final label unavailable: {exc}"
                continue
            if isinstance(previous, dict) and previous.get("model") == signature and previous.get("label") == label_sig:
                if "error" in previous:  # the same label and model give the same error
                    errors[image_id] = previous["error"]
                elif previous.get("mean") is not None:
                    means.append(previous["mean"])
                continue
            stale += 1
            if done >= max_images:
                continue
            done += 1
            try:
                record = self._score(datastore, image_id, label_path, models)
            except InputError as exc:
                logger.warning("dice: %s: %s", image_id, exc)
                record = {"error": str(exc)}
            except Exception as exc:  # one broken study must not stop the others
                logger.exception("dice: %s: scoring failed", image_id)
                record = {"error": f"{type(exc).__name__}: {exc}"}
            record.update({"model": signature, "label": label_sig, "ts": int(time.time())})
            store_info(datastore, image_id, {KEY: record})
            if "error" in record:
                errors[image_id] = record["error"]
            elif record["mean"] is not None:
                means.append(record["mean"])
                logger.info("dice: %s: mean %.4f %s", image_id, record["mean"], record["classes"])
        summary = {
            "method": KEY,
            "model": signature,
            "labeled": len(images),
            "scored": done,
            "remaining": stale - done,
            "errors": errors,
            "mean_dice": round(float(np.mean(means)), 6) if means else None,
            "mean_dice_images": len(means),
            "seconds": round(time.perf_counter() - tick, 3),
        }
        logger.info("dice scoring: %s", summary)
        return summary
