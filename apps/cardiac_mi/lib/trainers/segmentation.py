"""The ``segmentation`` trainer: fine-tune the served model on the final labels plus GAN slices.

A thin layer over :func:`cardiac_mi.retrain.retrain`: it takes ``datastore.datalist()`` (the
images with a final, clinician-corrected label), reads its options, runs the retraining into a
new run folder and returns the run's statistics. A published checkpoint replaces
``<models>/segmentation.pt``, which the infer tasks reload on their next request.

Options come from the ``/train/segmentation`` request body, then ``$CARDIAC_MI_TRAIN_OPTIONS`` (a JSON
object of these keys: the defaults of ``cardiac-mi serve``, which has no ``--conf``), then the app's
``--conf`` (strings), then the defaults below (what ``/info`` shows under ``trainers.segmentation.config``):

- ``synthetic_ratio``: share of GAN-synthesized training draws, in [0, 1) (0: on real cases GAN
  slices did not help, see :mod:`cardiac_mi.retrain`; 0.5 is the reference paper's mix);
- ``synthetic_slices``: synthetic slices to make (0: as many as the ratio asks for);
- ``synthetic_mode``: ``synthetic`` (simulated anatomy) or ``hybrid`` (on the real labels);
- ``gan_checkpoint``: GAN checkpoint ("": the GAN package's default);
- ``max_epochs``: epochs of fine-tuning;
- ``max_steps_per_epoch``: batches per epoch (0: every draw);
- ``train_batch_size``: slices per batch;
- ``learning_rate``: initial Adam learning rate;
- ``val_split``: share of the labelled cases held out for validation;
- ``seed``: seed of the split, the simulator, batch order and augmentation;
- ``publish``: ``review`` (the default: train and score; a person publishes the new model from the
  viewer's Active Learning tab after seeing its figures, see :mod:`cardiac_mi.viewer.training`),
  ``if_better``, ``always`` or ``never``. Whatever the policy, a model is published only when it was
  validated on at least :data:`cardiac_mi.retrain.MIN_VALIDATION_CASES` labelled series held out of
  its training (:func:`cardiac_mi.retrain.publish_problem`);
- ``device``: ``auto``, ``cpu`` or ``cuda``.

App-level ``--conf`` keys only: ``train_dir`` (run folders; default ``<models>/runs/segmentation``),
``keep_runs`` (run folders kept, newest first; default 5) and ``auto_retrain_after`` (retrain
after this many new final labels; 0, the default, never), which the app reads from
:attr:`Segmentation.auto_retrain_after`.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import os
import re
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.train import TrainTask

from cardiac_mi.retrain import RetrainConfig, read_stats, retrain
from lgemri.errors import InputError

logger = logging.getLogger(__name__)

RUN_NAME = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")
DEFAULT_KEEP_RUNS = 5
OPTIONS_ENV = "CARDIAC_MI_TRAIN_OPTIONS"


def _int(key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise InputError(f"{key}: expected a whole number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{key}: expected a whole number, got {value!r}") from None
    if not math.isfinite(number) or number != int(number):
        raise InputError(f"{key}: expected a whole number, got {value!r}")
    return int(number)


def _optional_int(key: str, value: Any) -> int | None:
    """0, "" or None mean "not set"."""
    if value is None or value == "":
        return None
    number = _int(key, value)
    return None if number == 0 else number


def _float(key: str, value: Any) -> float:
    if isinstance(value, bool):
        raise InputError(f"{key}: expected a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"{key}: expected a number, got {value!r}") from None


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InputError(f"{key}: expected text, got {value!r}")
    return value.strip()


def _optional_text(key: str, value: Any) -> str | None:
    return None if value is None or value == "" else _text(key, value)


# request/conf key -> (RetrainConfig field, parser)
OPTIONS: dict[str, tuple[str, Callable[[str, Any], Any]]] = {
    "synthetic_ratio": ("synthetic_ratio", _float),
    "synthetic_slices": ("synthetic_slices", _optional_int),
    "synthetic_mode": ("synthetic_mode", _text),
    "gan_checkpoint": ("gan_checkpoint", _optional_text),
    "max_epochs": ("max_epochs", _int),
    "max_steps_per_epoch": ("max_steps_per_epoch", _optional_int),
    "train_batch_size": ("batch_size", _int),
    "learning_rate": ("lr", _float),
    "val_split": ("val_fraction", _float),
    "seed": ("seed", _int),
    "publish": ("publish", _text),
    "device": ("device", _text),
}


def environment_options() -> dict[str, Any]:
    """The trainer options of ``$CARDIAC_MI_TRAIN_OPTIONS`` (a JSON object; {} when unset).

    Raises:
        InputError: Not a JSON object, or a key that is no trainer option.
    """
    text = os.environ.get(OPTIONS_ENV, "").strip()
    if not text:
        return {}
    try:
        options = json.loads(text)
    except ValueError as exc:
        raise InputError(f"${OPTIONS_ENV}: not JSON ({exc}): {text[:200]!r}") from None
    if not isinstance(options, dict):
        raise InputError(f"${OPTIONS_ENV}: expected a JSON object of trainer options, got {text[:200]!r}")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise InputError(
            f"${OPTIONS_ENV}: {', '.join(unknown)}: no such trainer option (options: {', '.join(OPTIONS)})"
        )
    return options


def retrain_config(*layers: Mapping[str, Any] | None) -> RetrainConfig:
    """A checked :class:`RetrainConfig` from option layers, later layers winning (unknown keys,
    such as MONAI Label's own ``model`` or ``gpus``, are ignored)."""
    values: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if key in OPTIONS:
                field, parse = OPTIONS[key]
                values[field] = parse(key, value)
    config = RetrainConfig(**values)
    config.validate()
    return config


class Segmentation(TrainTask):
    """Retrain the segmentation network on the datastore's final labels mixed with GAN slices.

    Args:
        model_dir: The models folder the infer tasks read (``segmentation.pt`` is published there).
        conf: The app's ``--conf`` settings (strings).
        description: Shown by ``/info``.

    Raises:
        InputError: A bad option in ``conf``.
    """

    def __init__(
        self,
        model_dir: str,
        conf: Mapping[str, str] | None = None,
        description: str = "Fine-tune the segmentation model on the final labels mixed with GAN-synthesized slices",
    ):
        super().__init__(description)
        conf = dict(conf or {})
        self.model_dir = Path(model_dir)
        self.train_dir = Path(conf.get("train_dir") or self.model_dir / "runs" / "segmentation")
        self.keep_runs = _int("keep_runs", conf.get("keep_runs", DEFAULT_KEEP_RUNS))
        if self.keep_runs < 1:
            raise InputError(f"keep_runs: keep at least 1 run folder, got {self.keep_runs}")
        self.auto_retrain_after = _int("auto_retrain_after", conf.get("auto_retrain_after", 0))
        if self.auto_retrain_after < 0:
            raise InputError(f"auto_retrain_after: expected 0 (off) or a positive count, got {self.auto_retrain_after}")
        self.conf = {**{k: v for k, v in conf.items() if k in OPTIONS}, **environment_options()}
        self.defaults = retrain_config(self.conf)  # bad --conf values fail at start, not at the first /train

    def config(self) -> dict[str, Any]:
        values = dataclasses.asdict(self.defaults)
        shown = {key: values[field] for key, (field, _) in OPTIONS.items()}
        for key in ("synthetic_slices", "max_steps_per_epoch"):
            shown[key] = shown[key] or 0
        shown["gan_checkpoint"] = shown["gan_checkpoint"] or ""
        return shown

    def info(self) -> dict[str, Any]:
        info = super().info()
        info["auto_retrain_after"] = self.auto_retrain_after
        return info

    def stats(self) -> dict[str, Any]:
        return read_stats(self.model_dir)

    def _new_run_dir(self) -> Path:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
        run_dir = self.train_dir / f"{stamp}-{uuid.uuid4().hex[:6]}"
        run_dir.mkdir(parents=True)
        return run_dir

    def _prune_runs(self) -> None:
        if not self.train_dir.is_dir():
            return
        runs = sorted(d for d in self.train_dir.iterdir() if d.is_dir() and RUN_NAME.fullmatch(d.name))
        for old in runs[: -self.keep_runs]:
            shutil.rmtree(old, ignore_errors=True)
            logger.info("removed old run folder %s (keep_runs %d)", old, self.keep_runs)

    def __call__(self, request, datastore: Datastore):
        config = retrain_config(self.conf, request)
        pairs = datastore.datalist()
        if not pairs:
            raise InputError(
                "no final labels in the datastore: save a corrected label (as final) for at least one image, "
                "then train again"
            )
        run_dir = self._new_run_dir()
        logger.info("training segmentation on %d labelled images into %s (%s)", len(pairs), run_dir, config)
        try:
            return retrain(pairs, self.model_dir, run_dir, config)
        finally:
            self._prune_runs()
