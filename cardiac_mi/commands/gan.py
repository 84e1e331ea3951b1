"""``cardiac-mi gan train|metrics|synthesize|encoder``: thin wrappers over the ``gan`` API.

``cardiac_mi.cli`` calls :func:`register` with its sub-parsers. Bad input raises
:class:`~lgemri.errors.InputError`, which the main command prints as one line. Building the
parser imports neither torch nor MONAI (the model choices come from the file names
``gan/<name>_model.py``). ``gan train`` shares its run flags with ``train``
(:func:`lgemri.training.options.add_common_arguments`).

Examples::

    cardiac-mi gan train --model pix2pix --data prep/ --out runs/p2p --epochs 100
    cardiac-mi gan train --model cyclegan --data-a prep-cine/ --data prep/ --out runs/cyc
    cardiac-mi gan synthesize --masks sim/ --out synth/ --checkpoint runs/p2p/best.pt
    cardiac-mi gan metrics --real prep/ --fake synth/ --split val
    cardiac-mi gan encoder --data prep/ --out gan/weights/lge_encoder.pt
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import gan
from lgemri.errors import InputError
from lgemri.training.config import DEVICES
from lgemri.training.options import add_common_arguments, common_config, source
from lgemri.training.run_folder import BEST, CURVES, HISTORY, LAST, SAMPLES

__all__ = ["register", "options_from_args", "config_from_args", "MODEL_CHOICES"]

logger = logging.getLogger("cardiac_mi")

# repeated from their modules so that building the parser stays light (tests check they agree)
MODEL_CHOICES = tuple(
    sorted(
        p.name.removesuffix("_model.py")
        for p in Path(gan.__file__).parent.glob("*_model.py")
        if p.name != "base_model.py"
    )
)
LR_SCHEDULES = ("linear", "cosine", "constant")
NORMS = ("batch", "instance", "none")
GAN_MODES = ("vanilla", "lsgan")
OUTPUTS = ("tanh", "sigmoid")
D_INPUTS = ("mask+image", "image")
UPSAMPLES = ("transpose", "resize")
CYCLE_WEIGHTINGS = ("class", "lv", "none")
EXTRACTORS = ("lge-encoder", "inception", "alexnet")
SPLITS = ("train", "val", "test")

# CLI destination -> model option name (only options given on the command line are passed)
_OPTION_ARGS = {
    "lr": "lr",
    "beta1": "beta1",
    "depth": "depth",
    "ngf": "ngf",
    "ndf": "ndf",
    "d_layers": "n_layers_d",
    "norm": "norm",
    "dropout": "dropout",
    "output": "output",
    "gan_mode": "gan_mode",
    "lambda_l1": "lambda_l1",
    "d_input": "d_input",
    "upsample": "upsample",
    "lambda_cycle": "lambda_cycle",
    "lambda_identity": "lambda_identity",
    "cycle_weighting": "cycle_weighting",
    "background_weight": "background_weight",
    "pool_size": "pool_size",
    "condition_on_mask": "condition_on_mask",
}


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``gan`` with its sub-commands to ``subparsers``; returns the ``gan`` parser."""
    help_text = "train GANs (Pix2Pix mask -> LGE, CycleGAN cine -> LGE), synthesise images, score them"
    parser = subparsers.add_parser("gan", help=help_text, description=help_text)
    sub = parser.add_subparsers(dest="gan_command", required=True, metavar="GAN_COMMAND")
    _add_train(sub)
    _add_metrics(sub)
    _add_synthesize(sub)
    _add_encoder(sub)
    return parser


def _add_train(sub) -> None:
    help_text = f"train a GAN model; writes {BEST}, {LAST}, {HISTORY}, {CURVES}, {SAMPLES}/*.png"
    p = sub.add_parser("train", help=help_text, description=help_text)
    p.set_defaults(func=cmd_train)
    arg = p.add_argument
    arg("--model", required=True, choices=MODEL_CHOICES, help="which model to train")
    add_common_arguments(
        p,
        data_help="prepared folder(s)/datalist(s) of mask + LGE ROI pairs (CycleGAN: domain B); DIR=WEIGHT to weight",
        out_help="run folder",
        epochs=100,
        batch_size=8,
        lr_schedules=LR_SCHEDULES,
        lr_schedule="linear",
        lr_schedule_help="linear: constant for half the epochs, then linearly to 0 (default)",
        augment=False,
        augment_help="random rotation/zoom/shift of mask and image together",
        class_weights_help="class-weight scheme of the weighted L1, as the segmentation loss's (default inverse_sqrt)",
    )
    arg(
        "--data-a",
        nargs="+",
        type=source,
        metavar="DIR",
        help="CycleGAN domain A: cine ROI images with masks (a prepared cine phantom)",
    )
    g = p.add_argument_group("model options (default: the model's own; Pix2Pix: the paper's final model)")
    opt = g.add_argument
    opt("--lr", type=float, help="Adam learning rate (default 2e-4)")
    opt("--beta1", type=float, help="Adam beta1 (default 0.5)")
    opt("--depth", type=int, help="U-Net levels (default 6: 128 -> 2 pixels)")
    opt("--ngf", type=int, help="generator channels of the first level (default 64)")
    opt("--ndf", type=int, help="discriminator channels of the first layer (default 64)")
    opt("--d-layers", type=int, help="PatchGAN stride-2 layers (default 3: 70 x 70 patches)")
    opt("--norm", choices=NORMS, help="normalisation (pix2pix: batch, cyclegan: instance)")
    opt("--dropout", type=float, help="generator dropout (pix2pix: 0.5, cyclegan: 0)")
    opt("--output", choices=OUTPUTS, help="generator output activation (default tanh)")
    opt("--gan-mode", choices=GAN_MODES, help="adversarial objective (pix2pix: vanilla, cyclegan: lsgan)")
    opt("--lambda-l1", type=float, help="pix2pix: weight of the class-weighted L1 (default 100)")
    opt("--d-input", choices=D_INPUTS, help="pix2pix: what D sees (default mask+image)")
    opt(
        "--upsample",
        choices=UPSAMPLES,
        help="pix2pix: generator up-sampling, resize (nearest x2 + 3x3 conv, the default) or transpose (the reference)",
    )
    opt("--lambda-cycle", type=float, help="cyclegan: cycle-loss weight (default 10)")
    opt("--lambda-identity", type=float, help="cyclegan: identity weight relative to the cycle's (default 0.5)")
    opt("--cycle-weighting", choices=CYCLE_WEIGHTINGS, help="cyclegan: mask M of the cycle loss (default class)")
    opt("--background-weight", type=float, help="cyclegan: M outside the LV with --cycle-weighting lv (default 0.1)")
    opt("--pool-size", type=int, help="cyclegan: discriminator image pool (default 50)")
    opt(
        "--no-mask-condition",
        dest="condition_on_mask",
        action="store_const",
        const=False,
        help="cyclegan: do not feed the mask to the networks",
    )
    arg("--train-limit", type=int, help="use only N training slices (spread over the split)")
    arg("--val-limit", type=int, default=64, help="validate on at most N slices (default 64)")
    arg("--sample-every", type=int, default=5, help="sample grid every N epochs (default 5)")
    arg("--samples", type=int, default=4, dest="num_samples", help="slices per sample grid (default 4)")
    arg("--max-minutes", type=float, help="end after the epoch that passes this many minutes, resumable")


def _add_metrics(sub) -> None:
    help_text = "FID, KID, IS, LPIPS, PSNR, SSIM of generated images against real ones"
    p = sub.add_parser(
        "metrics",
        help=help_text,
        description=help_text
        + (
            ". Feature extractor: the project's LGE encoder (default, gan/weights/lge_encoder.pt or "
            "$CARDIAC_MI_GAN_ENCODER), or Inception-v3 / AlexNet from a local torchvision or pytorch-fid "
            "weights file (--weights); nothing is downloaded. Every figure names its extractor."
        ),
    )
    p.set_defaults(func=cmd_metrics)
    arg = p.add_argument
    arg("--real", required=True, type=Path, help="real images: prepared folder, roi/images or .npy folder")
    arg("--fake", required=True, type=Path, help="generated images (e.g. a 'gan synthesize' output)")
    arg("--extractor", choices=EXTRACTORS, default="lge-encoder", help="feature extractor of FID/KID/IS")
    arg(
        "--weights",
        type=Path,
        help="its weights file (inception_v3_google-0cc3c7bd.pth, "
        "pt_inception-2015-12-05-6726825d.pth, alexnet-owt-7be5be79.pth, or an LGE encoder)",
    )
    arg("--lpips-extractor", choices=EXTRACTORS, help="LPIPS's extractor (default: --extractor)")
    arg("--lpips-backbone", type=Path, help="weights of --lpips-extractor when it differs")
    arg("--lpips-weights", type=Path, help="LPIPS v0.1 linear layers for AlexNet (lpips/weights/v0.1/alex.pth)")
    arg("--split", choices=SPLITS, help="only this split of --real (when it has a manifest)")
    arg("--fake-split", choices=SPLITS, help="only this split of --fake (default: all its images)")
    arg("--limit", type=int, help="at most N images per set")
    arg("--device", default="cpu", help="torch device (default cpu)")
    arg("--out", type=Path, help="also write the result to this JSON file")


def _add_synthesize(sub) -> None:
    help_text = "turn simulator masks into LGE image + label pairs (manifest.csv, datalist.json)"
    p = sub.add_parser("synthesize", help=help_text, description=help_text)
    p.set_defaults(func=cmd_synthesize)
    arg = p.add_argument
    arg("--masks", required=True, type=Path, help="simulator output (roi/labels/*.npy) or a folder of .npy masks")
    arg("--out", required=True, type=Path, help="output folder")
    arg(
        "--checkpoint",
        type=Path,
        help="GAN checkpoint (default gan/weights/pix2pix_phantom.pt or $CARDIAC_MI_GAN_CHECKPOINT)",
    )
    arg("--images", type=Path, help="CycleGAN: cine image of each mask, by name")
    arg("--masks-split", choices=SPLITS, help="only the masks of this split of --masks's manifest")
    arg("--batch-size", type=int, default=16, help="masks per generator call (default 16)")
    arg("--device", default="cpu", help="torch device (default cpu)")
    arg("--seed", type=int, default=0, help="seed of the dropout noise with --stochastic (default 0)")
    arg("--split", choices=SPLITS, default="train", help="split written to the manifest (default train)")
    arg("--stochastic", action="store_true", help="keep the generator's dropout on (Pix2Pix noise)")
    arg("--overwrite", action="store_true", help="write into a folder that already holds a manifest")


def _add_encoder(sub) -> None:
    help_text = "train the default feature extractor of the metrics, a small encoder of LGE ROIs"
    p = sub.add_parser("encoder", help=help_text, description=help_text)
    p.set_defaults(func=cmd_encoder)
    arg = p.add_argument
    arg("--data", required=True, nargs="+", type=source, metavar="DIR", help="prepared LGE folder(s)")
    arg("--out", required=True, type=Path, help="encoder file to write (e.g. gan/weights/lge_encoder.pt)")
    arg("--epochs", type=int, default=6, help="epochs (default 6)")
    arg("--batch-size", type=int, default=32, help="batch size (default 32)")
    arg("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    arg("--seed", type=int, default=0, help="seed (default 0)")
    arg("--device", choices=DEVICES, default="auto", help="default auto")
    arg("--max-steps", type=int, dest="max_steps_per_epoch", help="at most N batches per epoch")
    arg(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="geometric augmentation (default: %(default)s)",
    )


# --------------------------------------------------------------------------------------------
# commands


def options_from_args(args: argparse.Namespace) -> dict:
    """The model options given on the command line (the others keep the model's defaults)."""
    return {opt: getattr(args, dest) for dest, opt in _OPTION_ARGS.items() if getattr(args, dest, None) is not None}


def config_from_args(args: argparse.Namespace):
    """The :class:`~gan.train.GanTrainConfig` of parsed ``gan train`` arguments."""
    from gan.train import GanTrainConfig

    return GanTrainConfig(
        **common_config(args),
        model=args.model,
        data_a=list(args.data_a) if args.data_a else None,
        options=options_from_args(args),
        train_limit=args.train_limit,
        val_limit=args.val_limit,
        sample_every=args.sample_every,
        num_samples=args.num_samples,
        max_minutes=args.max_minutes,
    )


def cmd_train(args: argparse.Namespace) -> None:
    from gan.train import train_gan

    summary = train_gan(config_from_args(args))
    score = summary["best_score"]
    logger.info(
        "%s: best epoch %s (%s %s) -> %s; samples in %s/samples",
        summary["model"],
        summary["best_epoch"],
        summary["score_name"],
        "n/a" if score is None else f"{score:.4f}",
        summary["best_checkpoint"],
        summary["run_dir"],
    )
    if summary["stopped_early"]:
        logger.info("stopped after epoch %d of %d; continue with --resume", summary["epochs_completed"], args.epochs)


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf" (identical images), "nan"
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def cmd_metrics(args: argparse.Namespace) -> None:
    from gan.metrics import compute_metrics

    if args.limit is not None and args.limit < 2:
        raise InputError(f"--limit must be at least 2 (FID needs two images), got {args.limit}")
    result = compute_metrics(
        args.real,
        args.fake,
        extractor=args.extractor,
        weights=args.weights,
        lpips_extractor=args.lpips_extractor,
        lpips_backbone=args.lpips_backbone,
        lpips_weights=args.lpips_weights,
        split=args.split,
        fake_split=args.fake_split,
        limit=args.limit,
        device=args.device,
    )
    text = json.dumps(_json_safe(result), indent=2)
    if args.out is not None:
        from lgemri.atomic import write_text

        write_text(args.out, text + "\n")
        logger.info("wrote %s", args.out)
    print(text)


def cmd_synthesize(args: argparse.Namespace) -> None:
    from gan.synthesize import synthesize

    result = synthesize(
        args.masks,
        args.out,
        args.checkpoint,
        images=args.images,
        masks_split=args.masks_split,
        batch_size=args.batch_size,
        device=args.device,
        seed=args.seed,
        split=args.split,
        stochastic=args.stochastic,
        overwrite=args.overwrite,
        progress=not getattr(args, "quiet", False),
    )
    logger.info(
        "wrote %d %s image/label pairs to %s (%s, %s)",
        result["count"],
        result["model"],
        result["out"],
        result["manifest"],
        result["datalist"],
    )


def cmd_encoder(args: argparse.Namespace) -> None:
    from gan.metrics.lge_encoder import train_encoder

    result = train_encoder(
        list(args.data),
        args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        augment=args.augment,
        device=args.device,
        max_steps_per_epoch=args.max_steps_per_epoch,
        progress=not getattr(args, "quiet", False),
    )
    logger.info(
        "wrote %s (%s): val accuracy %s, %.0f s",
        result["path"],
        result["name"],
        result["val_accuracy"],
        result["seconds"],
    )
