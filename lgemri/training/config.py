"""Training configurations: the fields every run shares (:class:`BaseTrainConfig`) and the
cascade's networks' (:class:`TrainConfig`). The GAN's (:class:`gan.train.GanTrainConfig`)
extends the same base.

A configuration is data: it is written to the run's ``config.json`` and into its checkpoints.
Torch-free, so that commands build their parsers from the choices and defaults here.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from ..config import Checked, Count, NonNegative, NonNegativeInt, Positive, Rate
from ..errors import InputError
from ..nets import TASKS

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


#: Sources (:data:`lgemri.training.data.Source`, checked when read); one path stands for a list of it.
Sources = Annotated[list[Any], BeforeValidator(lambda v: [v] if isinstance(v, (str, os.PathLike)) else v)]
AnyPath = str | os.PathLike


@dataclasses.dataclass(kw_only=True)
class BaseTrainConfig(Checked):
    """What every training run is configured with (the engine's settings).

    A subclass adds its task's fields, may give these other defaults, names its LR schedules
    in ``lr_schedules`` (and declares ``lr_schedule`` with them) and adds its own checks
    (:mod:`lgemri.config`).

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

    data: Sources
    out: AnyPath
    epochs: Count = 50
    batch_size: Count = 16
    lr_schedule: Annotated[Literal[LR_SCHEDULES], Field(title="LR schedule")] = "cosine"
    seed: int = 0
    resume: bool = False
    class_weighting: Annotated[Literal[WEIGHT_SCHEMES], Field(title="class weighting")] = "inverse_sqrt"
    class_weight_clip: float = 50.0
    augment: bool = True
    max_steps_per_epoch: Count | None = None
    device: Literal[DEVICES] = "auto"
    num_workers: NonNegativeInt = 0
    amp: bool = True
    stop_after: Count | None = None
    progress: bool = True

    @field_validator("data")
    @classmethod
    def _some_data(cls, data: list) -> list:
        if not data:
            raise InputError("no training data given (--data)")
        return data

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

    task: Literal[TASKS]
    lr: Annotated[Positive, Field(title="learning rate")] = 1e-3
    weight_decay: NonNegative = 0.0
    init: AnyPath | None = None
    loss: Literal[LOSSES] = "ce"
    dice_weight: NonNegative = 1.0
    two_stage: bool = False
    network: str | None = None
    channels: Annotated[tuple[Count, ...], Field(min_length=2)] | None = None
    dropout: Rate = 0.1
    val_batch_size: Count | None = None
    max_stretch: Annotated[float, Field(ge=1, allow_inf_nan=False)] = 1.25

    @model_validator(mode="after")
    def _combinations(self) -> TrainConfig:
        if self.two_stage and self.task != "segmentation":
            raise InputError(f"two-stage input applies to the segmentation task, not {self.task!r}")
        if self.init is not None and (self.network is not None or self.channels is not None):
            raise InputError("init takes the network from its checkpoint; leave network and channels unset")
        return self

    def plain(self) -> dict:
        out = super().plain()
        out["init"] = None if self.init is None else os.fspath(self.init)
        out["channels"] = list(self.channels) if self.channels is not None else None
        return out
