"""Training of the GAN models: :func:`train_gan` (``cardiac-mi gan train``).

A run folder holds, every file written atomically:

- ``config.json``: the configuration, the model's resolved options (class weights included),
  parameter counts, data, device and software versions;
- ``best.pt``: the model checkpoint (generators only) of the epoch with the best validation
  score (Pix2Pix: mean PSNR of generated against real validation images; CycleGAN: the
  mask-weighted cycle L1); what synthesis loads;
- ``last.pt``: the training state after the latest epoch (all networks, optimizers,
  schedulers, gradient scaler, generator states, history), for ``resume``;
- ``history.json`` and ``curves.png``: losses and validation metrics per epoch;
- ``samples/epoch_NNNN.png``: a grid of the model's visuals (mask, real, generated, ...) on
  fixed validation slices every ``sample_every`` epochs and after the last one.

It shares the segmentation trainer's machinery (:mod:`lgemri.training.loop`): reseeding from
``(seed, epoch, rank)`` at every epoch (a resumed run ends with the weights of an uninterrupted
one), :class:`~lgemri.training.data.EpochSampler` for the batch order and the rank shares,
``torchrun`` detection and device choice. Mixed precision (autocast + gradient scaling) is used
on CUDA only. Under ``torchrun`` (``WORLD_SIZE`` > 1) every rank holds the full model, rank 0's
initial weights are broadcast and each rank's gradients are averaged over all ranks before every
optimizer step: data-parallel training with the semantics of ``DistributedDataParallel``, done
by hand because a GAN step runs a frozen discriminator inside the generator's update and calls
a generator several times before one backward pass, which ``DistributedDataParallel``'s
gradient hooks do not allow. ``batch_size`` is per rank; only rank 0 validates and writes.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from lgemri.atomic import atomic_path
from lgemri.errors import InputError
from lgemri.labels import NUM_CLASSES
from lgemri.losses import WEIGHT_SCHEMES, class_frequencies, class_weights
from lgemri.training.data import EpochSampler, Source
from lgemri.training.loop import (
    DEVICES,
    _device,
    _environment,
    _finite,
    _seed_everything,
    _write_json,
    run_in_process_group,
)
from lgemri.training.loop import _lr_lambda as _segmentation_lr_lambda

from .base_model import BaseModel, available_models, create_model, find_model, read_gan_file
from .data import PairedRoiDataset, UnpairedDataset

__all__ = ["GanTrainConfig", "train_gan", "LR_SCHEDULES"]

logger = logging.getLogger(__name__)

LR_SCHEDULES = ("linear", "cosine", "constant")


@dataclasses.dataclass
class GanTrainConfig:
    """Everything a GAN training run depends on (written to ``config.json``).

    Attributes:
        model: A model name (:func:`gan.base_model.available_models`: ``pix2pix``, ``cyclegan``).
        data: Sources of mask + LGE ROI pairs (prepared folders, datalists; Pix2Pix's pairs,
            CycleGAN's domain B); the ``train`` split trains, ``val`` validates.
        out: The run folder.
        data_a: CycleGAN's domain A: cine-like images with masks (e.g. a prepared
            :func:`lgemri.phantom.cine.write_cine_phantom` folder).
        options: Model options (the model's ``Options`` fields: ``depth``, ``ngf``, ``lr``,
            ``gan_mode``, ``lambda_l1``, ...); the rest take the model's defaults.
        epochs: Number of epochs (the LR schedule spans them).
        batch_size: Slices per batch (per rank).
        lr_schedule: ``linear`` (Pix2Pix: constant for the first half, then linearly to 0),
            ``cosine`` or ``constant``; stepped once per epoch.
        seed: Seed of the weights, batch order, augmentation, dropout and pools.
        resume: Continue the run in ``out`` from its ``last.pt``.
        class_weighting: Scheme of :func:`lgemri.losses.class_weights` for the class-weighted
            L1 (the segmentation trainer's default, ``inverse_sqrt``); ignored when
            ``options["class_weights"]`` is given.
        class_weight_clip: Largest ratio between two class weights.
        augment: Random rotation, zoom and shift of mask and image together.
        max_steps_per_epoch: Stop each epoch after this many batches.
        train_limit: Use only this many training slices (spread over the split).
        val_limit: Validate on at most this many validation slices.
        sample_every: Write a sample grid every this many epochs (and after the last).
        num_samples: Slices in a sample grid.
        device: ``auto``, ``cpu`` or ``cuda``.
        num_workers: DataLoader worker processes.
        amp: Mixed precision on CUDA.
        stop_after: End this invocation after this many epochs (of ``epochs``), resumable.
        max_minutes: End this invocation after the first epoch that ends past this many
            minutes, resumable (equal time budgets, CPU demonstrations).
        progress: Show a progress bar per epoch.
    """

    model: str
    data: list[Source]
    out: str
    data_a: list[Source] | None = None
    options: dict = dataclasses.field(default_factory=dict)
    epochs: int = 100
    batch_size: int = 8
    lr_schedule: str = "linear"
    seed: int = 0
    resume: bool = False
    class_weighting: str = "inverse_sqrt"
    class_weight_clip: float = 50.0
    augment: bool = False
    max_steps_per_epoch: int | None = None
    train_limit: int | None = None
    val_limit: int | None = 64
    sample_every: int = 5
    num_samples: int = 4
    device: str = "auto"
    num_workers: int = 0
    amp: bool = True
    stop_after: int | None = None
    max_minutes: float | None = None
    progress: bool = True

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first bad setting."""
        if self.model not in available_models():
            raise InputError(f"unknown GAN model {self.model!r}; choose from {', '.join(available_models())}")
        if isinstance(self.data, (str, os.PathLike)):
            self.data = [self.data]
        if isinstance(self.data_a, (str, os.PathLike)):
            self.data_a = [self.data_a]
        if not self.data:
            raise InputError("no training data given (--data)")
        kind = find_model(self.model).data_kind
        if kind == "unpaired" and not self.data_a:
            raise InputError(f"--model {self.model} needs domain A data (--data-a: cine images with masks)")
        if kind == "paired" and self.data_a:
            raise InputError(f"--model {self.model} trains on mask/image pairs; --data-a is for unpaired models")
        for value, choices, what in (
            (self.lr_schedule, LR_SCHEDULES, "LR schedule"),
            (self.class_weighting, WEIGHT_SCHEMES, "class weighting"),
            (self.device, DEVICES, "device"),
        ):
            if value not in choices:
                raise InputError(f"unknown {what} {value!r}; choose from {', '.join(choices)}")
        checks = [
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be at least 1, got {self.batch_size}"),
            (
                self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1,
                f"max steps per epoch must be at least 1, got {self.max_steps_per_epoch}",
            ),
            (
                self.train_limit is None or self.train_limit >= 1,
                f"train limit must be at least 1, got {self.train_limit}",
            ),
            (self.val_limit is None or self.val_limit >= 1, f"val limit must be at least 1, got {self.val_limit}"),
            (
                self.sample_every >= 1 and self.num_samples >= 1,
                f"sample_every and num_samples must be at least 1, got {self.sample_every}, {self.num_samples}",
            ),
            (self.num_workers >= 0, f"workers must be non-negative, got {self.num_workers}"),
            (self.stop_after is None or self.stop_after >= 1, f"stop_after must be at least 1, got {self.stop_after}"),
            (self.max_minutes is None or self.max_minutes > 0, f"max_minutes must be positive, got {self.max_minutes}"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)
        find_model(self.model).make_options(self.options)  # unknown or bad options fail here


def _lr_lambda(schedule: str, epochs: int):
    if schedule == "linear":
        keep = epochs // 2
        return lambda e: 1.0 if e < keep else max(0.0, 1.0 - (e - keep) / max(epochs - keep, 1))
    return _segmentation_lr_lambda(schedule, epochs)


def _plain(config: GanTrainConfig) -> dict:
    def sources(values):
        if values is None:
            return None
        return [[os.fspath(s[0]), float(s[1])] if isinstance(s, (tuple, list)) else os.fspath(s) for s in values]

    out = dataclasses.asdict(config)
    out.update({"data": sources(config.data), "data_a": sources(config.data_a), "out": os.fspath(config.out)})
    return out


def _datasets(config: GanTrainConfig, kind: str):
    if kind == "paired":
        train = PairedRoiDataset(config.data, "train", config.augment, seed=config.seed, limit=config.train_limit)
        try:
            val = PairedRoiDataset(config.data, "val", False, seed=config.seed, limit=config.val_limit)
        except InputError as exc:
            if "no slice in the 'val' split" not in str(exc):
                raise
            logger.warning("no validation split: validating on %s training slices", config.val_limit or len(train))
            val = PairedRoiDataset(config.data, "train", False, seed=config.seed, limit=config.val_limit)
        return train, val
    a, b, seed = config.data_a, config.data, config.seed
    train = UnpairedDataset(a, b, "train", config.augment, seed=seed, limit=config.train_limit)
    try:
        val = UnpairedDataset(a, b, "val", False, seed=seed, limit=config.val_limit, pair_by_name=True)
    except InputError as exc:
        if "no slice in the 'val' split" not in str(exc):
            raise
        logger.warning("no validation split in both domains: validating on training slices")
        val = UnpairedDataset(a, b, "train", False, seed=seed, limit=config.val_limit, pair_by_name=True)
    return train, val


@torch.no_grad()
def _validate(model: BaseModel, dataset, config: GanTrainConfig) -> dict[str, float]:
    model.eval()
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=2 * config.batch_size, shuffle=False, num_workers=config.num_workers
    )
    values: dict[str, list[np.ndarray]] = {}
    for batch in loader:
        model.set_input(batch)
        model.test()
        for name, v in model.validation_metrics().items():
            values.setdefault(name, []).append(v.detach().double().cpu().numpy())
    out = {}
    for name, parts in values.items():
        v = np.concatenate(parts)
        v = v[~np.isnan(v)]
        finite = v[np.isfinite(v)]
        out[name] = float(finite.mean()) if len(finite) else (float("inf") if len(v) else float("nan"))
    model.train()
    return out


# --------------------------------------------------------------------------------------------
# figures

_MASK_COLOURS = np.array([[0, 0, 0], [0.25, 0.45, 0.95], [0.55, 0.55, 0.55], [0.95, 0.85, 0.1], [0.9, 0.15, 0.15]])


def _save_figure(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def plot_samples(path: Path, visuals: dict[str, torch.Tensor], title: str) -> None:
    """A grid: one row per slice, one column per visual (masks in colour, images in grey, [-1, 1])."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(visuals)
    rows = len(next(iter(visuals.values())))
    fig = Figure(figsize=(1.8 * len(names), 1.8 * rows + 0.4), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, len(names), squeeze=False)
    for j, name in enumerate(names):
        data = visuals[name]
        for i in range(rows):
            ax = axes[i][j]
            item = data[i]
            if name.startswith("mask"):
                label = item.long().numpy().reshape(item.shape[-2:])
                ax.imshow(_MASK_COLOURS[np.clip(label, 0, len(_MASK_COLOURS) - 1)], interpolation="nearest")
            else:
                ax.imshow(item.numpy().reshape(item.shape[-2:]), cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save_figure(fig, path)


def plot_curves(path: Path, history: list[dict], loss_names: tuple[str, ...], model: str) -> None:
    """Generator losses, discriminator losses and validation metrics per epoch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]

    def series(key: str) -> list[float]:
        return [np.nan if h.get(key) is None else h[key] for h in history]

    fig = Figure(figsize=(14, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax_g, ax_d, ax_v = fig.subplots(1, 3)
    for name in loss_names:
        ax = ax_d if name.startswith("D") else ax_g
        ax.plot(epochs, series(f"loss_{name}"), ".-", label=name)
    val_keys = sorted({k for h in history for k in h if k.startswith("val_")})
    ax_u = ax_v.twinx()  # dB figures on the left axis, unitless ones (SSIM, L1) on the right
    for i, key in enumerate(val_keys):
        db = "psnr" in key
        (ax_v if db else ax_u).plot(epochs, series(key), "o-" if db else "s--", label=key, color=f"C{i % 10}")
    ax_u.set_ylabel("SSIM, L1")
    handles = ax_v.get_legend_handles_labels()[0] + ax_u.get_legend_handles_labels()[0]
    if handles:
        ax_u.legend(handles, [h.get_label() for h in handles], fontsize="small")
    ax_g.set(xlabel="epoch", ylabel="loss (log scale)", title=f"{model}: generator losses", yscale="log")
    ax_d.set(xlabel="epoch", ylabel="loss", title=f"{model}: discriminator losses")
    ax_v.set(xlabel="epoch", ylabel="dB", title=f"{model}: validation")
    for ax in (ax_g, ax_d):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    ax_v.grid(alpha=0.3)
    ax_v.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    _save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# the loop


def train_gan(config: GanTrainConfig) -> dict:
    """Train one GAN model as configured; returns a summary of the run.

    Returns:
        ``{"run_dir", "model", "epochs_completed", "stopped_early", "best_epoch", "best_score",
        "score_name", "best_metrics", "last_metrics", "best_checkpoint", "last_checkpoint",
        "samples"}`` (under ``torchrun`` the best fields are None on ranks other than 0).

    Raises:
        InputError: Bad configuration, options or data, ``out`` already holding a run without
            ``resume``, ``resume`` without ``last.pt``, or a ``last.pt`` of another model.
    """
    return run_in_process_group(config, _train)


def _options(config: GanTrainConfig, train_ds) -> tuple[dict, dict]:
    """The model options (class weights filled in) and a description of the class weighting."""
    options = dict(config.options)
    last_path = Path(config.out) / "last.pt"
    if config.resume:
        saved = read_gan_file(last_path, model=config.model, kind="training_state")
        options = {**(saved.get("options") or {}), **options}
        info = (saved.get("extra") or {}).get("class_weighting") or {}
        return options, info
    if options.get("class_weights") is not None:
        return options, {"scheme": "given", "weights": list(options["class_weights"])}
    frequencies = class_frequencies(train_ds.target_arrays(), num_classes=NUM_CLASSES)
    weights = class_weights(frequencies, config.class_weighting, config.class_weight_clip)
    options["class_weights"] = tuple(float(w) for w in weights)
    info = {
        "scheme": config.class_weighting,
        "clip": config.class_weight_clip,
        "frequencies": frequencies.tolist(),
        "weights": weights.tolist(),
    }
    return options, info


def _train(config: GanTrainConfig, out: Path, rank: int, local_rank: int, world: int) -> dict:
    device = _device(config.device, local_rank)
    main = rank == 0
    cls = find_model(config.model)
    last_path, best_path = out / "last.pt", out / "best.pt"
    train_ds, val_ds = _datasets(config, cls.data_kind)
    options, weighting = _options(config, train_ds)

    _seed_everything(config.seed, 0x5EED)
    model = create_model(config.model, options, device=device, is_train=True, amp=config.amp, world_size=world)
    model.broadcast_parameters()
    model.setup_schedulers(_lr_lambda(config.lr_schedule, config.epochs))
    score_name, score_mode = cls.score
    start_epoch, history = 0, []
    best: dict[str, Any] = {"score": None, "epoch": None, "metrics": None}
    if config.resume:
        meta = model.load(last_path)
        start_epoch, history = meta["epoch"], meta["history"]
        best = dict(meta["extra"].get("best") or best)
        logger.info("resuming %s after epoch %d", out, start_epoch)

    data_description = {"train": train_ds.describe(), "val": val_ds.describe()}
    run_extra = {
        "config": _plain(config),
        "model": config.model,
        "class_weighting": weighting,
        "data": data_description,
        "input": {"size": 128, "image_range": [-1, 1], "preprocess": "gan.data.to_gan_range"},
    }
    if main:
        out.mkdir(parents=True, exist_ok=True)
        _write_json(
            out / "config.json",
            {
                "config": _plain(config),
                "model": config.model,
                "options": dataclasses.asdict(model.opt),
                "parameters": model.parameter_counts(),
                "loss_names": list(cls.loss_names),
                "visual_names": list(cls.visual_names),
                "score": {"name": score_name, "mode": score_mode},
                "class_weighting": weighting,
                "data": data_description,
                "device": str(device),
                "amp": model.use_amp,
                "world_size": world,
                "resumed_after_epoch": start_epoch if config.resume else None,
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
    sample_indices = np.linspace(0, len(val_ds) - 1, min(config.num_samples, len(val_ds))).round().astype(int)
    sample_batch = torch.utils.data.default_collate([val_ds[int(i)] for i in sample_indices])
    end_epoch = config.epochs if config.stop_after is None else min(config.epochs, config.stop_after)
    started_run = time.perf_counter()
    metrics: dict = history[-1] if history else {}
    samples: list[str] = []
    completed = start_epoch
    for epoch in range(start_epoch, end_epoch):
        started = time.perf_counter()
        _seed_everything(config.seed, epoch, rank)
        train_ds.set_epoch(epoch)
        sampler.set_epoch(epoch)
        model.train()
        steps = len(loader) if config.max_steps_per_epoch is None else min(len(loader), config.max_steps_per_epoch)
        bar = tqdm(
            total=steps,
            desc=f"{config.model} epoch {epoch + 1}/{config.epochs}",
            leave=False,
            disable=not (config.progress and main),
            dynamic_ncols=True,
        )
        sums = torch.zeros(len(cls.loss_names), device=device, dtype=torch.float64)
        seen = 0
        for step, batch in enumerate(loader):
            if step >= steps:
                break
            model.set_input(batch)
            model.optimize_parameters()
            n = len(batch["index"])
            losses = [torch.as_tensor(getattr(model, f"loss_{name}")).detach().double() for name in cls.loss_names]
            sums += torch.stack(losses) * n
            seen += n
            bar.update(1)
            shown = cls.loss_names[:3]
            bar.set_postfix({name: f"{float(losses[cls.loss_names.index(name)]):.3f}" for name in shown})
        bar.close()
        if world > 1:
            totals = torch.cat([sums, torch.tensor([float(seen)], device=device, dtype=torch.float64)])
            dist.all_reduce(totals)
            sums, seen = totals[:-1], int(totals[-1].item())
        lr = model.update_learning_rate()
        completed = epoch + 1
        out_of_time = (
            config.max_minutes is not None and (time.perf_counter() - started_run) / 60.0 >= config.max_minutes
        )
        if main:
            metrics = {"epoch": epoch + 1, "lr": lr, "steps": steps}
            metrics.update(
                {f"loss_{name}": float(sums[i].item() / max(seen, 1)) for i, name in enumerate(cls.loss_names)}
            )
            metrics.update(_validate(model, val_ds, config))
            metrics["seconds"] = round(time.perf_counter() - started, 3)
            history.append(metrics)
            score = metrics.get(score_name, float("nan"))
            score = score if isinstance(score, float) else float("nan")
            better = (lambda a, b: a > b) if score_mode == "max" else (lambda a, b: a < b)
            improved = not math.isnan(score) and (best["score"] is None or better(score, best["score"]))
            if improved or not best_path.exists():
                if improved:
                    best = {"score": score, "epoch": epoch + 1, "metrics": _finite(metrics)}
                model.save(
                    best_path,
                    extra={
                        **run_extra,
                        "epoch": epoch + 1,
                        "metrics": _finite(metrics),
                        "score": {"name": score_name, "value": _finite(score)},
                    },
                )
            model.save_training_state(
                last_path, epoch=epoch + 1, history=_finite(history), extra={**run_extra, "best": best}
            )
            _write_json(
                out / "history.json", {"model": config.model, "score": score_name, "best": best, "epochs": history}
            )
            plot_curves(out / "curves.png", history, cls.loss_names, config.model)
            last_epoch = epoch + 1 == end_epoch or out_of_time
            if (epoch + 1) % config.sample_every == 0 or last_epoch:
                model.eval()
                model.set_input(sample_batch)
                model.test()
                path = out / "samples" / f"epoch_{epoch + 1:04d}.png"
                title = f"{config.model}, epoch {epoch + 1}: {score_name} {score:.4g}"
                plot_samples(path, model.get_current_visuals(), title)
                samples.append(str(path))
                model.train()
            losses_text = ", ".join(f"{n} {metrics[f'loss_{n}']:.4f}" for n in cls.loss_names)
            logger.info(
                "%s epoch %d/%d: %s; %s %.4f (%.1f s)",
                config.model,
                epoch + 1,
                config.epochs,
                losses_text,
                score_name,
                score,
                metrics["seconds"],
            )
        if world > 1:
            flag = torch.tensor([1.0 if out_of_time else 0.0], device=device)
            dist.broadcast(flag, src=0)
            out_of_time = bool(flag.item())
            dist.barrier()
        if out_of_time:
            logger.info(
                "time budget of %.1f min spent after epoch %d; continue with --resume", config.max_minutes, epoch + 1
            )
            break
    return {
        "run_dir": str(out),
        "model": config.model,
        "epochs_completed": completed,
        "stopped_early": completed < config.epochs,
        "score_name": score_name,
        "best_epoch": best["epoch"],
        "best_score": best["score"],
        "best_metrics": best["metrics"],
        "last_metrics": _finite(metrics),
        "best_checkpoint": str(best_path),
        "last_checkpoint": str(last_path),
        "samples": samples,
    }
