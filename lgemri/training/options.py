"""The command-line flags every training command shares, defined once.

``cardiac-mi train`` and ``cardiac-mi gan train`` call :func:`add_common_arguments` with their
task's defaults and build their configuration from :func:`common_config` plus their own flags.
Torch-free: building a parser imports neither torch nor MONAI.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .config import DEVICES, WEIGHT_SCHEMES

__all__ = ["source", "add_common_arguments", "common_config"]


def source(text: str) -> str | tuple[str, float]:
    """``DIR`` or ``DIR=WEIGHT`` (a sampling weight); a path that exists as given wins."""
    path, sep, weight = text.rpartition("=")
    if not sep or Path(text).exists():
        return text
    try:
        return (path, float(weight))
    except ValueError:
        return text


def add_common_arguments(
    parser: argparse.ArgumentParser,
    *,
    data_help: str,
    out_help: str,
    epochs: int,
    batch_size: int,
    lr_schedules: tuple[str, ...],
    lr_schedule: str,
    lr_schedule_help: str,
    augment: bool,
    augment_help: str,
    class_weights_help: str,
) -> None:
    """Add the flags of :class:`~lgemri.training.config.BaseTrainConfig` to ``parser``.

    ``--data``, ``--out``, ``--epochs``, ``--batch-size``, ``--lr-schedule``, ``--seed``,
    ``--resume``, ``--class-weights``, ``--augment/--no-augment``, ``--max-steps``,
    ``--stop-after``, ``--device``, ``--workers``, ``--no-amp``; the keyword arguments are the
    task's defaults and the help texts that differ between tasks.
    """
    arg = parser.add_argument
    arg("--data", required=True, nargs="+", type=source, metavar="DIR", help=data_help)
    arg("--out", required=True, type=Path, help=out_help)
    arg("--epochs", type=int, default=epochs, help=f"number of epochs (default {epochs})")
    arg("--batch-size", type=int, default=batch_size, help=f"slices per batch, per GPU (default {batch_size})")
    arg("--lr-schedule", choices=lr_schedules, default=lr_schedule, help=lr_schedule_help)
    arg("--seed", type=int, default=0, help="seed of weights, batch order, augmentation, dropout (default 0)")
    arg("--resume", action="store_true", help="continue the run in --out from its last.pt")
    arg(
        "--class-weights",
        dest="class_weighting",
        choices=WEIGHT_SCHEMES,
        default="inverse_sqrt",
        help=class_weights_help,
    )
    arg(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=augment,
        help=f"{augment_help} (default: %(default)s)",
    )
    arg("--max-steps", type=int, dest="max_steps_per_epoch", help="at most N batches per epoch (quick runs)")
    arg("--stop-after", type=int, help="end after this many epochs (of --epochs), resumable with --resume")
    arg("--device", choices=DEVICES, default="auto", help="default auto: CUDA when available")
    arg("--workers", type=int, default=0, dest="num_workers", help="data loader processes (default 0)")
    arg("--no-amp", dest="amp", action="store_false", help="no mixed precision on CUDA")


def common_config(args: argparse.Namespace) -> dict:
    """The :class:`~lgemri.training.config.BaseTrainConfig` fields of parsed arguments."""
    return {
        "data": list(args.data),
        "out": str(args.out),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr_schedule": args.lr_schedule,
        "seed": args.seed,
        "resume": args.resume,
        "class_weighting": args.class_weighting,
        "augment": args.augment,
        "max_steps_per_epoch": args.max_steps_per_epoch,
        "device": args.device,
        "num_workers": args.num_workers,
        "amp": args.amp,
        "stop_after": args.stop_after,
        "progress": not getattr(args, "quiet", False),
    }
