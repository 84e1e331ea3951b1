"""The ``epistemic`` strategy: the unlabelled study the model is least sure about.

Studies are ranked by their Monte-Carlo dropout score (mean mutual information over the
predicted LV, see :mod:`lgemri.uncertainty`), as stored by the ``epistemic`` scoring method in
the image info. A study whose score is missing or stale (made by older checkpoints) is scored
on the fly, at most ``max_candidates`` per request (app conf ``max_candidates``, request
parameter of the same name), drawn at random when more are waiting, so a request stays short
while the background scoring catches up. Studies handed out by this strategy within the last
``reserve_s`` seconds go last, so two annotators asking one after the other get different
studies. With no unlabelled study the answer is ``None``, which MONAI Label turns into ``{}``.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from lgemri.uncertainty import DEFAULT_PASSES
from lib.scoring.common import current_models, request_setting, setting
from lib.scoring.epistemic import KEY, is_current, score_image

logger = logging.getLogger(__name__)

DEFAULT_MAX_CANDIDATES = 2
DEFAULT_RESERVE_S = 300


class Epistemic(Strategy):
    """Highest Monte-Carlo dropout uncertainty first.

    Args:
        models_dir: The models folder (shared with the infer tasks through the model cache).
        max_candidates: Studies without a current score scored per request (0: never on the fly).
        passes: Stochastic passes per study; must match the scoring method's for its scores to count.
        seed: Seed of the dropout masks (idem).
        reserve_s: Seconds during which a study this strategy handed out goes last.
    """

    def __init__(
        self,
        models_dir: str | os.PathLike,
        max_candidates: int = DEFAULT_MAX_CANDIDATES,
        passes: int = DEFAULT_PASSES,
        seed: int = 0,
        reserve_s: int = DEFAULT_RESERVE_S,
    ):
        super().__init__("Highest epistemic uncertainty (Monte-Carlo dropout) first")
        self.models_dir = models_dir
        self.max_candidates = setting({}, "max_candidates", max_candidates)
        self.passes = setting({}, "passes", passes, minimum=2)
        self.seed = setting({}, "seed", seed)
        self.reserve_s = setting({}, "reserve_s", reserve_s)
        self._memo: dict[str, dict[str, Any]] = {}  # scores made here, for datastores that cannot keep them
        self._rng = random.Random()

    def info(self) -> dict[str, Any]:
        return {**super().info(), "key": KEY, "max_candidates": self.max_candidates, "passes": self.passes}

    def __call__(self, request, datastore: Datastore):
        images = datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels"))
        if not images:
            return None
        tick = time.perf_counter()
        max_candidates = request_setting(request, "max_candidates", self.max_candidates, where="epistemic strategy")
        reserve_s = request_setting(request, "reserve_s", self.reserve_s, where="epistemic strategy")
        strategy = request.get("strategy", "epistemic")
        models, signature = current_models(self.models_dir)
        now = time.time()

        records: dict[str, dict[str, Any]] = {}
        served: dict[str, float] = {}
        stale = []
        for image_id in sorted(images):
            info = datastore.get_image_info(image_id)
            served[image_id] = float(info.get("strategy", {}).get(strategy, {}).get("ts", 0))
            for record in (info.get(KEY), self._memo.get(image_id)):
                if is_current(record, signature, self.passes, self.seed, now):
                    records[image_id] = record
                    break
            else:
                stale.append(image_id)
        chosen = self._rng.sample(stale, min(max_candidates, len(stale)))
        for image_id in chosen:
            records[image_id] = self._memo[image_id] = score_image(
                datastore, image_id, models, signature, self.passes, self.seed
            )

        candidates = {i: r for i, r in records.items() if "error" not in r}
        if not candidates:
            image_id = self._rng.choice(sorted(images))
            logger.info("epistemic: no study has a score yet; %s at random", image_id)
            return {
                "id": image_id,
                "epistemic_score": None,
                "model": signature,
                "scored_now": len(chosen),
                "candidates": 0,
            }

        def rank(image_id: str):
            score = candidates[image_id].get("score")
            reserved = now - served[image_id] < reserve_s
            return (not reserved, -math.inf if score is None else float(score), image_id)

        image_id = max(candidates, key=rank)
        score = candidates[image_id].get("score")
        logger.info(
            "epistemic: %s (score %s) among %d scored of %d unlabelled; %d scored now in %.2f s",
            image_id,
            score,
            len(candidates),
            len(images),
            len(chosen),
            time.perf_counter() - tick,
        )
        return {
            "id": image_id,
            "epistemic_score": score,
            "model": signature,
            "scored_now": len(chosen),
            "candidates": len(candidates),
        }
