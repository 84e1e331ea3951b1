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

:class:`GanTrainer` is the GAN's set of hooks on the training engine
(:class:`lgemri.training.engine.Trainer`), which the segmentation trainer shares: reseeding from
``(seed, epoch, rank)`` at every epoch (a resumed run ends with the weights of an uninterrupted
one), :class:`~lgemri.training.data.EpochSampler` for the batch order and the rank shares,
``torchrun`` detection and device choice, the run folder and its files. Mixed precision
(autocast + gradient scaling) is used on CUDA only. Under ``torchrun`` (``WORLD_SIZE`` > 1) every rank holds the full model, rank 0's
initial weights are broadcast and each rank's gradients are averaged over all ranks before every
optimizer step: data-parallel training with the semantics of ``DistributedDataParallel``, done
by hand because a GAN step runs a frozen discriminator inside the generator's update and calls
a generator several times before one backward pass, which ``DistributedDataParallel``'s
gradient hooks do not allow. ``batch_size`` is per rank; only rank 0 validates and writes.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator

from lgemri.atomic import atomic_path
from lgemri.config import Count, Positive
from lgemri.errors import InputError
from lgemri.labels import NUM_CLASSES
from lgemri.losses import class_frequencies, class_weights
from lgemri.training.config import BaseTrainConfig, Sources, plain_sources
from lgemri.training.engine import Curve, Panel, Trainer, finite

from .base_model import BaseModel, create_model, find_model, read_gan_file
from .data import PairedRoiDataset, UnpairedDataset

__all__ = ["GanTrainConfig", "GanTrainer", "train_gan", "LR_SCHEDULES"]

logger = logging.getLogger(__name__)

LR_SCHEDULES = ("linear", "cosine", "constant")


@dataclasses.dataclass(kw_only=True)
class GanTrainConfig(BaseTrainConfig):
    """Everything a GAN training run depends on (written to ``config.json``).

    Attributes (besides :class:`~lgemri.training.config.BaseTrainConfig`'s, whose defaults
    differ here: 100 epochs, 8 slices per batch, the ``linear`` schedule, no augmentation):
        model: A model name (:func:`gan.base_model.available_models`: ``pix2pix``, ``cyclegan``).
        data: Sources of mask + LGE ROI pairs (prepared folders, datalists; Pix2Pix's pairs,
            CycleGAN's domain B); the ``train`` split trains, ``val`` validates.
        data_a: CycleGAN's domain A: cine-like images with masks (e.g. a prepared
            :func:`lgemri.phantom.cine.write_cine_phantom` folder).
        options: Model options (the model's ``Options`` fields: ``depth``, ``ngf``, ``lr``,
            ``gan_mode``, ``lambda_l1``, ...); the rest take the model's defaults.
        lr_schedule: ``linear`` (Pix2Pix: constant for the first half, then linearly to 0),
            ``cosine`` or ``constant``.
        class_weighting: Scheme of :func:`lgemri.losses.class_weights` for the class-weighted
            L1 (the segmentation trainer's default, ``inverse_sqrt``); ignored when
            ``options["class_weights"]`` is given.
        augment: Random rotation, zoom and shift of mask and image together.
        train_limit: Use only this many training slices (spread over the split).
        val_limit: Validate on at most this many validation slices.
        sample_every: Write a sample grid every this many epochs (and after the last).
        num_samples: Slices in a sample grid.
        max_minutes: End this invocation after the first epoch that ends past this many
            minutes, resumable (equal time budgets, CPU demonstrations).
    """

    lr_schedules: ClassVar[tuple[str, ...]] = LR_SCHEDULES

    model: str
    data_a: Sources | None = None
    options: dict = dataclasses.field(default_factory=dict)
    epochs: Count = 100
    batch_size: Count = 8
    lr_schedule: Annotated[Literal[LR_SCHEDULES], Field(title="LR schedule")] = "linear"
    augment: bool = False
    train_limit: Count | None = None
    val_limit: Count | None = 64
    sample_every: Count = 5
    num_samples: Count = 4
    max_minutes: Positive | None = None

    @field_validator("model")
    @classmethod
    def _known(cls, model: str) -> str:
        find_model(model)  # InputError naming the models there are
        return model

    @model_validator(mode="after")
    def _data_and_options(self) -> GanTrainConfig:
        kind = find_model(self.model).data_kind
        if kind == "unpaired" and not self.data_a:
            raise InputError(f"--model {self.model} needs domain A data (--data-a: cine images with masks)")
        if kind == "paired" and self.data_a:
            raise InputError(f"--model {self.model} trains on mask/image pairs; --data-a is for unpaired models")
        find_model(self.model).make_options(self.options)  # unknown or bad options fail here
        return self

    def plain(self) -> dict:
        out = super().plain()
        out["data_a"] = plain_sources(self.data_a)
        return out


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
    return GanTrainer.fit(config)


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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


# --------------------------------------------------------------------------------------------
# the trainer


def _options(config: GanTrainConfig, train_ds, last_path: Path) -> tuple[dict, dict]:
    """The model options (class weights filled in) and a description of the class weighting."""
    options = dict(config.options)
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


class GanTrainer(Trainer):
    """The engine's hooks for a GAN model (:class:`gan.base_model.BaseModel`): its
    ``optimize_parameters`` is the train step, its ``score`` picks ``best.pt``, and every
    ``sample_every`` epochs a grid of its visuals goes to ``samples/``."""

    config: GanTrainConfig

    @property
    def label(self) -> str:
        return self.config.model

    @property
    def loss_keys(self) -> tuple[str, ...]:
        return tuple(f"loss_{name}" for name in self.cls.loss_names)

    def prepare(self):
        config = self.config
        self.cls = find_model(config.model)
        self.score_name, self.score_mode = self.cls.score
        train_ds, val_ds = _datasets(config, self.cls.data_kind)
        self.options, self.weighting = _options(config, train_ds, self.run.last)
        self.samples: list[str] = []
        return train_ds, val_ds

    def build(self) -> None:
        config = self.config
        self.model = create_model(
            config.model, self.options, device=self.device, is_train=True, amp=config.amp, world_size=self.world
        )
        self.model.broadcast_parameters()
        self.model.setup_schedulers(self.lr_lambda)
        self.use_amp = self.model.use_amp

    def load_state(self, path: Path) -> dict:
        return self.model.load(path)

    def start(self) -> None:
        config = self.config
        self.data_description = {"train": self.train_ds.describe(), "val": self.val_ds.describe()}
        val_ds = self.val_ds
        indices = np.linspace(0, len(val_ds) - 1, min(config.num_samples, len(val_ds))).round().astype(int)
        self.sample_batch = torch.utils.data.default_collate([val_ds[int(i)] for i in indices])

    def checkpoint_extra(self) -> dict:
        return {
            "model": self.config.model,
            "class_weighting": self.weighting,
            "data": self.data_description,
            "input": {"size": 128, "image_range": [-1, 1], "preprocess": "gan.data.to_gan_range"},
        }

    def describe(self) -> dict:
        cls = self.cls
        return {
            "model": self.config.model,
            "options": dataclasses.asdict(self.model.opt),
            "parameters": self.model.parameter_counts(),
            "loss_names": list(cls.loss_names),
            "visual_names": list(cls.visual_names),
            "score": {"name": self.score_name, "mode": self.score_mode},
            "class_weighting": self.weighting,
            "data": self.data_description,
        }

    def train_mode(self) -> None:
        self.model.train()

    def train_step(self, batch) -> tuple[dict, int]:
        self.model.set_input(batch)
        self.model.optimize_parameters()
        return {f"loss_{name}": getattr(self.model, f"loss_{name}") for name in self.cls.loss_names}, len(
            batch["index"]
        )

    def step_schedule(self) -> float:
        return self.model.update_learning_rate()

    def validate(self) -> dict:
        return _validate(self.model, self.val_ds, self.config)

    def score(self, metrics) -> float:
        score = metrics.get(self.score_name, float("nan"))
        return score if isinstance(score, float) else float("nan")

    def scorable(self, score: float) -> bool:
        return not math.isnan(score)

    def score_record(self, score: float) -> Any:
        return {"name": self.score_name, "value": finite(score)}

    def save_best(self, path: Path, extra: dict) -> None:
        self.model.save(path, extra=extra)

    def save_last(self, path: Path, epoch: int, history: list[dict], extra: dict) -> None:
        self.model.save_training_state(path, epoch=epoch, history=history, extra=extra)

    def history_record(self) -> dict:
        return {"model": self.config.model, "score": self.score_name, "best": self.best, "epochs": self.history}

    def curve_panels(self) -> list[Panel]:
        """Generator losses, discriminator losses and validation metrics per epoch (dB figures on
        the left axis, unitless ones, SSIM and L1, on the right)."""
        model, names = self.config.model, self.cls.loss_names
        val_keys = sorted({k for h in self.history for k in h if k.startswith("val_")})
        colours = {key: f"C{i % 10}" for i, key in enumerate(val_keys)}
        return [
            Panel(
                f"{model}: generator losses",
                "loss (log scale)",
                [Curve(f"loss_{n}", n) for n in names if not n.startswith("D")],
                yscale="log",
            ),
            Panel(
                f"{model}: discriminator losses", "loss", [Curve(f"loss_{n}", n) for n in names if n.startswith("D")]
            ),
            Panel(
                f"{model}: validation",
                "dB",
                [Curve(k, k, "o-", colours[k]) for k in val_keys if "psnr" in k],
                right=[Curve(k, k, "s--", colours[k]) for k in val_keys if "psnr" not in k],
                right_ylabel="SSIM, L1",
            ),
        ]

    def after_epoch(self, epoch: int, metrics: dict, last: bool) -> None:
        config, model = self.config, self.model
        if (epoch + 1) % config.sample_every == 0 or last:
            model.eval()
            model.set_input(self.sample_batch)
            model.test()
            path = self.run.samples / f"epoch_{epoch + 1:04d}.png"
            title = f"{config.model}, epoch {epoch + 1}: {self.score_name} {self.score(metrics):.4g}"
            plot_samples(path, model.get_current_visuals(), title)
            self.samples.append(str(path))
            model.train()

    def epoch_message(self, metrics: dict) -> str:
        losses = ", ".join(f"{n} {metrics[f'loss_{n}']:.4f}" for n in self.cls.loss_names)
        return f"{losses}; {self.score_name} {self.score(metrics):.4f}"

    def out_of_time(self, elapsed_s: float) -> bool:
        return self.config.max_minutes is not None and elapsed_s / 60.0 >= self.config.max_minutes

    def summary_extra(self) -> dict:
        return {"model": self.config.model, "score_name": self.score_name, "samples": self.samples}
