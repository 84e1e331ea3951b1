"""One training loop for the three networks of the cascade.

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

A run folder holds, every file written atomically:

- ``config.json``: the configuration, the resolved network, class weights, data and software
  versions (written when the run starts or resumes): how the results were made;
- ``best.pt``: the model checkpoint of the epoch with the best validation score (mean Dice of
  the non-background classes; LV Dice for localization), what inference loads;
- ``last.pt``: the training state after the latest epoch, for ``resume``;
- ``history.json`` and ``curves.png``: losses and validation metrics per epoch.

Reproducibility: the weights are initialised from ``seed``; at the start of every epoch the
torch, numpy and python generators are reseeded from ``(seed, epoch, rank)``, the batch order
comes from ``(seed, epoch)`` and each slice's augmentation from ``(seed, epoch, index)``. A
resumed run therefore ends with the same weights as an uninterrupted one (on the same device
and software; CUDA kernels may add their own non-determinism).

Distributed: launched by ``torchrun`` (``WORLD_SIZE`` > 1) the loop joins the process group
(NCCL on CUDA, gloo on CPU), wraps the network in ``DistributedDataParallel`` and gives each
rank its share of every epoch; ``batch_size`` is per rank. Only rank 0 validates and writes.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import os
import platform
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from .. import __version__
from ..atomic import atomic_path, write_text
from ..errors import InputError
from ..labels import LABEL_NAMES, NUM_CLASSES
from ..losses import WEIGHT_SCHEMES, SegmentationLoss, class_frequencies, class_weights
from ..nets import build_network
from ..nets.checkpoint import TASKS, load_checkpoint, load_training_state, save_checkpoint, save_training_state, unwrap
from ..nets.preprocess import LOC_FACTOR, LOC_SIZE, ROI_SIZE
from ..postprocess import largest_component
from .data import EpochSampler, LocalizationDataset, RoiDataset, Source
from .provenance import data_provenance

__all__ = ["TrainConfig", "train", "LOSSES", "LR_SCHEDULES", "DEVICES"]

logger = logging.getLogger(__name__)

LOSSES = ("ce", "ce+dice")
LR_SCHEDULES = ("cosine", "poly", "constant")
DEVICES = ("auto", "cpu", "cuda")


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run depends on (written to ``config.json``).

    Attributes:
        task: ``localization``, ``segmentation`` or ``cavity``.
        data: Sources: prepared folders, datalist JSON files or ``(source, weight)`` pairs
            (see :mod:`lgemri.training.data`); training uses their ``train`` split,
            validation their ``val`` split.
        out: The run folder.
        epochs: Total number of epochs (the LR schedule spans them).
        batch_size: Slices per batch (per rank under ``torchrun``).
        lr: Initial learning rate of Adam.
        weight_decay: Adam weight decay.
        lr_schedule: ``cosine`` (to 0 at the last epoch), ``poly`` (``(1 - e/E)^0.9``, nnU-Net) or
            ``constant``; stepped once per epoch.
        seed: Seed of the initial weights, batch order, augmentation and dropout.
        resume: Continue the run in ``out`` from its ``last.pt``.
        init: A model checkpoint of ``task`` (e.g. the published ``segmentation.pt``) whose
            network and weights start the run: fine-tuning. The network spec (channels,
            dropout) comes from the checkpoint, so ``network`` and ``channels`` stay unset, and
            its ``two_stage`` must match. The checkpoint is scored on the validation split
            before the first epoch (``init_metrics`` of the summary and ``history.json``).
        loss: ``ce`` (class-weighted cross-entropy) or ``ce+dice`` (plus a soft Dice term).
        dice_weight: Factor of the Dice term with ``ce+dice``.
        class_weighting: Scheme of :func:`lgemri.losses.class_weights` (``none`` for plain CE).
        class_weight_clip: Largest ratio between two class weights.
        two_stage: Segmentation with the cleaned cavity mask as a second input channel.
        network: Registry name (default ``localizer`` for localization, else ``resatt_unet``).
        channels: Feature channels per level (default: the network's).
        dropout: Dropout probability of the network.
        augment: Augment training slices.
        max_steps_per_epoch: Stop each epoch after this many batches (quick runs).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        num_workers: DataLoader worker processes.
        amp: Mixed precision (autocast + gradient scaling); used on CUDA only.
        stop_after: End this invocation once this many epochs are complete (counted from the
            start of the run), leaving ``last.pt`` to resume from; for time-limited jobs.
        progress: Show a progress bar per epoch.
        val_batch_size: Batch size of validation (default ``2 * batch_size``).
    """

    task: str
    data: list[Source]
    out: str
    epochs: int = 50
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"
    seed: int = 0
    resume: bool = False
    init: str | None = None
    loss: str = "ce"
    dice_weight: float = 1.0
    class_weighting: str = "inverse_sqrt"
    class_weight_clip: float = 50.0
    two_stage: bool = False
    network: str | None = None
    channels: tuple[int, ...] | None = None
    dropout: float = 0.1
    augment: bool = True
    max_steps_per_epoch: int | None = None
    device: str = "auto"
    num_workers: int = 0
    amp: bool = True
    stop_after: int | None = None
    progress: bool = True
    val_batch_size: int | None = None

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first bad setting."""
        if self.task not in TASKS:
            raise InputError(f"unknown task {self.task!r}; choose from {', '.join(TASKS)}")
        if isinstance(self.data, (str, os.PathLike)):
            self.data = [self.data]
        if not self.data:
            raise InputError("no training data given (--data)")
        for value, choices, what in (
            (self.lr_schedule, LR_SCHEDULES, "LR schedule"),
            (self.loss, LOSSES, "loss"),
            (self.class_weighting, WEIGHT_SCHEMES, "class weighting"),
            (self.device, DEVICES, "device"),
        ):
            if value not in choices:
                raise InputError(f"unknown {what} {value!r}; choose from {', '.join(choices)}")
        channels_ok = self.channels is None or (len(self.channels) >= 2 and min(self.channels) >= 1)
        steps, stop = self.max_steps_per_epoch, self.stop_after
        checks = [
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be at least 1, got {self.batch_size}"),
            (math.isfinite(self.lr) and self.lr > 0, f"learning rate must be positive, got {self.lr}"),
            (self.weight_decay >= 0, f"weight decay must be non-negative, got {self.weight_decay}"),
            (self.dice_weight >= 0, f"dice weight must be non-negative, got {self.dice_weight}"),
            (0.0 <= self.dropout < 1.0, f"dropout must lie in [0, 1), got {self.dropout}"),
            (steps is None or steps >= 1, f"max steps per epoch must be at least 1, got {steps}"),
            (self.num_workers >= 0, f"workers must be non-negative, got {self.num_workers}"),
            (stop is None or stop >= 1, f"stop_after must be at least 1, got {stop}"),
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
        for ok, message in checks:
            if not ok:
                raise InputError(message)


# --------------------------------------------------------------------------------------------
# set-up helpers


def _distributed() -> tuple[int, int, int, bool]:
    """(rank, local_rank, world_size, initialised_here) under torchrun, else (0, 0, 1, False)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 0, 1, False
    if not dist.is_available():
        raise InputError("WORLD_SIZE > 1 but torch.distributed is not available")
    initialised = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        initialised = True
    return dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), dist.get_world_size(), initialised


def _device(name: str, local_rank: int) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def _seed_everything(*keys: int) -> None:
    value = int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def _datasets(config: TrainConfig) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset]:
    if config.task == "localization":
        make = lambda split, aug: LocalizationDataset(config.data, split, aug, seed=config.seed)  # noqa: E731
    else:
        target = "cavity" if config.task == "cavity" else "classes"
        make = lambda split, aug: RoiDataset(  # noqa: E731
            config.data, split, aug, two_stage_cavity=config.two_stage, target=target, seed=config.seed
        )
    return make("train", config.augment), make("val", False)


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


def _lr_lambda(schedule: str, epochs: int):
    if schedule == "cosine":
        return lambda e: 0.5 * (1.0 + math.cos(math.pi * min(e, epochs) / epochs))
    if schedule == "poly":
        return lambda e: max(0.0, 1.0 - min(e, epochs) / epochs) ** 0.9
    return lambda e: 1.0


def _plain_config(config: TrainConfig) -> dict:
    out = dataclasses.asdict(config)
    out["data"] = [
        [os.fspath(s[0]), float(s[1])] if isinstance(s, (tuple, list)) else os.fspath(s) for s in config.data
    ]
    out["out"] = os.fspath(config.out)
    out["init"] = None if config.init is None else os.fspath(config.init)
    out["channels"] = list(config.channels) if config.channels is not None else None
    return out


def _finite(value: Any) -> Any:
    """NaN and infinities as None (JSON has no NaN), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _environment() -> dict:
    import monai

    return {
        "lgemri": __version__,
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
    }


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
# outputs


def _write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(_finite(data), indent=2, allow_nan=False) + "\n")


def _plot_curves(path: Path, history: list[dict], names: list[str], task: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax_loss, ax_dice = fig.subplots(1, 2)

    def series(key: str) -> list[float]:
        return [np.nan if h.get(key) is None else h[key] for h in history]

    ax_loss.plot(epochs, series("train_loss"), "o-", label="train")
    ax_loss.plot(epochs, series("val_loss"), "s-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title=f"{task}: loss")
    ax_loss.legend()
    for name in names[1:]:
        ax_dice.plot(epochs, series(f"dice_{name}"), ".-", label=name)
    ax_dice.plot(epochs, series("mean_dice"), "k-", linewidth=2, label="mean")
    ax_dice.set(xlabel="epoch", ylabel="validation Dice", ylim=(0, 1), title=f"{task}: validation Dice")
    ax_dice.legend(fontsize="small")
    for ax in (ax_loss, ax_dice):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


# --------------------------------------------------------------------------------------------
# the loop


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
    return run_in_process_group(config, _train)


def run_in_process_group(config: Any, body: Callable[..., dict]) -> dict:
    """Check ``config``'s run folder against ``config.resume``, then run
    ``body(config, out, rank, local_rank, world)``, inside a process group when launched by
    ``torchrun``. Shared by the segmentation and the GAN trainers.
    """
    config.validate()
    out = Path(config.out)
    last_path = out / "last.pt"
    if config.resume and not last_path.is_file():
        raise InputError(f"{out}: nothing to resume (no last.pt)")
    if not config.resume and last_path.exists():
        raise InputError(f"{out}: already holds a training run (last.pt); pass --resume or choose another --out")
    rank, local_rank, world, initialised = _distributed()
    try:
        return body(config, out, rank, local_rank, world)
    finally:
        if initialised:
            dist.destroy_process_group()


def _train(config: TrainConfig, out: Path, rank: int, local_rank: int, world: int) -> dict:
    device = _device(config.device, local_rank)
    use_amp = bool(config.amp and device.type == "cuda")
    main = rank == 0
    last_path, best_path = out / "last.pt", out / "best.pt"

    train_ds, val_ds = _datasets(config)
    names = _class_names(config.task)
    frequencies = class_frequencies(train_ds.target_arrays(), num_classes=train_ds.num_classes)
    weights = class_weights(frequencies, config.class_weighting, config.class_weight_clip)
    _seed_everything(config.seed, 0x5EED)
    if config.init is not None:
        model, spec = _init_network(config, train_ds.in_channels, train_ds.num_classes)
        model = model.to(device)
    else:
        spec = _network_spec(config, train_ds.in_channels, train_ds.num_classes)
        model = build_network(spec["name"], **spec["kwargs"]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config.lr_schedule, config.epochs))
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    start_epoch, history = 0, []
    best = {"score": None, "epoch": None, "metrics": None}
    init_metrics = None
    if config.resume:
        state = load_training_state(
            last_path,
            model,
            optimizer,
            scheduler,
            scaler if use_amp else None,
            task=config.task,
            network=spec,
            device=device,
        )
        start_epoch, history = state["epoch"], state["history"]
        best = dict(state["extra"].get("best") or best)
        init_metrics = state["extra"].get("init_metrics")
        weights = np.asarray(state["extra"].get("class_weights", weights), dtype=np.float64)
        frequencies = np.asarray(state["extra"].get("class_frequencies", frequencies), dtype=np.float64)
        saved_epochs = (state["extra"].get("config") or {}).get("epochs")
        if saved_epochs not in (None, config.epochs):
            logger.warning(
                "resuming with epochs=%d; the run was started with %s (the LR schedule follows the new length)",
                config.epochs,
                saved_epochs,
            )
        logger.info("resuming %s after epoch %d", out, start_epoch)
    loss_fn = SegmentationLoss(weights, config.dice_weight if config.loss == "ce+dice" else 0.0).to(device)
    if config.init is not None and not config.resume and main:
        init_metrics = _finite(_validate(model, val_ds, loss_fn, config, device, use_amp))
        logger.info(
            "%s: initial model %s scores mean Dice %s on validation",
            config.task,
            config.init,
            init_metrics["mean_dice"],
        )

    if world > 1:
        ddp_args = {"device_ids": [device.index]} if device.type == "cuda" else {}
        model = torch.nn.parallel.DistributedDataParallel(model, **ddp_args)

    data_description = {
        "sources": _plain_config(config)["data"],
        "train": train_ds.describe(),
        "val": val_ds.describe(),
    }
    run_extra = {
        "config": _plain_config(config),
        "task": config.task,
        "two_stage": bool(config.two_stage),
        "classes": names,
        "class_frequencies": frequencies.tolist(),
        "class_weights": weights.tolist(),
        "class_weighting": config.class_weighting,
        "input": {
            "size": LOC_SIZE if config.task == "localization" else ROI_SIZE,
            "channels": ["lge", "cavity"] if config.two_stage else ["lge"],
            "preprocess": "lgemri.nets.preprocess."
            + ("localization_input" if config.task == "localization" else "normalize"),
        },
        "data": data_description,
        "provenance": data_provenance(config.data),
        "init_metrics": init_metrics,
    }
    if main:
        out.mkdir(parents=True, exist_ok=True)
        _write_json(
            out / "config.json",
            {
                "config": _plain_config(config),
                "network": spec,
                "parameters": sum(p.numel() for p in unwrap(model).parameters()),
                "classes": names,
                "class_frequencies": frequencies.tolist(),
                "class_weights": weights.tolist(),
                "data": data_description,
                "device": str(device),
                "amp": use_amp,
                "world_size": world,
                "resumed_after_epoch": start_epoch if config.resume else None,
                "init_metrics": init_metrics,
                "written": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "environment": _environment(),
            },
        )

    sampler = EpochSampler(
        len(train_ds), weights=train_ds.sample_weights, seed=config.seed, rank=rank, world_size=world
    )
    loader = torch.utils.data.DataLoader(
        train_ds,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=config.num_workers,
        drop_last=False,
        pin_memory=device.type == "cuda",
    )
    end_epoch = config.epochs if config.stop_after is None else min(config.epochs, config.stop_after)
    metrics: dict = history[-1] if history else {}
    for epoch in range(start_epoch, end_epoch):
        started = time.perf_counter()
        _seed_everything(config.seed, epoch, rank)
        train_ds.set_epoch(epoch)
        sampler.set_epoch(epoch)
        model.train()
        steps = len(loader) if config.max_steps_per_epoch is None else min(len(loader), config.max_steps_per_epoch)
        bar = tqdm(
            total=steps,
            desc=f"{config.task} epoch {epoch + 1}/{config.epochs}",
            leave=False,
            disable=not (config.progress and main),
            dynamic_ncols=True,
        )
        loss_sum, seen = torch.zeros((), device=device, dtype=torch.float64), 0
        for step, (x, y) in enumerate(loader):
            if step >= steps:
                break
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, enabled=use_amp):
                logits = model(x)
            loss = loss_fn(logits, y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += loss.detach().double() * len(x)
            seen += len(x)
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        bar.close()
        if world > 1:
            totals = torch.stack([loss_sum, torch.tensor(float(seen), device=device, dtype=torch.float64)])
            dist.all_reduce(totals)
            loss_sum, seen = totals[0], int(totals[1].item())
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()

        if main:
            metrics = {
                "epoch": epoch + 1,
                "train_loss": float(loss_sum.item() / max(seen, 1)),
                "lr": lr,
                "steps": steps,
                **_validate(unwrap(model), val_ds, loss_fn, config, device, use_amp),
            }
            metrics["seconds"] = round(time.perf_counter() - started, 3)
            history.append(metrics)
            score = metrics["mean_dice"]
            improved = math.isfinite(score) and (best["score"] is None or score > best["score"])
            if improved or not best_path.exists():
                if improved:
                    best = {"score": score, "epoch": epoch + 1, "metrics": _finite(metrics)}
                save_checkpoint(
                    best_path,
                    model,
                    task=config.task,
                    network=spec,
                    extra={**run_extra, "epoch": epoch + 1, "metrics": _finite(metrics), "score": _finite(score)},
                )
            save_training_state(
                last_path,
                model,
                task=config.task,
                network=spec,
                epoch=epoch + 1,
                optimizer=optimizer,
                scheduler=scheduler,
                scaler=scaler if use_amp else None,
                history=_finite(history),
                extra={**run_extra, "best": best},
            )
            _write_json(
                out / "history.json",
                {"task": config.task, "classes": names, "best": best, "init": init_metrics, "epochs": history},
            )
            _plot_curves(out / "curves.png", history, names, config.task)
            extra_info = f", centre error {metrics['centre_error_mm']:.1f} mm" if config.task == "localization" else ""
            logger.info(
                "%s epoch %d/%d: train loss %.4f, val loss %.4f, mean Dice %.4f%s (%.1f s)",
                config.task,
                epoch + 1,
                config.epochs,
                metrics["train_loss"],
                metrics["val_loss"],
                score,
                extra_info,
                metrics["seconds"],
            )
        if world > 1:
            dist.barrier()

    completed = max(start_epoch, end_epoch)
    return {
        "run_dir": str(out),
        "task": config.task,
        "epochs_completed": completed,
        "stopped_early": completed < config.epochs,
        "best_epoch": best["epoch"],
        "best_score": best["score"],
        "best_metrics": best["metrics"],
        "last_metrics": _finite(metrics),
        "init_metrics": init_metrics,
        "best_checkpoint": str(best_path),
        "last_checkpoint": str(last_path),
    }
