"""Tests for lgemri.training: datasets, the training engine for the three tasks, resume, the command."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cardiac_mi.commands.train import register
from lgemri.emidec import prepare_dataset
from lgemri.errors import InputError
from lgemri.nets.checkpoint import load_checkpoint
from lgemri.nets.preprocess import LOC_SIZE, ROI_SIZE
from lgemri.phantom import write_phantom
from lgemri.postprocess import clean_cavity
from lgemri.training import TrainConfig, train
from lgemri.training.data import EpochSampler, LocalizationDataset, RoiDataset, read_items

SEED = 5  # three cases: Case_N003 and Case_P001 train, Case_P002 (no-reflow) val, no test split
TINY = (4, 8, 8, 8, 8, 8)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A prepared folder of three phantom cases (read-only for the tests)."""
    root = tmp_path_factory.mktemp("training")
    write_phantom(root, 3, SEED, formats=("emidec",))
    prepare_dataset(root / "emidec", root / "prep", fractions=(0.34, 0.33, 0.33))
    splits = {row.split(",")[4] for row in (root / "prep" / "manifest.csv").read_text().splitlines()[1:]}
    assert splits == {"train", "val"}
    return root / "prep"


def _config(prepared: Path, out: Path, task: str, **kwargs) -> TrainConfig:
    defaults = dict(
        task=task,
        data=[str(prepared)],
        out=str(out),
        epochs=1,
        batch_size=4,
        max_steps_per_epoch=3,
        channels=(4, 8, 8, 8) if task == "localization" else TINY,
        progress=False,
    )
    defaults.update(kwargs)
    return TrainConfig(**defaults)


# --------------------------------------------------------------------------------------------
# datasets


def test_roi_dataset_items(prepared):
    ds = RoiDataset(prepared, "train")
    assert len(ds) == 18 and ds.in_channels == 1 and ds.num_classes == 5
    x, y = ds[4]
    assert x.shape == (1, ROI_SIZE, ROI_SIZE) and x.dtype == torch.float32
    assert y.shape == (ROI_SIZE, ROI_SIZE) and y.dtype == torch.int64
    raw = np.load(prepared / "roi" / "labels" / f"{ds.items[4].name}.npy")
    np.testing.assert_array_equal(y.numpy(), raw)
    assert set(np.unique(np.concatenate([t.ravel() for t in ds.target_arrays()]))) <= set(range(5))


def test_two_stage_and_cavity_targets(prepared):
    ds = RoiDataset(prepared, "train", augment=False, two_stage_cavity=True)
    index = next(i for i in range(len(ds)) if (ds[i][1] == 1).sum() > 200)
    x, y = ds[index]
    assert x.shape == (2, ROI_SIZE, ROI_SIZE)
    np.testing.assert_array_equal(x[1].numpy(), clean_cavity(y.numpy() == 1).astype(np.float32))
    aug = RoiDataset(prepared, "train", augment=True, two_stage_cavity=True)
    for epoch in range(4):
        aug.set_epoch(epoch)
        assert set(np.unique(aug[index][0][1].numpy())) <= {0.0, 1.0}
    cavity = RoiDataset(prepared, "val", target="cavity")
    assert cavity.num_classes == 2
    assert set(np.unique(cavity[3][1].numpy())) <= {0, 1}


def test_augmentation_is_seeded_by_epoch_and_keeps_image_and_label_together(prepared):
    ds = RoiDataset(prepared, "train", augment=True, seed=3)
    plain = RoiDataset(prepared, "train", augment=False)
    index = 5
    ds.set_epoch(0)
    a, b = ds[index], ds[index]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    draws = []
    for epoch in range(1, 6):
        ds.set_epoch(epoch)
        x, y = ds[index]
        draws.append(x)
        assert set(np.unique(y.numpy())) <= set(np.unique(plain[index][1].numpy()))  # nearest: no new labels
    assert any(not torch.equal(d, plain[index][0]) for d in draws)
    assert not all(torch.equal(draws[0], d) for d in draws[1:])


def test_localization_dataset(prepared):
    ds = LocalizationDataset(prepared, "val", augment=True)
    x, y = ds[2]
    assert x.shape == (1, LOC_SIZE, LOC_SIZE) and x.dtype == torch.float32
    assert y.shape == (LOC_SIZE, LOC_SIZE) and y.dtype == torch.int64 and y.sum() > 0


def test_sources_weights_and_datalist(prepared, tmp_path):
    items = read_items([prepared, (prepared, 3.0)], "val")
    assert len(items) == 14 and [i.weight for i in items] == [1.0] * 7 + [3.0] * 7
    ds = RoiDataset([str(prepared), (str(prepared), 3.0)], "val")
    assert ds.sample_weights.tolist() == [1.0] * 7 + [3.0] * 7
    names = [i.name for i in items[:7]]
    datalist = {
        "training": [],
        "validation": [
            {"image": f"prep/roi/images/{n}.npy", "label": f"prep/roi/labels/{n}.npy", "case_id": "Case_P002"}
            for n in names
        ],
    }
    shutil.copytree(prepared, tmp_path / "prep")
    path = tmp_path / "list.json"
    path.write_text(json.dumps(datalist))
    from_list = RoiDataset(path, "val")
    assert len(from_list) == 7 and torch.equal(from_list[2][0], RoiDataset(prepared, "val")[2][0])
    with pytest.raises(InputError, match="full slice"):
        LocalizationDataset(path, "val")
    with pytest.raises(InputError, match="no slice in the 'train' split"):
        RoiDataset(path, "train")


def test_dataset_errors(prepared, tmp_path):
    with pytest.raises(InputError, match="no manifest.csv"):
        RoiDataset(tmp_path, "train")
    with pytest.raises(InputError, match="not found"):
        RoiDataset(tmp_path / "missing", "train")
    with pytest.raises(InputError, match="no slice in the 'test' split"):
        RoiDataset(prepared, "test")
    with pytest.raises(InputError, match="weight must be positive"):
        RoiDataset([(prepared, 0.0)], "train")


def test_epoch_sampler_shares_and_weights():
    shares = []
    for rank in range(3):
        sampler = EpochSampler(10, seed=1, rank=rank, world_size=3)
        sampler.set_epoch(2)
        shares.append(list(sampler))
    assert all(len(s) == 4 for s in shares)
    assert set(sum(shares, [])) == set(range(10))
    sampler = EpochSampler(10, seed=1)
    sampler.set_epoch(2)
    assert list(sampler) == list(sampler) and sorted(sampler) == list(range(10))
    heavy = EpochSampler(4, weights=[1, 1, 1, 1000], seed=0)
    assert list(heavy).count(3) >= 3


# --------------------------------------------------------------------------------------------
# the loop


@pytest.mark.parametrize(
    "task, kwargs",
    [
        ("segmentation", {"two_stage": True, "loss": "ce+dice", "epochs": 2}),
        ("cavity", {}),
        ("localization", {"lr_schedule": "poly"}),
    ],
)
def test_train_writes_a_complete_run(prepared, tmp_path, task, kwargs):
    out = tmp_path / "run"
    summary = train(_config(prepared, out, task, **kwargs))
    for name in ("best.pt", "last.pt", "history.json", "curves.png", "config.json"):
        assert (out / name).is_file(), name
    epochs = kwargs.get("epochs", 1)
    assert summary["epochs_completed"] == epochs and not summary["stopped_early"]
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history["epochs"]] == list(range(1, epochs + 1))
    assert all(h["steps"] == 3 for h in history["epochs"])
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["task"] == task and config["data"]["train"]["slices"] == 18
    assert np.mean(config["class_weights"]) == pytest.approx(1.0)
    model, meta = load_checkpoint(out / "best.pt", task=task)
    extra = meta["extra"]
    assert extra["two_stage"] is (task == "segmentation")
    assert len(extra["class_weights"]) == (5 if task == "segmentation" else 2)
    assert extra["epoch"] in range(1, epochs + 1) and "mean_dice" in extra["metrics"]
    in_channels = 2 if task == "segmentation" else 1
    with torch.no_grad():
        logits = model(torch.zeros(1, in_channels, 128, 128))
    assert logits.shape == (1, 5 if task == "segmentation" else 2, 128, 128)
    if task == "localization":
        assert "centre_error_mm" in history["epochs"][0]
        assert meta["network"]["name"] == "localizer"


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(prepared, tmp_path):
    common = dict(epochs=4, batch_size=3, max_steps_per_epoch=2, two_stage=True, dropout=0.2)
    whole = train(_config(prepared, tmp_path / "whole", "segmentation", **common))
    first = train(_config(prepared, tmp_path / "parts", "segmentation", stop_after=2, **common))
    assert first["stopped_early"] and first["epochs_completed"] == 2
    second = train(_config(prepared, tmp_path / "parts", "segmentation", resume=True, **common))
    assert second["epochs_completed"] == 4 and whole["epochs_completed"] == 4
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "parts" / "last.pt", weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    history_a = json.loads((tmp_path / "whole" / "history.json").read_text())["epochs"]
    history_b = json.loads((tmp_path / "parts" / "history.json").read_text())["epochs"]
    assert [h["train_loss"] for h in history_a] == [h["train_loss"] for h in history_b]
    assert whole["best_epoch"] == second["best_epoch"]


def test_train_refuses_to_overwrite_or_resume_nothing(prepared, tmp_path):
    with pytest.raises(InputError, match="nothing to resume"):
        train(_config(prepared, tmp_path / "none", "cavity", resume=True))
    train(_config(prepared, tmp_path / "run", "cavity", max_steps_per_epoch=1))
    with pytest.raises(InputError, match="already holds a training run"):
        train(_config(prepared, tmp_path / "run", "cavity"))
    with pytest.raises(InputError, match="the run was started with network"):
        train(_config(prepared, tmp_path / "run", "cavity", resume=True, epochs=2, channels=(4, 8, 8, 8, 8, 16)))
    with pytest.raises(InputError, match="two-stage input applies to the segmentation task"):
        train(_config(prepared, tmp_path / "x", "cavity", two_stage=True))
    with pytest.raises(InputError, match="unknown task"):
        train(_config(prepared, tmp_path / "x", "detection"))


# --------------------------------------------------------------------------------------------
# the command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cardiac-mi")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_train(prepared, tmp_path):
    out = tmp_path / "cli"
    args = _parser().parse_args(
        [
            "train",
            "--task",
            "cavity",
            "--data",
            str(prepared),
            f"{prepared}=2",
            "--out",
            str(out),
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--max-steps",
            "1",
            "--channels",
            "4,8,8,8,8,8",
            "--device",
            "cpu",
            "--loss",
            "ce+dice",
        ]
    )
    assert args.data == [str(prepared), (str(prepared), 2.0)]
    args.func(args)
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["channels"] == list(TINY) and config["loss"] == "ce+dice" and config["max_steps_per_epoch"] == 1
    assert (out / "best.pt").is_file()


def test_cli_errors(tmp_path):
    parser = _parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--task", "detection", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--task", "cavity", "--data", "d", "--out", "o", "--channels", "4,x"])
    args = parser.parse_args(["train", "--task", "segmentation", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    with pytest.raises(InputError, match="no manifest.csv"):
        args.func(args)
    args = parser.parse_args(["train", "--task", "cavity", "--two-stage", "--data", str(tmp_path), "--out", "o"])
    with pytest.raises(InputError, match="--two-stage applies to --task segmentation"):
        args.func(args)


def test_cli_augment_takes_both_spellings_and_the_configs_default():
    base = ["train", "--task", "cavity", "--data", "d", "--out", "o"]
    assert _parser().parse_args(base).augment is TrainConfig(task="cavity", data=["d"], out="o").augment is True
    assert _parser().parse_args([*base, "--no-augment"]).augment is False
    assert _parser().parse_args([*base, "--augment"]).augment is True


def test_cli_choices_match_the_library_and_import_light():
    import subprocess
    import sys

    from lgemri import losses
    from lgemri.training import config

    assert config.WEIGHT_SCHEMES == losses.WEIGHT_SCHEMES
    code = "import sys, cardiac_mi.commands.train; sys.exit('torch' in sys.modules or 'monai' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2]).returncode == 0


def test_max_stretch_sets_the_augmentations_aspect_range(prepared, tmp_path):
    from lgemri.training.segmentation import SegmentationTrainer

    for task in ("segmentation", "localization"):
        config = _config(prepared, tmp_path / task, task, max_stretch=2.5)
        config.validate()
        train_ds, val_ds = SegmentationTrainer(config).prepare()
        assert train_ds.augment and not val_ds.augment
        assert train_ds.augmentation.anisotropy == pytest.approx((0.4, 2.5))
    assert TrainConfig(task="cavity", data=["d"], out="o").max_stretch == 1.25
    with pytest.raises(InputError, match="max stretch must be at least 1, got 0.5"):
        _config(prepared, tmp_path / "bad", "segmentation", max_stretch=0.5).validate()
    args = _parser().parse_args(["train", "--task", "cavity", "--data", "d", "--out", "o", "--max-stretch", "2"])
    assert args.max_stretch == 2.0
