"""The training engine: one loop for every network we train (nnU-Net's trainer shape).

:class:`Trainer` owns the run folder (:mod:`lgemri.training.run_folder`) and the runtime:
device, mixed precision, ``torchrun`` process group and the reduction of the epoch's losses,
the epoch-seeded batch order (:class:`~lgemri.training.data.EpochSampler`), the progress bar,
the step limit, resume, ``best.pt`` and ``last.pt``, ``history.json``, ``curves.png``,
``config.json`` and the LR schedule (:func:`lr_lambda`). A subclass supplies the task through
hooks: its data (:meth:`Trainer.prepare`), networks and optimizers (:meth:`Trainer.build`), a
train step, validation and its score, what goes into the checkpoints, and the curves to draw.
The segmentation trainer (:class:`lgemri.training.segmentation.SegmentationTrainer`) and the
GAN trainer (:class:`gan.train.GanTrainer`) are two such subclasses.

Reproducibility: the weights are initialised after seeding from ``(seed, 0x5EED)``; at the start
of every epoch the torch, numpy and python generators are reseeded from ``(seed, epoch, rank)``,
the batch order comes from ``(seed, epoch)`` and each slice's augmentation from
``(seed, epoch, index)``. A resumed run therefore ends with the same weights as an
uninterrupted one (on the same device and software; CUDA kernels may add their own
non-determinism).

Distributed: launched by ``torchrun`` (``WORLD_SIZE`` > 1) the engine joins the process group
(NCCL on CUDA, gloo on CPU) and gives each rank its share of every epoch; ``batch_size`` is per
rank. Only rank 0 validates and writes.
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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from .. import __version__
from ..atomic import atomic_path, write_text
from ..errors import InputError
from .config import BaseTrainConfig
from .data import EpochSampler
from .run_folder import RunFolder

__all__ = [
    "Trainer",
    "Curve",
    "Panel",
    "lr_lambda",
    "plot_curves",
    "seed_everything",
    "select_device",
    "finite",
    "write_json",
    "environment",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# runtime helpers


def distributed() -> tuple[int, int, int, bool]:
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


def select_device(name: str, local_rank: int = 0) -> torch.device:
    """The torch device of a ``device`` setting (``auto``, ``cpu``, ``cuda``) on this rank."""
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def seed_everything(*keys: int) -> None:
    """Seed python's, numpy's and torch's generators from ``keys``."""
    value = int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def lr_lambda(schedule: str, epochs: int):
    """The LR factor per epoch: ``cosine`` (to 0 at the last epoch), ``poly`` (``(1 - e/E)^0.9``,
    nnU-Net), ``linear`` (constant for the first half, then linearly to 0; Pix2Pix) or
    ``constant``."""
    if schedule == "cosine":
        return lambda e: 0.5 * (1.0 + math.cos(math.pi * min(e, epochs) / epochs))
    if schedule == "poly":
        return lambda e: max(0.0, 1.0 - min(e, epochs) / epochs) ** 0.9
    if schedule == "linear":
        keep = epochs // 2
        return lambda e: 1.0 if e < keep else max(0.0, 1.0 - (e - keep) / max(epochs - keep, 1))
    return lambda e: 1.0


def finite(value: Any) -> Any:
    """NaN and infinities as None (JSON has no NaN), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON atomically (NaN and infinities as null)."""
    write_text(path, json.dumps(finite(data), indent=2, allow_nan=False) + "\n")


def environment() -> dict:
    """The software a run used (``config.json``'s ``environment``)."""
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
# curves


@dataclasses.dataclass(frozen=True)
class Curve:
    """One line of a :class:`Panel`: the history key it plots and how."""

    key: str
    label: str
    style: str = ".-"
    color: str | None = None
    linewidth: float | None = None


@dataclasses.dataclass(frozen=True)
class Panel:
    """One plot of ``curves.png``; ``right`` curves go on a second y axis (``right_ylabel``)."""

    title: str
    ylabel: str
    curves: Sequence[Curve]
    ylim: tuple[float, float] | None = None
    yscale: str | None = None
    right: Sequence[Curve] = ()
    right_ylabel: str = ""


def plot_curves(path: Path, history: list[dict], panels: Sequence[Panel]) -> None:
    """Draw ``panels`` side by side, one point per epoch of ``history``, into a PNG file."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]

    def draw(ax, curve: Curve) -> None:
        values = [np.nan if h.get(curve.key) is None else h[curve.key] for h in history]
        style = {k: v for k, v in (("color", curve.color), ("linewidth", curve.linewidth)) if v is not None}
        ax.plot(epochs, values, curve.style, label=curve.label, **style)

    fig = Figure(figsize=(5 * len(panels), 4), dpi=100)
    FigureCanvasAgg(fig)
    for ax, panel in zip(np.atleast_1d(fig.subplots(1, len(panels))), panels):
        for curve in panel.curves:
            draw(ax, curve)
        handles = ax.get_legend_handles_labels()[0]
        if panel.right:
            twin = ax.twinx()
            for curve in panel.right:
                draw(twin, curve)
            twin.set_ylabel(panel.right_ylabel)
            handles = handles + twin.get_legend_handles_labels()[0]
            legend_ax = twin
        else:
            legend_ax = ax
        ax.set(xlabel="epoch", ylabel=panel.ylabel, title=panel.title)
        if panel.ylim is not None:
            ax.set_ylim(*panel.ylim)
        if panel.yscale is not None:
            ax.set_yscale(panel.yscale)
        if handles:
            legend_ax.legend(handles, [h.get_label() for h in handles], fontsize="small")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


# --------------------------------------------------------------------------------------------
# the engine


class Trainer:
    """One training run: the loop, with hooks for what differs between tasks.

    Run one with :meth:`fit`. The hooks, in the order the engine calls them:

    - :meth:`prepare` (the datasets; the train set has ``set_epoch``, ``sample_weights``,
      ``__len__``), then the generators are seeded and :meth:`build` makes the networks,
      optimizers and schedulers (the LR factor is :attr:`lr_lambda`);
    - with ``resume``, :meth:`load_state` reads ``last.pt``; then :meth:`start` (e.g. score an
      initial model, wrap the network for DDP);
    - :meth:`describe` goes into ``config.json``; ``{"config": ..., **checkpoint_extra()}``
      (:attr:`run_extra`) into both checkpoints, with the epoch, metrics and score (``best.pt``)
      or the best epoch (``last.pt``);
    - per epoch: :meth:`train_mode`, :meth:`train_step` per batch (its losses, named by
      :attr:`loss_keys`, are averaged over the epoch and all ranks), :meth:`step_schedule`; on
      rank 0 :meth:`validate`, :meth:`score` (``score_mode``: ``max`` or ``min``),
      :meth:`save_best` when the score improves, :meth:`save_last`, :meth:`history_record`,
      :meth:`curve_panels`, :meth:`after_epoch`, :meth:`epoch_message`; :meth:`out_of_time`
      ends the invocation early (resumable);
    - :meth:`summary_extra` adds to the returned summary.
    """

    score_mode = "max"

    def __init__(self, config: BaseTrainConfig, rank: int = 0, local_rank: int = 0, world: int = 1) -> None:
        self.config = config
        self.run = RunFolder(config.out)
        self.rank, self.local_rank, self.world = rank, local_rank, world
        self.main = rank == 0
        self.device = select_device(config.device, local_rank)
        self.use_amp = bool(config.amp and self.device.type == "cuda")
        self.lr_lambda = lr_lambda(config.lr_schedule, config.epochs)
        self.start_epoch = 0
        self.history: list[dict] = []
        self.best: dict[str, Any] = {"score": None, "epoch": None, "metrics": None}
        self.run_extra: dict = {}  # {"config": ..., **checkpoint_extra()}, set when the run starts

    # ---------------------------------------------------------------------------------------
    # hooks

    @property
    def label(self) -> str:
        """What the progress bar and the log call this run (the task or the model)."""
        raise NotImplementedError

    @property
    def loss_keys(self) -> Sequence[str]:
        """The history keys of the losses :meth:`train_step` returns (averaged per epoch)."""
        raise NotImplementedError

    def prepare(self) -> tuple[Any, Any]:
        """The training and validation datasets (before the weights are seeded)."""
        raise NotImplementedError

    def build(self) -> None:
        """Make the networks, optimizers and schedulers (after seeding)."""
        raise NotImplementedError

    def load_state(self, path: Path) -> dict:
        """Load ``last.pt`` into the built objects; returns ``{"epoch", "history", "extra"}``."""
        raise NotImplementedError

    def start(self) -> None:
        """Called once before the run's files are written, after any resume."""

    def describe(self) -> dict:
        """``config.json``'s entries after ``config`` (network, parameters, data, ...)."""
        return {}

    def checkpoint_extra(self) -> dict:
        """What ``best.pt`` and ``last.pt`` record after ``config`` (classes, data, input, ...)."""
        return {}

    def train_mode(self) -> None:
        """Put the networks in training mode (at the start of every epoch)."""
        raise NotImplementedError

    def train_step(self, batch: Any) -> tuple[Mapping[str, Any], int]:
        """One optimisation step; returns ``({history key: loss}, batch size)``."""
        raise NotImplementedError

    def step_schedule(self) -> float:
        """Step the LR schedulers at the end of an epoch; returns the epoch's learning rate."""
        raise NotImplementedError

    def validate(self) -> dict:
        """The validation metrics of the current weights (rank 0)."""
        raise NotImplementedError

    def score(self, metrics: Mapping[str, Any]) -> float:
        """The number that picks ``best.pt`` (``score_mode`` says which way is better)."""
        raise NotImplementedError

    def scorable(self, score: float) -> bool:
        """Whether ``score`` can make an epoch the best one."""
        return math.isfinite(score)

    def score_record(self, score: float) -> Any:
        """The ``score`` entry of ``best.pt``'s extra."""
        return finite(score)

    def save_best(self, path: Path, extra: dict) -> None:
        """Write the model checkpoint (what inference loads) with ``extra``."""
        raise NotImplementedError

    def save_last(self, path: Path, epoch: int, history: list[dict], extra: dict) -> None:
        """Write the training state (what :meth:`load_state` reads back) after ``epoch``."""
        raise NotImplementedError

    def history_record(self) -> dict:
        """``history.json``'s content (use :attr:`best` and :attr:`history`)."""
        raise NotImplementedError

    def curve_panels(self) -> Sequence[Panel]:
        """The plots of ``curves.png`` (:func:`plot_curves`)."""
        raise NotImplementedError

    def after_epoch(self, epoch: int, metrics: dict, last: bool) -> None:
        """Rank 0, after the epoch's files are written (``last``: the invocation's last epoch)."""

    def epoch_message(self, metrics: dict) -> str:
        """The epoch's figures for the log line."""
        raise NotImplementedError

    def out_of_time(self, elapsed_s: float) -> bool:
        """Whether this invocation should end after the current epoch (rank 0 decides)."""
        return False

    def summary_extra(self) -> dict:
        """Entries the task adds to the summary :meth:`train` returns."""
        return {}

    # ---------------------------------------------------------------------------------------
    # the run

    @classmethod
    def fit(cls, config: BaseTrainConfig) -> dict:
        """Validate ``config``, check its run folder against ``config.resume`` and train, inside
        a process group when launched by ``torchrun``; returns the summary (:meth:`train`)."""
        config.validate()
        RunFolder(config.out).check(config.resume)
        rank, local_rank, world, initialised = distributed()
        try:
            return cls(config, rank, local_rank, world).train()
        finally:
            if initialised:
                dist.destroy_process_group()

    def _resume(self) -> None:
        state = self.load_state(self.run.last)
        self.start_epoch, self.history = state["epoch"], state["history"]
        self.best = dict(state["extra"].get("best") or self.best)
        saved_epochs = (state["extra"].get("config") or {}).get("epochs")
        if saved_epochs not in (None, self.config.epochs):
            logger.warning(
                "resuming with epochs=%d; the run was started with %s (the LR schedule follows the new length)",
                self.config.epochs,
                saved_epochs,
            )
        logger.info("resuming %s after epoch %d", self.run.root, self.start_epoch)

    def _write_config(self) -> None:
        self.run.root.mkdir(parents=True, exist_ok=True)
        write_json(
            self.run.config,
            {
                "config": self.config.plain(),
                **self.describe(),
                "device": str(self.device),
                "amp": self.use_amp,
                "world_size": self.world,
                "resumed_after_epoch": self.start_epoch if self.config.resume else None,
                "written": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "environment": environment(),
            },
        )

    def train(self) -> dict:
        """Run the epochs from the start (or from ``last.pt``) to ``epochs`` or ``stop_after``.

        Returns:
            ``{"run_dir", "epochs_completed", "stopped_early", "best_epoch", "best_score",
            "best_metrics", "last_metrics", "best_checkpoint", "last_checkpoint"}`` and
            :meth:`summary_extra` (under ``torchrun`` only rank 0 tracks the best epoch and
            metrics).
        """
        config, device = self.config, self.device
        self.train_ds, self.val_ds = self.prepare()
        seed_everything(config.seed, 0x5EED)
        self.build()
        if config.resume:
            self._resume()
        self.start()
        self.run_extra = {"config": config.plain(), **self.checkpoint_extra()}
        if self.main:
            self._write_config()

        sampler = EpochSampler(
            len(self.train_ds),
            weights=self.train_ds.sample_weights,
            seed=config.seed,
            rank=self.rank,
            world_size=self.world,
        )
        loader = torch.utils.data.DataLoader(
            self.train_ds,
            batch_size=config.batch_size,
            sampler=sampler,
            num_workers=config.num_workers,
            drop_last=False,
            pin_memory=device.type == "cuda",
        )
        end_epoch = config.epochs if config.stop_after is None else min(config.epochs, config.stop_after)
        started_run = time.perf_counter()
        metrics: dict = self.history[-1] if self.history else {}
        completed = self.start_epoch
        for epoch in range(self.start_epoch, end_epoch):
            started = time.perf_counter()
            seed_everything(config.seed, epoch, self.rank)
            self.train_ds.set_epoch(epoch)
            sampler.set_epoch(epoch)
            self.train_mode()
            steps = len(loader) if config.max_steps_per_epoch is None else min(len(loader), config.max_steps_per_epoch)
            bar = tqdm(
                total=steps,
                desc=f"{self.label} epoch {epoch + 1}/{config.epochs}",
                leave=False,
                disable=not (config.progress and self.main),
                dynamic_ncols=True,
            )
            keys = tuple(self.loss_keys)
            sums = torch.zeros(len(keys), device=device, dtype=torch.float64)
            seen = 0
            for step, batch in enumerate(loader):
                if step >= steps:
                    break
                losses, n = self.train_step(batch)
                values = torch.stack([torch.as_tensor(losses[k], device=device).detach().double() for k in keys])
                sums += values * n
                seen += n
                bar.update(1)
                bar.set_postfix({k: f"{float(v):.4f}" for k, v in list(zip(keys, values))[:3]})
            bar.close()
            if self.world > 1:
                totals = torch.cat([sums, torch.tensor([float(seen)], device=device, dtype=torch.float64)])
                dist.all_reduce(totals)
                sums, seen = totals[:-1], int(totals[-1].item())
            lr = self.step_schedule()
            completed = epoch + 1
            out_of_time = self.out_of_time(time.perf_counter() - started_run)
            if self.main:
                losses = {k: float(sums[i].item() / max(seen, 1)) for i, k in enumerate(keys)}
                metrics = self._end_epoch(epoch, losses, lr, steps, started, end_epoch, out_of_time)
            if self.world > 1:
                flag = torch.tensor([1.0 if out_of_time else 0.0], device=device)
                dist.broadcast(flag, src=0)
                out_of_time = bool(flag.item())
                dist.barrier()
            if out_of_time:
                logger.info("time budget spent after epoch %d; continue with --resume", epoch + 1)
                break
        return {
            "run_dir": str(self.run.root),
            "epochs_completed": completed,
            "stopped_early": completed < config.epochs,
            "best_epoch": self.best["epoch"],
            "best_score": self.best["score"],
            "best_metrics": self.best["metrics"],
            "last_metrics": finite(metrics),
            "best_checkpoint": str(self.run.best),
            "last_checkpoint": str(self.run.last),
            **self.summary_extra(),
        }

    def _end_epoch(self, epoch, losses, lr, steps, started, end_epoch, out_of_time) -> dict:
        """Rank 0: validate, pick the best epoch, write the run's files; returns the metrics."""
        metrics = {"epoch": epoch + 1, **losses, "lr": lr, "steps": steps, **self.validate()}
        metrics["seconds"] = round(time.perf_counter() - started, 3)
        self.history.append(metrics)
        score = self.score(metrics)
        better = (lambda a, b: a > b) if self.score_mode == "max" else (lambda a, b: a < b)
        improved = self.scorable(score) and (self.best["score"] is None or better(score, self.best["score"]))
        if improved or not self.run.best.exists():
            if improved:
                self.best = {"score": score, "epoch": epoch + 1, "metrics": finite(metrics)}
            extra = {
                **self.run_extra,
                "epoch": epoch + 1,
                "metrics": finite(metrics),
                "score": self.score_record(score),
            }
            self.save_best(self.run.best, extra)
        self.save_last(self.run.last, epoch + 1, finite(self.history), {**self.run_extra, "best": self.best})
        write_json(self.run.history, self.history_record())
        plot_curves(self.run.curves, self.history, self.curve_panels())
        self.after_epoch(epoch, metrics, last=epoch + 1 == end_epoch or out_of_time)
        logger.info(
            "%s epoch %d/%d: %s (%.1f s)",
            self.label,
            epoch + 1,
            self.config.epochs,
            self.epoch_message(metrics),
            metrics["seconds"],
        )
        return metrics
