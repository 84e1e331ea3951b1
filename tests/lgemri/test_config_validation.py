"""Configuration declared one way (lgemri.config): a bad value of each kind is an InputError that
names the setting; a good configuration round-trips through plain()/JSON."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from cardiac_mi.pacs.config import PacsSettings
from cardiac_mi.retrain import RetrainConfig
from lgemri.errors import InputError
from lgemri.training.config import TrainConfig
from simulator.api import SimulationConfig


def _train(**kwargs) -> TrainConfig:
    return TrainConfig(**{"task": "segmentation", "data": ["prep"], "out": "run", **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "epochs must be at least 1, got 0"),
        ({"epochs": 2.5}, "epochs must be a whole number, got 2.5"),
        ({"loss": "x"}, "unknown loss 'x'; choose from ce, ce+dice"),
        ({"lr_schedule": "linear"}, "unknown LR schedule 'linear'; choose from cosine, poly, constant"),
        ({"lr": 0.0}, "learning rate must be positive, got 0.0"),
        ({"lr": float("inf")}, "learning rate must be a finite number, got inf"),
        ({"num_workers": -1}, "num workers must be non-negative, got -1"),
        ({"dropout": 1.0}, "dropout must be at least 0 and below 1, got 1.0"),
        ({"channels": (8,)}, "channels must have at least 2 value(s), got (8,)"),
        ({"channels": (8, 0)}, "every value of channels must be at least 1, got 0"),
        ({"data": []}, "no training data given (--data)"),
        ({"init": "a.pt", "network": "resatt_unet"}, "init takes the network from its checkpoint"),
    ],
)
def test_a_bad_setting_is_named_in_words(kwargs, message):
    config = _train(**kwargs)  # building checks nothing; validate() does
    with pytest.raises(InputError) as caught:
        config.validate()
    assert str(caught.value).startswith(message)


def test_other_configurations_name_their_settings():
    with pytest.raises(InputError, match=r"^unknown publish policy 'x'; choose from review, if_better"):
        RetrainConfig(publish="x").validate()
    with pytest.raises(InputError, match=r"^max epochs must be at least 1, got 0$"):
        RetrainConfig(max_epochs=0).validate()
    with pytest.raises(InputError, match=r"^--slices must be at least 1 and at most 30, got 31$"):
        SimulationConfig(slices=31).validate()
    with pytest.raises(InputError, match=r"^timeout \(seconds\) must be positive, got 0$"):
        PacsSettings("pacs", 104, "PACS", timeout=0)  # checked when built, as before


def test_validate_normalises_in_place_and_the_config_round_trips_through_json():
    config = _train(data="prep", out=Path("run"), channels=[4, 8, 16])
    config.validate()
    assert config.data == ["prep"] and config.channels == (4, 8, 16) and config.out == Path("run")
    plain = json.loads(json.dumps(config.plain()))
    assert plain["channels"] == [4, 8, 16] and plain["out"] == "run"
    again = TrainConfig(**plain)  # an old run's config.json, lists where tuples were
    again.validate()
    assert again == dataclasses.replace(config, out="run")


def test_gan_options_from_a_checkpoint_load_as_before():
    from gan.pix2pix_model import Pix2PixModel

    saved = {"depth": 5, "class_weights": [1, 2, 3, 4, 5], "gan_mode": "lsgan"}  # torch.load's lists
    opt = Pix2PixModel.make_options(saved)
    assert opt.class_weights == (1.0, 2.0, 3.0, 4.0, 5.0) and opt.depth == 5
    assert Pix2PixModel.make_options(dataclasses.asdict(opt)) == opt
    with pytest.raises(InputError, match=r"^unknown gan mode 'hinge'; choose from vanilla, lsgan$"):
        Pix2PixModel.make_options({"gan_mode": "hinge"})
