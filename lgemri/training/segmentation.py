"""Training of the cascade's three networks: :class:`SegmentationTrainer` on the engine
(:mod:`lgemri.training.engine`), configured by :class:`~lgemri.training.config.TrainConfig`.

Tasks (:data:`lgemri.nets.checkpoint.TASKS`):

- ``localization``: the small U-Net on the coarse whole slice, LV versus background
  (:class:`~lgemri.training.data.LocalizationDataset`);
- ``segmentation``: the ResAtt-U-Net on the 128 x 128 crops, the five EMIDEC classes; with
  ``two_stage`` it takes a second input channel, the cleaned LV-cavity mask (Nor Kamal et al.
  2026): during training the true cavity cleaned by :func:`lgemri.postprocess.clean_cavity`
  and randomly eroded/dilated by 0-2 px, at inference the cavity network's cleaned output;
- ``cavity``: the stage-1 ResAtt-U-Net of the two-stage cascade, cavity versus the rest.

A run starts from random weights (seeded) or, with ``init``, from a model checkpoint whose
network it keeps: fine-tuning, as the active-learning trainer does with the published model
(:mod:`cardiac_mi.retrain`).

The run folder (:mod:`lgemri.training.run_folder`): ``config.json`` (configuration, resolved
network, class weights, data, software versions), ``best.pt`` (the model checkpoint of the epoch
with the best validation score: mean Dice of the non-background classes, LV Dice for
localization; what inference loads), ``last.pt`` (the training state, for ``resume``),
``history.json`` and ``curves.png``.

Distributed: under ``torchrun`` the network is wrapped in ``DistributedDataParallel``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..labels import LABEL_NAMES, NUM_CLASSES
from ..losses import SegmentationLoss, class_frequencies, class_weights
from ..nets import build_network
from ..nets.checkpoint import load_checkpoint, load_training_state, save_checkpoint, save_training_state, unwrap
from ..nets.preprocess import LOC_FACTOR, LOC_SIZE, ROI_SIZE
from ..postprocess import largest_component
from .config import DEVICES, LOSSES, LR_SCHEDULES, TrainConfig
from .data import Augmentation, LocalizationDataset, RoiDataset
from .engine import Curve, Panel, Trainer, finite
from .provenance import data_provenance

__all__ = ["SegmentationTrainer", "TrainConfig", "train", "LOSSES", "LR_SCHEDULES", "DEVICES"]

logger = logging.getLogger(__name__)


def train(config: TrainConfig) -> dict:
    """Train one network as configured; returns a summary of the run.

    Returns:
        ``{"run_dir", "task", "epochs_completed", "best_epoch", "best_score", "best_metrics",
        "last_metrics", "init_metrics", "best_checkpoint", "last_checkpoint", "stopped_early"}``
        (``best_score`` is None when no epoch scored; ``init_metrics`` the validation of the
        ``init`` checkpoint before training, else None; under ``torchrun`` only rank 0 tracks
        the best epoch and metrics, the other ranks return None for them).

    Raises:
        InputError: Bad configuration or data, ``out`` already holding a run without
            ``resume``, ``resume`` without ``last.pt``, or an ``init`` checkpoint of another
            task or that does not fit the data.
    """
    return SegmentationTrainer.fit(config)


# --------------------------------------------------------------------------------------------
# set-up helpers


def _network_spec(config: TrainConfig, in_channels: int, out_channels: int) -> dict:
    name = config.network or ("localizer" if config.task == "localization" else "resatt_unet")
    kwargs: dict[str, Any] = {
        "spatial_dims": 2,
        "in_channels": in_channels,
        "out_channels": out_channels,
        "dropout": float(config.dropout),
    }
    if config.channels is not None:
        kwargs["channels"] = tuple(int(c) for c in config.channels)
        if name == "resatt_unet":
            kwargs["strides"] = (2,) * (len(kwargs["channels"]) - 1)
    return {"name": name, "kwargs": kwargs}


def _init_network(config: TrainConfig, in_channels: int, out_channels: int) -> tuple[torch.nn.Module, dict]:
    """The network of ``config.init`` with its weights, and its spec; checked against the data."""
    model, meta = load_checkpoint(config.init, task=config.task)
    spec = {"name": meta["network"]["name"], "kwargs": dict(meta["network"]["kwargs"])}
    two_stage = bool(meta["extra"].get("two_stage", False))
    if two_stage != bool(config.two_stage):
        raise InputError(
            f"{config.init}: a {'two' if two_stage else 'one'}-stage model; set two_stage={two_stage} to fine-tune it"
        )
    members = spec["kwargs"]["members"] if spec["name"] == "ensemble" else [spec]
    for kwargs in (m["kwargs"] for m in members):
        if (kwargs.get("in_channels"), kwargs.get("out_channels")) != (in_channels, out_channels):
            raise InputError(
                f"{config.init}: network has {kwargs.get('in_channels')} input and {kwargs.get('out_channels')} output "
                f"channels, the {config.task} data {in_channels} and {out_channels}"
            )
    return model, spec


def _class_names(task: str) -> list[str]:
    if task == "localization":
        return ["background", "lv"]
    if task == "cavity":
        return ["background", LABEL_NAMES[1]]
    return [LABEL_NAMES[c] for c in range(NUM_CLASSES)]


# --------------------------------------------------------------------------------------------
# validation


class _CaseScores:
    """Per-case 3D overlap counts of each foreground class; Dice averaged over cases."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.counts: dict[str, np.ndarray] = {}  # case -> (classes, 3) tp, fp, fn

    def add(self, case_id: str, pred: np.ndarray, truth: np.ndarray) -> None:
        counts = self.counts.setdefault(case_id, np.zeros((self.num_classes, 3), dtype=np.int64))
        for c in range(1, self.num_classes):
            p, t = pred == c, truth == c
            counts[c] += (int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum()))

    def dice(self) -> np.ndarray:
        """Mean over cases of each class's Dice (NaN where no case shows the class in truth or
        prediction); index 0 (background) is NaN."""
        out = np.full(self.num_classes, np.nan)
        for c in range(1, self.num_classes):
            values = []
            for counts in self.counts.values():
                tp, fp, fn = counts[c]
                if tp + fp + fn:
                    values.append(2 * tp / (2 * tp + fp + fn))
            if values:
                out[c] = float(np.mean(values))
        return out


def _centroid(mask: np.ndarray) -> np.ndarray | None:
    return np.argwhere(mask).mean(axis=0) if mask.any() else None


@torch.no_grad()
def _validate(model, dataset, loss_fn, config: TrainConfig, device: torch.device, use_amp: bool) -> dict:
    model.eval()
    batch = config.val_batch_size or 2 * config.batch_size
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=False, num_workers=config.num_workers)
    names = _class_names(config.task)
    scores = _CaseScores(len(names))
    case_ids = dataset.case_ids
    errors_mm: list[float] = []
    missed = 0
    total_loss, total_n, index = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        with torch.autocast(device_type=device.type, enabled=use_amp):
            logits = model(x)
        total_loss += float(loss_fn(logits, y)) * len(x)
        total_n += len(x)
        pred = logits.argmax(dim=1).cpu().numpy()
        truth = y.cpu().numpy()
        for p, t in zip(pred, truth):
            scores.add(case_ids[index], p, t)
            if config.task == "localization" and t.any():
                found = largest_component(p == 1)
                if found.any():
                    spacing = dataset.items[index].spacing_mm * LOC_FACTOR
                    errors_mm.append(float(np.linalg.norm(_centroid(found) - _centroid(t == 1)) * spacing))
                else:
                    missed += 1
            index += 1
    dice = scores.dice()
    metrics: dict[str, Any] = {"val_loss": total_loss / max(total_n, 1)}
    for c in range(1, len(names)):
        metrics[f"dice_{names[c]}"] = float(dice[c])
    foreground = dice[1:]
    metrics["mean_dice"] = float(np.nanmean(foreground)) if np.isfinite(foreground).any() else float("nan")
    if config.task == "localization":
        metrics["centre_error_mm"] = float(np.mean(errors_mm)) if errors_mm else float("nan")
        metrics["missed_slices"] = missed
    return metrics


# --------------------------------------------------------------------------------------------
# the trainer


class SegmentationTrainer(Trainer):
    """The engine's hooks for the localization, segmentation and cavity networks."""

    config: TrainConfig
    loss_keys = ("train_loss",)

    @property
    def label(self) -> str:
        return self.config.task

    def prepare(self):
        config = self.config
        augmentation = Augmentation(anisotropy=(1.0 / config.max_stretch, config.max_stretch))
        if config.task == "localization":
            make = lambda split, aug: LocalizationDataset(  # noqa: E731
                config.data, split, aug, seed=config.seed, augmentation=augmentation
            )
        else:
            target = "cavity" if config.task == "cavity" else "classes"
            make = lambda split, aug: RoiDataset(  # noqa: E731
                config.data,
                split,
                aug,
                two_stage_cavity=config.two_stage,
                target=target,
                seed=config.seed,
                augmentation=augmentation,
            )
        train_ds, val_ds = make("train", config.augment), make("val", False)
        self.names = _class_names(config.task)
        self.frequencies = class_frequencies(train_ds.target_arrays(), num_classes=train_ds.num_classes)
        self.weights = class_weights(self.frequencies, config.class_weighting, config.class_weight_clip)
        self.init_metrics = None
        return train_ds, val_ds

    def build(self) -> None:
        config, ds = self.config, self.train_ds
        if config.init is not None:
            model, self.spec = _init_network(config, ds.in_channels, ds.num_classes)
            self.model = model.to(self.device)
        else:
            self.spec = _network_spec(config, ds.in_channels, ds.num_classes)
            self.model = build_network(self.spec["name"], **self.spec["kwargs"]).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.lr_lambda)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)

    def load_state(self, path: Path) -> dict:
        state = load_training_state(
            path,
            self.model,
            self.optimizer,
            self.scheduler,
            self.scaler if self.use_amp else None,
            task=self.config.task,
            network=self.spec,
            device=self.device,
        )
        extra = state["extra"]
        self.init_metrics = extra.get("init_metrics")
        self.weights = np.asarray(extra.get("class_weights", self.weights), dtype=np.float64)
        self.frequencies = np.asarray(extra.get("class_frequencies", self.frequencies), dtype=np.float64)
        return state

    def start(self) -> None:
        config = self.config
        dice_weight = config.dice_weight if config.loss == "ce+dice" else 0.0
        self.loss_fn = SegmentationLoss(self.weights, dice_weight).to(self.device)
        if config.init is not None and not config.resume and self.main:
            self.init_metrics = finite(self.validate())
            logger.info(
                "%s: initial model %s scores mean Dice %s on validation",
                config.task,
                config.init,
                self.init_metrics["mean_dice"],
            )
        if self.world > 1:
            ddp_args = {"device_ids": [self.device.index]} if self.device.type == "cuda" else {}
            self.model = torch.nn.parallel.DistributedDataParallel(self.model, **ddp_args)
        self.data_description = {
            "sources": config.plain()["data"],
            "train": self.train_ds.describe(),
            "val": self.val_ds.describe(),
        }

    def checkpoint_extra(self) -> dict:
        config = self.config
        return {
            "task": config.task,
            "two_stage": bool(config.two_stage),
            "classes": self.names,
            "class_frequencies": self.frequencies.tolist(),
            "class_weights": self.weights.tolist(),
            "class_weighting": config.class_weighting,
            "input": {
                "size": LOC_SIZE if config.task == "localization" else ROI_SIZE,
                "channels": ["lge", "cavity"] if config.two_stage else ["lge"],
                "preprocess": "lgemri.nets.preprocess."
                + ("localization_input" if config.task == "localization" else "normalize"),
            },
            "data": self.data_description,
            "provenance": data_provenance(config.data),
            "init_metrics": self.init_metrics,
        }

    def describe(self) -> dict:
        return {
            "network": self.spec,
            "parameters": sum(p.numel() for p in unwrap(self.model).parameters()),
            "classes": self.names,
            "class_frequencies": self.frequencies.tolist(),
            "class_weights": self.weights.tolist(),
            "data": self.data_description,
            "init_metrics": self.init_metrics,
        }

    def train_mode(self) -> None:
        self.model.train()

    def train_step(self, batch) -> tuple[dict, int]:
        x, y = (t.to(self.device, non_blocking=True) for t in batch)
        with torch.autocast(device_type=self.device.type, enabled=self.use_amp):
            logits = self.model(x)
        loss = self.loss_fn(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {"train_loss": loss}, len(x)

    def step_schedule(self) -> float:
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        return lr

    def validate(self) -> dict:
        return _validate(unwrap(self.model), self.val_ds, self.loss_fn, self.config, self.device, self.use_amp)

    def score(self, metrics) -> float:
        return metrics["mean_dice"]

    def save_best(self, path: Path, extra: dict) -> None:
        save_checkpoint(path, self.model, task=self.config.task, network=self.spec, extra=extra)

    def save_last(self, path: Path, epoch: int, history: list[dict], extra: dict) -> None:
        save_training_state(
            path,
            self.model,
            task=self.config.task,
            network=self.spec,
            epoch=epoch,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            scaler=self.scaler if self.use_amp else None,
            history=history,
            extra=extra,
        )

    def history_record(self) -> dict:
        return {
            "task": self.config.task,
            "classes": self.names,
            "best": self.best,
            "init": self.init_metrics,
            "epochs": self.history,
        }

    def curve_panels(self) -> list[Panel]:
        task = self.config.task
        dice = [Curve(f"dice_{name}", name) for name in self.names[1:]]
        return [
            Panel(
                f"{task}: loss",
                "loss",
                [Curve("train_loss", "train", "o-"), Curve("val_loss", "validation", "s-")],
            ),
            Panel(
                f"{task}: validation Dice",
                "validation Dice",
                [*dice, Curve("mean_dice", "mean", "k-", linewidth=2)],
                ylim=(0, 1),
            ),
        ]

    def epoch_message(self, metrics: dict) -> str:
        text = f"train loss {metrics['train_loss']:.4f}, val loss {metrics['val_loss']:.4f}, "
        text += f"mean Dice {metrics['mean_dice']:.4f}"
        if self.config.task == "localization":
            text += f", centre error {metrics['centre_error_mm']:.1f} mm"
        return text

    def summary_extra(self) -> dict:
        return {"task": self.config.task, "init_metrics": self.init_metrics}
