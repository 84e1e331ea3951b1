"""Training configurations: the fields every run shares (:class:`BaseTrainConfig`) and the
cascade's networks' (:class:`TrainConfig`). The GAN's (:class:`gan.train.GanTrainConfig`)
extends the same base.

A configuration is data: it is written to the run's ``config.json`` and into its checkpoints.
Torch-free, so that commands build their parsers from the choices and defaults here.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import InputError
from ..nets import TASKS

if TYPE_CHECKING:  # pragma: no cover
    from .data import Source

__all__ = ["BaseTrainConfig", "TrainConfig", "DEVICES", "WEIGHT_SCHEMES", "LOSSES", "LR_SCHEDULES"]

DEVICES = ("auto", "cpu", "cuda")
#: The schemes of :func:`lgemri.losses.class_weights` (repeated so that this module stays light;
#: a test checks that the two agree).
WEIGHT_SCHEMES = ("inverse_sqrt", "inverse", "median", "none")
#: The segmentation trainer's LR schedules (:func:`lgemri.training.engine.lr_lambda` knows these
#: and ``linear``).
LR_SCHEDULES = ("cosine", "poly", "constant")
LOSSES = ("ce", "ce+dice")


def plain_sources(values: Any) -> list | None:
    """Training sources as JSON values: paths as strings, ``(path, weight)`` as lists."""
    if values is None:
        return None
    return [[os.fspath(s[0]), float(s[1])] if isinstance(s, (tuple, list)) else os.fspath(s) for s in values]


def check_all(checks: list[tuple[bool, str]]) -> None:
    """Raise :class:`InputError` with the message of the first check that fails."""
    for ok, message in checks:
        if not ok:
            raise InputError(message)


@dataclasses.dataclass(kw_only=True)
class BaseTrainConfig:
    """What every training run is configured with (the engine's settings).

    A subclass adds its task's fields, may give these other defaults, names its LR schedules
    in ``lr_schedules`` and extends :meth:`validate`.

    Attributes:
        data: Sources: prepared folders, datalist JSON files or ``(source, weight)`` pairs
            (see :mod:`lgemri.training.data`); training uses their ``train`` split,
            validation their ``val`` split.
        out: The run folder (:mod:`lgemri.training.run_folder`).
        epochs: Total number of epochs (the LR schedule spans them).
        batch_size: Slices per batch (per rank under ``torchrun``).
        lr_schedule: One of ``lr_schedules`` (:func:`lgemri.training.engine.lr_lambda`); stepped
            once per epoch.
        seed: Seed of the initial weights, batch order, augmentation and dropout.
        resume: Continue the run in ``out`` from its ``last.pt``.
        class_weighting: Scheme of :func:`lgemri.losses.class_weights`.
        class_weight_clip: Largest ratio between two class weights.
        augment: Augment training slices.
        max_steps_per_epoch: Stop each epoch after this many batches (quick runs).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        num_workers: DataLoader worker processes.
        amp: Mixed precision (autocast + gradient scaling); used on CUDA only.
        stop_after: End this invocation once this many epochs are complete (counted from the
            start of the run), leaving ``last.pt`` to resume from; for time-limited jobs.
        progress: Show a progress bar per epoch.
    """

    lr_schedules: ClassVar[tuple[str, ...]] = LR_SCHEDULES

    data: list[Source]
    out: str
    epochs: int = 50
    batch_size: int = 16
    lr_schedule: str = "cosine"
    seed: int = 0
    resume: bool = False
    class_weighting: str = "inverse_sqrt"
    class_weight_clip: float = 50.0
    augment: bool = True
    max_steps_per_epoch: int | None = None
    device: str = "auto"
    num_workers: int = 0
    amp: bool = True
    stop_after: int | None = None
    progress: bool = True

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first bad shared setting."""
        if isinstance(self.data, (str, os.PathLike)):
            self.data = [self.data]
        if not self.data:
            raise InputError("no training data given (--data)")
        for value, choices, what in (
            (self.lr_schedule, self.lr_schedules, "LR schedule"),
            (self.class_weighting, WEIGHT_SCHEMES, "class weighting"),
            (self.device, DEVICES, "device"),
        ):
            if value not in choices:
                raise InputError(f"unknown {what} {value!r}; choose from {', '.join(choices)}")
        steps, stop = self.max_steps_per_epoch, self.stop_after
        check_all(
            [
                (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
                (self.batch_size >= 1, f"batch size must be at least 1, got {self.batch_size}"),
                (steps is None or steps >= 1, f"max steps per epoch must be at least 1, got {steps}"),
                (self.num_workers >= 0, f"workers must be non-negative, got {self.num_workers}"),
                (stop is None or stop >= 1, f"stop_after must be at least 1, got {stop}"),
            ]
        )

    def plain(self) -> dict:
        """The configuration as JSON values (``config.json``'s ``config``)."""
        out = dataclasses.asdict(self)
        out.update({"data": plain_sources(self.data), "out": os.fspath(self.out)})
        return out


@dataclasses.dataclass(kw_only=True)
class TrainConfig(BaseTrainConfig):
    """A run of one network of the cascade (:func:`lgemri.training.segmentation.train`).

    Attributes (besides :class:`BaseTrainConfig`'s):
        task: ``localization``, ``segmentation`` or ``cavity``.
        lr: Initial learning rate of Adam.
        weight_decay: Adam weight decay.
        lr_schedule: ``cosine`` (to 0 at the last epoch), ``poly`` (``(1 - e/E)^0.9``, nnU-Net) or
            ``constant``.
        init: A model checkpoint of ``task`` (e.g. the published ``segmentation.pt``) whose
            network and weights start the run: fine-tuning. The network spec (channels,
            dropout) comes from the checkpoint, so ``network`` and ``channels`` stay unset, and
            its ``two_stage`` must match. The checkpoint is scored on the validation split
            before the first epoch (``init_metrics`` of the summary and ``history.json``).
        loss: ``ce`` (class-weighted cross-entropy) or ``ce+dice`` (plus a soft Dice term).
        dice_weight: Factor of the Dice term with ``ce+dice``.
        two_stage: Segmentation with the cleaned cavity mask as a second input channel.
        network: Registry name (default ``localizer`` for localization, else ``resatt_unet``).
        channels: Feature channels per level (default: the network's).
        dropout: Dropout probability of the network.
        val_batch_size: Batch size of validation (default ``2 * batch_size``).
        max_stretch: Largest ratio of the augmentation's zooms along two perpendicular axes
            (:attr:`lgemri.training.data.Augmentation.anisotropy` spans its inverse to it): how
            far from its true shape a heart may be drawn, as in an image resized to a square
            matrix without its pixel geometry (EMIDEC's PNGs read at nominal pixels: 0.44 to 2.5).
    """

    task: str
    lr: float = 1e-3
    weight_decay: float = 0.0
    init: str | None = None
    loss: str = "ce"
    dice_weight: float = 1.0
    two_stage: bool = False
    network: str | None = None
    channels: tuple[int, ...] | None = None
    dropout: float = 0.1
    val_batch_size: int | None = None
    max_stretch: float = 1.25

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first bad setting."""
        if self.task not in TASKS:
            raise InputError(f"unknown task {self.task!r}; choose from {', '.join(TASKS)}")
        super().validate()
        if self.loss not in LOSSES:
            raise InputError(f"unknown loss {self.loss!r}; choose from {', '.join(LOSSES)}")
        channels_ok = self.channels is None or (len(self.channels) >= 2 and min(self.channels) >= 1)
        check_all(
            [
                (math.isfinite(self.lr) and self.lr > 0, f"learning rate must be positive, got {self.lr}"),
                (self.weight_decay >= 0, f"weight decay must be non-negative, got {self.weight_decay}"),
                (self.dice_weight >= 0, f"dice weight must be non-negative, got {self.dice_weight}"),
                (0.0 <= self.dropout < 1.0, f"dropout must lie in [0, 1), got {self.dropout}"),
                (
                    math.isfinite(self.max_stretch) and self.max_stretch >= 1.0,
                    f"max stretch must be at least 1, got {self.max_stretch}",
                ),
                (
                    not self.two_stage or self.task == "segmentation",
                    f"two-stage input applies to the segmentation task, not {self.task!r}",
                ),
                (channels_ok, f"channels must be two or more positive numbers, got {self.channels}"),
                (
                    self.init is None or (self.network is None and self.channels is None),
                    "init takes the network from its checkpoint; leave network and channels unset",
                ),
            ]
        )

    def plain(self) -> dict:
        out = super().plain()
        out["init"] = None if self.init is None else os.fspath(self.init)
        out["channels"] = list(self.channels) if self.channels is not None else None
        return out
