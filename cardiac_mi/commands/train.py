"""``cardiac-mi train``: a thin wrapper over :func:`lgemri.training.train`.

The flags every training command shares come from :mod:`lgemri.training.options`, the choices
and defaults from :class:`lgemri.training.config.TrainConfig`; bad input raises
:class:`~lgemri.errors.InputError`, which the main command prints as one line. Importing this
module is cheap: torch and MONAI load when the command runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

from lgemri.errors import InputError
from lgemri.nets import NETWORKS, TASKS
from lgemri.training.config import LOSSES, TrainConfig
from lgemri.training.options import add_common_arguments, common_config
from lgemri.training.run_folder import BEST, CONFIG, CURVES, HISTORY, LAST

__all__ = ["register", "cmd_train", "config_from_args"]

logger = logging.getLogger("cardiac_mi")

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


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


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``train`` sub-command to ``subparsers``; returns its parser."""
    help_text = "train the localization, segmentation or cavity network on prepared folders"
    p = subparsers.add_parser("train", help=help_text, description=help_text)
    p.set_defaults(func=cmd_train)
    arg = p.add_argument
    arg("--task", required=True, choices=TASKS, help="which network to train")
    add_common_arguments(
        p,
        data_help="prepared folder(s) or datalist .json file(s); DIR=WEIGHT sets a sampling weight",
        out_help=f"run folder ({BEST}, {LAST}, {HISTORY}, {CURVES}, {CONFIG})",
        epochs=_DEFAULTS["epochs"],
        batch_size=_DEFAULTS["batch_size"],
        lr_schedules=TrainConfig.lr_schedules,
        lr_schedule=_DEFAULTS["lr_schedule"],
        lr_schedule_help=f"per-epoch LR schedule (default {_DEFAULTS['lr_schedule']})",
        augment=_DEFAULTS["augment"],
        augment_help="augment the training slices (what varies between sites)",
        class_weights_help=f"class-weight scheme of the loss (default {_DEFAULTS['class_weighting']})",
    )
    arg("--lr", type=float, default=_DEFAULTS["lr"], help=f"initial Adam learning rate (default {_DEFAULTS['lr']:g})")
    arg(
        "--init",
        type=Path,
        metavar="CHECKPOINT",
        help="start from this model checkpoint (fine-tuning; the network comes from it)",
    )
    arg(
        "--loss",
        choices=LOSSES,
        default=_DEFAULTS["loss"],
        help=f"class-weighted cross-entropy, optionally plus soft Dice (default {_DEFAULTS['loss']})",
    )
    arg(
        "--two-stage",
        action="store_true",
        help="segmentation with the cleaned LV-cavity mask as a second input channel",
    )
    arg("--network", choices=tuple(NETWORKS), help="network (default: localizer for localization, else resatt_unet)")
    arg("--channels", type=_channels, help="feature channels per level, e.g. 16,32,64,96,128,160")
    arg(
        "--dropout",
        type=float,
        default=_DEFAULTS["dropout"],
        help=f"dropout probability (default {_DEFAULTS['dropout']})",
    )
    arg(
        "--max-stretch",
        type=float,
        default=_DEFAULTS["max_stretch"],
        help="largest aspect ratio the augmentation draws a heart with, e.g. 2.5 for images resized to a square "
        f"matrix without their pixel geometry (default {_DEFAULTS['max_stretch']})",
    )
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`~lgemri.training.config.TrainConfig` of parsed ``train`` arguments."""
    return TrainConfig(
        **common_config(args),
        task=args.task,
        lr=args.lr,
        init=None if getattr(args, "init", None) is None else str(args.init),
        loss=args.loss,
        two_stage=args.two_stage,
        network=args.network,
        channels=args.channels,
        dropout=args.dropout,
        max_stretch=args.max_stretch,
    )


def cmd_train(args: argparse.Namespace) -> None:
    """Run ``train`` and log where the results are."""
    from lgemri.training import train

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
