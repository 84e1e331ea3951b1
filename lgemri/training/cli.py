"""The ``cardiac-mi train`` sub-command: a thin wrapper over :func:`lgemri.training.train`.

``cardiac_mi.cli`` calls :func:`register` with its sub-parsers; bad input raises
:class:`~lgemri.errors.InputError`, which the main command prints as one line. Importing this
module is cheap: torch and MONAI load when the command runs.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ..errors import InputError
from ..nets import NETWORKS, TASKS

# the choices of lgemri.training.loop and lgemri.losses, repeated here so that building the
# parser imports neither torch nor MONAI (tests check that the two agree)
LR_SCHEDULES = ("cosine", "poly", "constant")
LOSSES = ("ce", "ce+dice")
WEIGHT_SCHEMES = ("inverse_sqrt", "inverse", "median", "none")
DEVICES = ("auto", "cpu", "cuda")

__all__ = ["register", "cmd_train", "config_from_args"]

logger = logging.getLogger(__name__)


def _channels(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 16,32,64,96,128,160, got {text!r}"
        ) from None
    if len(values) < 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected two or more positive channel counts, got {text!r}")
    return values


def _source(text: str) -> str | tuple[str, float]:
    """``DIR`` or ``DIR=WEIGHT`` (a sampling weight); a path that exists as given wins."""
    path, sep, weight = text.rpartition("=")
    if not sep or Path(text).exists():
        return text
    try:
        return (path, float(weight))
    except ValueError:
        return text


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``train`` sub-command to ``subparsers``; returns its parser."""
    help_text = "train the localization, segmentation or cavity network on prepared folders"
    p = subparsers.add_parser("train", help=help_text, description=help_text)
    p.set_defaults(func=cmd_train)
    arg = p.add_argument
    arg("--task", required=True, choices=TASKS, help="which network to train")
    arg(
        "--data",
        required=True,
        nargs="+",
        type=_source,
        metavar="DIR",
        help="prepared folder(s) or datalist .json file(s); DIR=WEIGHT sets a sampling weight",
    )
    arg("--out", required=True, type=Path, help="run folder (best.pt, last.pt, history.json, curves.png, config.json)")
    arg("--epochs", type=int, default=50, help="number of epochs (default 50)")
    arg("--batch-size", type=int, default=16, help="slices per batch (per GPU; default 16)")
    arg("--lr", type=float, default=1e-3, help="initial Adam learning rate (default 1e-3)")
    arg("--lr-schedule", choices=LR_SCHEDULES, default="cosine", help="per-epoch LR schedule (default cosine)")
    arg("--seed", type=int, default=0, help="seed of weights, batch order, augmentation, dropout (default 0)")
    arg("--resume", action="store_true", help="continue the run in --out from its last.pt")
    arg(
        "--init",
        type=Path,
        metavar="CHECKPOINT",
        help="start from this model checkpoint (fine-tuning; the network comes from it)",
    )
    arg(
        "--loss",
        choices=LOSSES,
        default="ce",
        help="class-weighted cross-entropy, optionally plus soft Dice (default ce)",
    )
    arg(
        "--class-weights",
        dest="class_weighting",
        choices=WEIGHT_SCHEMES,
        default="inverse_sqrt",
        help="class-weight scheme of the loss (default inverse_sqrt)",
    )
    arg(
        "--two-stage",
        action="store_true",
        help="segmentation with the cleaned LV-cavity mask as a second input channel",
    )
    arg("--network", choices=tuple(NETWORKS), help="network (default: localizer for localization, else resatt_unet)")
    arg("--channels", type=_channels, help="feature channels per level, e.g. 16,32,64,96,128,160")
    arg("--dropout", type=float, default=0.1, help="dropout probability (default 0.1)")
    arg("--no-augment", dest="augment", action="store_false", help="train without augmentation")
    arg("--max-steps", type=int, dest="max_steps_per_epoch", help="at most N batches per epoch (quick runs)")
    arg("--stop-after", type=int, help="end after this many epochs (of --epochs), resumable with --resume")
    arg("--device", choices=DEVICES, default="auto", help="default auto: CUDA when available")
    arg("--workers", type=int, default=0, dest="num_workers", help="data loader processes (default 0)")
    arg("--no-amp", dest="amp", action="store_false", help="no mixed precision on CUDA")
    return p


def config_from_args(args: argparse.Namespace):
    """The :class:`~lgemri.training.loop.TrainConfig` of parsed ``train`` arguments."""
    from .loop import TrainConfig

    return TrainConfig(
        task=args.task,
        data=list(args.data),
        out=str(args.out),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        seed=args.seed,
        resume=args.resume,
        init=None if getattr(args, "init", None) is None else str(args.init),
        loss=args.loss,
        class_weighting=args.class_weighting,
        two_stage=args.two_stage,
        network=args.network,
        channels=args.channels,
        dropout=args.dropout,
        augment=args.augment,
        max_steps_per_epoch=args.max_steps_per_epoch,
        stop_after=args.stop_after,
        device=args.device,
        num_workers=args.num_workers,
        amp=args.amp,
        progress=not getattr(args, "quiet", False),
    )


def cmd_train(args: argparse.Namespace) -> None:
    """Run ``train`` and log where the results are."""
    from .loop import train

    if args.task != "segmentation" and args.two_stage:
        raise InputError(f"--two-stage applies to --task segmentation, not {args.task}")
    summary = train(config_from_args(args))
    score = summary["best_score"]
    logger.info(
        "%s: best epoch %s (score %s) -> %s",
        summary["task"],
        summary["best_epoch"],
        "n/a" if score is None else f"{score:.4f}",
        summary["best_checkpoint"],
    )
    if summary["stopped_early"]:
        logger.info("stopped after epoch %d of %d; continue with --resume", summary["epochs_completed"], args.epochs)
    logger.debug("summary: %s", json.dumps(summary, default=str))
