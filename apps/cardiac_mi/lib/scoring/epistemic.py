"""Epistemic scoring: the Monte-Carlo dropout uncertainty of every unlabelled study.

Each study's image info gets, under :data:`KEY` (``"epistemic"``)::

    {"score": 0.031,            # mean mutual information over the predicted LV (nats), or null
     "model": "3f1c...",        # signature of the checkpoints that made it
     "passes": 8, "seed": 0, "ts": 1732180000, "seconds": 1.6,
     "classes": {...}, "slices": [...], "flip_rate": ..., "warnings": [...]}

or ``{"error": "...", "model": ..., "ts": ...}`` when the study cannot be read. A record is
current while the checkpoints, the number of passes and the seed are unchanged; an error is
retried after :data:`ERROR_RETRY_S`. One run scores at most ``max_images`` studies (request
parameter, or the app's ``scoring_max_images`` conf), the others wait for the next run. The
``epistemic`` strategy reads these records (see ``lib/activelearning/epistemic.py``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod

from lgemri.errors import InputError
from lgemri.images import read_image
from lgemri.inference import Models
from lgemri.uncertainty import DEFAULT_PASSES, mc_dropout

from .common import current_models, request_setting, setting, store_info

logger = logging.getLogger(__name__)

KEY = "epistemic"
ERROR_RETRY_S = 3600
DEFAULT_MAX_IMAGES = 20


def is_current(
    record: Mapping[str, Any] | None, signature: str, passes: int, seed: int, now: float | None = None
) -> bool:
    """True when ``record`` was made by these checkpoints with these settings (errors: for an hour)."""
    if not isinstance(record, Mapping) or record.get("model") != signature:
        return False
    if "error" in record:
        return (now if now is not None else time.time()) - float(record.get("ts", 0)) < ERROR_RETRY_S
    return "score" in record and record.get("passes") == passes and record.get("seed") == seed


def score_image(
    datastore: Datastore, image_id: str, models: Models, signature: str, passes: int, seed: int
) -> dict[str, Any]:
    """Run Monte-Carlo dropout on one study, store the record in its image info and return it."""
    tick = time.perf_counter()
    try:
        image = read_image(datastore.get_image_uri(image_id))
        result = mc_dropout(image, models, passes=passes, seed=seed)
    except InputError as exc:
        logger.warning("epistemic: %s: %s", image_id, exc)
        record: dict[str, Any] = {"error": str(exc), "model": signature, "ts": int(time.time())}
    except Exception as exc:  # a fetch or conversion failure must not stop the other studies
        logger.exception("epistemic: %s: scoring failed", image_id)
        record = {"error": f"{type(exc).__name__}: {exc}", "model": signature, "ts": int(time.time())}
    else:
        summary = result.summary()
        summary.pop("timings_s", None)
        record = {
            **summary,
            "model": signature,
            "ts": int(time.time()),
            "seconds": round(time.perf_counter() - tick, 3),
        }
        logger.info("epistemic: %s: score %s in %.2f s", image_id, record["score"], record["seconds"])
    store_info(datastore, image_id, {KEY: record})
    return record


class Epistemic(ScoringMethod):
    """Monte-Carlo dropout score of the unlabelled studies, recomputed when the model changes.

    Args:
        models_dir: The models folder (shared with the infer tasks through the model cache).
        passes: Stochastic passes per study (request parameter ``passes`` overrides).
        max_images: At most this many studies per run (request parameter ``max_images``).
        seed: Seed of the dropout masks.
    """

    def __init__(
        self,
        models_dir: str | os.PathLike,
        passes: int = DEFAULT_PASSES,
        max_images: int = DEFAULT_MAX_IMAGES,
        seed: int = 0,
    ):
        super().__init__(
            "Epistemic uncertainty (Monte-Carlo dropout mutual information over the LV) of unlabelled studies"
        )
        self.models_dir = models_dir
        self.passes = setting({}, "passes", passes, minimum=2)
        self.max_images = setting({}, "max_images", max_images, minimum=1)
        self.seed = setting({}, "seed", seed)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "key": KEY, "passes": self.passes, "max_images": self.max_images}

    def __call__(self, request, datastore: Datastore) -> dict[str, Any]:
        tick = time.perf_counter()
        passes = request_setting(request, "passes", self.passes, minimum=2, where="epistemic scoring")
        max_images = request_setting(request, "max_images", self.max_images, minimum=1, where="epistemic scoring")
        models, signature = current_models(self.models_dir)
        images = sorted(datastore.get_unlabeled_images())
        now = time.time()
        stale = [
            i for i in images if not is_current(datastore.get_image_info(i).get(KEY), signature, passes, self.seed, now)
        ]
        todo = stale[:max_images]
        errors = {}
        for image_id in todo:
            record = score_image(datastore, image_id, models, signature, passes, self.seed)
            if "error" in record:
                errors[image_id] = record["error"]
        summary = {
            "method": KEY,
            "model": signature,
            "unlabeled": len(images),
            "current": len(images) - len(stale),
            "scored": len(todo),
            "remaining": len(stale) - len(todo),
            "errors": errors,
            "seconds": round(time.perf_counter() - tick, 3),
        }
        logger.info("epistemic scoring: %s", summary)
        return summary
