"""Tests for the ``cardiac-mi gan`` sub-commands (cardiac_mi.commands.gan) and the LGE encoder's training."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

import cardiac_mi.commands.gan as cli
from gan.base_model import available_models
from gan.cyclegan_model import CYCLE_WEIGHTINGS
from gan.metrics.features import EXTRACTORS, load_extractor
from gan.metrics.lge_encoder import train_encoder
from gan.networks import GAN_MODES, NORMS, OUTPUTS, UPSAMPLES
from gan.pix2pix_model import D_INPUTS
from gan.train import LR_SCHEDULES
from lgemri.errors import InputError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cardiac-mi")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.register(sub)
    return parser


def test_choices_agree_with_the_modules():
    assert cli.MODEL_CHOICES == available_models()
    assert cli.NORMS == NORMS and cli.GAN_MODES == GAN_MODES and cli.OUTPUTS == OUTPUTS
    assert cli.D_INPUTS == D_INPUTS and cli.CYCLE_WEIGHTINGS == CYCLE_WEIGHTINGS
    assert cli.EXTRACTORS == EXTRACTORS and cli.LR_SCHEDULES == LR_SCHEDULES
    assert cli.UPSAMPLES == UPSAMPLES


def test_train_arguments_become_a_config():
    args = _parser().parse_args(
        [
            "gan",
            "train",
            "--model",
            "pix2pix",
            "--data",
            "a",
            "b=2",
            "--out",
            "run",
            "--depth",
            "5",
            "--ngf",
            "16",
            "--lambda-l1",
            "60",
            "--gan-mode",
            "lsgan",
            "--max-minutes",
            "3",
        ]
    )
    config = cli.config_from_args(args)
    assert config.options == {"depth": 5, "ngf": 16, "lambda_l1": 60.0, "gan_mode": "lsgan"}
    assert config.data == ["a", ("b", 2.0)] and config.max_minutes == 3.0 and config.model == "pix2pix"
    args = _parser().parse_args(
        [
            "gan",
            "train",
            "--model",
            "cyclegan",
            "--data",
            "b",
            "--data-a",
            "a",
            "--out",
            "r",
            "--no-mask-condition",
            "--cycle-weighting",
            "lv",
        ]
    )
    assert cli.options_from_args(args) == {"condition_on_mask": False, "cycle_weighting": "lv"}


def test_bad_input_is_an_input_error(tmp_path, lge_dir):
    parse = _parser().parse_args
    args = parse(
        [
            "gan",
            "train",
            "--model",
            "cyclegan",
            "--data",
            str(lge_dir),
            "--data-a",
            str(lge_dir),
            "--out",
            str(tmp_path / "r"),
            "--lambda-l1",
            "50",
        ]
    )
    with pytest.raises(InputError, match="unknown cyclegan option"):
        args.func(args)
    args = parse(["gan", "synthesize", "--masks", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    with pytest.raises(InputError, match="masks folder not found"):
        args.func(args)
    args = parse(["gan", "metrics", "--real", str(lge_dir), "--fake", str(lge_dir), "--extractor", "inception"])
    with pytest.raises(InputError, match="--weights"):
        args.func(args)


def test_encoder_command_trains_a_usable_extractor(tmp_path, lge_dir, capsys):
    torch.manual_seed(0)
    result = train_encoder(
        [str(lge_dir)],
        tmp_path / "enc.pt",
        epochs=1,
        batch_size=4,
        channels=(4, 8, 8),
        max_steps_per_epoch=2,
        progress=False,
        device="cpu",
    )
    assert result["name"].startswith("lge-encoder@") and 0 <= result["val_accuracy"] <= 1
    ext = load_extractor("lge-encoder", result["path"])
    assert ext.name == result["name"] and ext.classes == ["normal", "infarct", "no_reflow"]
    args = _parser().parse_args(
        [
            "gan",
            "metrics",
            "--real",
            str(lge_dir),
            "--fake",
            str(lge_dir),
            "--split",
            "val",
            "--fake-split",
            "val",
            "--weights",
            result["path"],
            "--out",
            str(tmp_path / "m.json"),
        ]
    )
    args.func(args)
    printed = json.loads(capsys.readouterr().out)
    assert printed["psnr"] == "inf" and printed["extractor"] == ext.name
    assert json.loads((tmp_path / "m.json").read_text())["paired"] == 4


def test_train_flags_are_the_shared_ones_with_the_configs_defaults():
    import dataclasses

    from gan.train import GanTrainConfig

    args = _parser().parse_args(["gan", "train", "--model", "pix2pix", "--data", "a", "--out", "r"])
    config = cli.config_from_args(args)
    for field in dataclasses.fields(GanTrainConfig):
        if field.name not in ("data", "out", "model", "progress"):
            assert getattr(config, field.name) == getattr(GanTrainConfig(model="x", data=[], out=""), field.name)
    assert config.augment is False
    for flag, value in (("--augment", True), ("--no-augment", False)):
        args = _parser().parse_args(["gan", "train", "--model", "pix2pix", "--data", "a", "--out", "r", flag])
        assert args.augment is value
    assert _parser().parse_args(["gan", "encoder", "--data", "a", "--out", "e.pt", "--no-augment"]).augment is False


def test_parsing_stays_light():
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, cardiac_mi.commands.gan; sys.exit('torch' in sys.modules or 'monai' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2]).returncode == 0


def test_upsample_reaches_the_pix2pix_options():
    args = _parser().parse_args(
        ["gan", "train", "--model", "pix2pix", "--data", "d", "--out", "o", "--upsample", "transpose"]
    )
    assert cli.options_from_args(args)["upsample"] == "transpose"
    plain = _parser().parse_args(["gan", "train", "--model", "pix2pix", "--data", "d", "--out", "o"])
    assert "upsample" not in cli.options_from_args(plain)  # the model's own default (resize)
