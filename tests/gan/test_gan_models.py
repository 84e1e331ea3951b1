"""Tests for the model contract (gan.base_model), Pix2Pix, CycleGAN and the trainer (gan.train)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gan.base_model import BaseModel, available_models, create_model, find_model, load_model
from gan.cyclegan_model import CycleGANModel
from gan.data import PairedRoiDataset, UnpairedDataset, to_gan_range
from gan.networks import weighted_l1
from gan.pix2pix_model import Pix2PixModel
from gan.train import GanTrainConfig, train_gan
from lgemri.errors import InputError
from lgemri.losses import class_frequencies, class_weights
from tests.helpers.gan import TINY

WEIGHTS = (0.3, 0.6, 0.7, 1.4, 2.0)


def _paired_batch(lge_dir: Path, n: int = 4) -> dict:
    ds = PairedRoiDataset(lge_dir, "train")
    return torch.utils.data.default_collate([ds[i] for i in range(n)])


def _unpaired_batch(cine_dir: Path, lge_dir: Path, n: int = 2) -> dict:
    ds = UnpairedDataset(cine_dir, lge_dir, "train")
    return torch.utils.data.default_collate([ds[i] for i in range(n)])


def test_models_are_found_by_file_name():
    assert available_models() == ("cyclegan", "pix2pix")
    assert find_model("pix2pix") is Pix2PixModel and find_model("cyclegan") is CycleGANModel
    for cls in (Pix2PixModel, CycleGANModel):
        assert issubclass(cls, BaseModel) and cls.loss_names and cls.visual_names
        assert set(cls.inference_names) <= set(cls.model_names)
    with pytest.raises(InputError, match="cyclegan, pix2pix"):
        find_model("stylegan")


def test_options_are_checked():
    with pytest.raises(InputError, match="unknown pix2pix option.*lambda_cycle"):
        create_model("pix2pix", {"lambda_cycle": 3})
    with pytest.raises(InputError, match="vanilla, lsgan"):
        create_model("pix2pix", {"gan_mode": "hinge", **TINY})
    with pytest.raises(InputError, match="class_weights"):
        create_model("pix2pix", {"class_weights": (1, 2), **TINY})
    opt = Pix2PixModel.make_options({})
    assert (opt.depth, opt.lambda_l1, opt.dropout, opt.output, opt.d_input) == (6, 100.0, 0.5, "tanh", "mask+image")


def test_pix2pix_step_lowers_the_loss_on_a_fixed_batch(lge_dir):
    torch.manual_seed(0)
    model = create_model("pix2pix", {**TINY, "norm": "instance", "dropout": 0.0, "lr": 1e-3, "class_weights": WEIGHTS})
    batch = _paired_batch(lge_dir)
    model.set_input(batch)

    def l1() -> float:
        with torch.no_grad():
            return float(weighted_l1(model.netG(model.real_A), model.real_B, model.pixel_weights(model.mask)))

    before = l1()
    model.optimize_parameters()
    after = l1()
    assert after < before
    losses = model.get_current_losses()
    assert set(losses) == set(Pix2PixModel.loss_names) and all(np.isfinite(list(losses.values())))
    assert losses["G"] == pytest.approx(losses["G_GAN"] + 100.0 * losses["G_L1"], rel=1e-5)
    visuals = model.get_current_visuals()
    assert visuals["fake_B"].shape == (4, 1, 128, 128) and visuals["mask"].shape == (4, 128, 128)


def test_cyclegan_step_lowers_the_loss_on_a_fixed_batch(cine_dir, lge_dir):
    torch.manual_seed(0)
    model = create_model("cyclegan", {**TINY, "lr": 1e-3, "class_weights": WEIGHTS, "pool_size": 2})
    batch = _unpaired_batch(cine_dir, lge_dir)
    model.set_input(batch)

    def cycle() -> float:
        model.test()
        return float(model.validation_metrics()["val_cycle"].mean())

    before = cycle()
    for _ in range(2):
        model.optimize_parameters()
    assert cycle() < before
    losses = model.get_current_losses()
    assert set(losses) == set(CycleGANModel.loss_names) and all(np.isfinite(list(losses.values())))
    assert losses["idt_A"] > 0 and losses["cycle_A"] > 0
    assert set(model.get_current_visuals()) == set(CycleGANModel.visual_names)


def test_cycle_loss_is_weighted_by_the_mask(cine_dir, lge_dir):
    model = create_model(
        "cyclegan", {**TINY, "class_weights": WEIGHTS, "cycle_weighting": "lv", "background_weight": 0.0}
    )
    model.set_input(_unpaired_batch(cine_dir, lge_dir))
    w = model.cycle_weights(model.mask_A)
    assert w.shape == (2, 1, 128, 128)
    assert float(w[model.mask_A.unsqueeze(1) > 0].min()) == 1.0 and float(w.min()) == 0.0
    model.opt.cycle_weighting = "class"
    assert torch.equal(model.cycle_weights(model.mask_A)[0, 0], torch.tensor(WEIGHTS)[model.mask_A[0]])


def test_save_load_round_trip(tmp_path, lge_dir):
    torch.manual_seed(0)
    model = create_model("pix2pix", {**TINY, "class_weights": WEIGHTS})
    batch = _paired_batch(lge_dir, 2)
    model.set_input(batch)
    model.optimize_parameters()
    model.eval()
    expected = model.generate(batch)
    path = model.save(tmp_path / "best.pt", extra={"epoch": 3})
    loaded, meta = load_model(path, "pix2pix")
    assert isinstance(loaded, Pix2PixModel) and not loaded.is_train and loaded.netD is None
    assert meta["extra"]["epoch"] == 3 and meta["kind"] == "model"
    assert loaded.opt.class_weights == WEIGHTS
    assert torch.allclose(loaded.generate(batch), expected)
    # training state: every network and the optimizers come back
    state = model.save_training_state(tmp_path / "last.pt", epoch=2, history=[{"epoch": 1}, {"epoch": 2}])
    other = create_model("pix2pix", {**TINY, "class_weights": WEIGHTS})
    meta = other.load(state)
    assert meta["epoch"] == 2 and len(meta["history"]) == 2
    for name in ("G", "D"):
        for a, b in zip(
            getattr(model, f"net{name}").state_dict().values(), getattr(other, f"net{name}").state_dict().values()
        ):
            assert torch.equal(a, b)
    assert other.optimizer_G.state_dict()["state"].keys() == model.optimizer_G.state_dict()["state"].keys()


def test_loading_another_models_checkpoint_is_a_clear_error(tmp_path):
    cyc = create_model("cyclegan", TINY)
    path = cyc.save(tmp_path / "cyc.pt")
    with pytest.raises(InputError, match="holds a 'cyclegan' checkpoint, expected a 'pix2pix'"):
        load_model(path, "pix2pix")
    with pytest.raises(InputError, match="holds a 'cyclegan' checkpoint"):
        create_model("pix2pix", TINY).load(path)
    with pytest.raises(InputError, match="built with"):
        create_model("cyclegan", {**TINY, "ngf": 8}).load(path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a cardiac_mi GAN checkpoint"):
        load_model(tmp_path / "junk.pt")
    torch.save({"format": "cardiac_mi.checkpoint", "version": 1}, tmp_path / "seg.pt")
    with pytest.raises(InputError, match="segmentation network"):
        load_model(tmp_path / "seg.pt")
    with pytest.raises(InputError, match="not found"):
        load_model(tmp_path / "missing.pt")


def test_train_gan_writes_a_run_and_resumes(tmp_path, lge_dir):
    config = dict(
        model="pix2pix",
        data=[str(lge_dir)],
        out=str(tmp_path / "run"),
        options=dict(TINY),
        epochs=2,
        batch_size=4,
        sample_every=1,
        num_samples=2,
        progress=False,
        device="cpu",
    )
    first = train_gan(GanTrainConfig(**config, stop_after=1))
    run = Path(first["run_dir"])
    assert first["stopped_early"] and first["epochs_completed"] == 1
    for name in ("best.pt", "last.pt", "config.json", "history.json", "curves.png", "samples/epoch_0001.png"):
        assert (run / name).is_file(), name
    saved = json.loads((run / "config.json").read_text())
    expected = class_weights(class_frequencies(PairedRoiDataset(lge_dir, "train").target_arrays()), "inverse_sqrt")
    np.testing.assert_allclose(saved["options"]["class_weights"], expected)  # the segmentation loss's weights
    with pytest.raises(InputError, match="already holds a training run"):
        train_gan(GanTrainConfig(**config))
    resumed = train_gan(GanTrainConfig(**config, resume=True))
    assert resumed["epochs_completed"] == 2 and not resumed["stopped_early"]
    history = json.loads((run / "history.json").read_text())["epochs"]
    assert [h["epoch"] for h in history] == [1, 2] and "val_psnr" in history[0] and "loss_G_L1" in history[0]
    straight = train_gan(GanTrainConfig(**{**config, "out": str(tmp_path / "straight")}))
    a, _ = load_model(run / "last.pt")
    b, _ = load_model(Path(straight["run_dir"]) / "last.pt")
    for x, y in zip(a.netG.state_dict().values(), b.netG.state_dict().values()):
        assert torch.allclose(x.float(), y.float(), atol=1e-6)  # resumed == uninterrupted


def test_train_cyclegan_and_bad_configs(tmp_path, cine_dir, lge_dir):
    summary = train_gan(
        GanTrainConfig(
            model="cyclegan",
            data=[str(lge_dir)],
            data_a=[str(cine_dir)],
            out=str(tmp_path / "cyc"),
            options={**TINY, "pool_size": 2},
            epochs=1,
            batch_size=2,
            max_steps_per_epoch=2,
            progress=False,
        )
    )
    assert summary["score_name"] == "val_cycle" and np.isfinite(summary["best_score"])
    metrics = summary["last_metrics"]
    assert metrics["val_psnr_ab"] is not None  # the validation slices pair up by name
    with pytest.raises(InputError, match="needs domain A"):
        train_gan(GanTrainConfig(model="cyclegan", data=[str(lge_dir)], out=str(tmp_path / "x")))
    with pytest.raises(InputError, match="unknown GAN model"):
        train_gan(GanTrainConfig(model="unet", data=[str(lge_dir)], out=str(tmp_path / "x")))
    with pytest.raises(InputError, match="nothing to resume"):
        train_gan(GanTrainConfig(model="pix2pix", data=[str(lge_dir)], out=str(tmp_path / "y"), resume=True))


def test_paired_dataset_range(lge_dir):
    ds = PairedRoiDataset(lge_dir, "val")
    item = ds[0]
    assert item["image"].shape == (1, 128, 128) and item["mask"].dtype == torch.int64
    assert float(item["image"].min()) >= -1.0 and float(item["image"].max()) <= 1.0
    raw = np.load(ds.items[0].roi_image)
    np.testing.assert_allclose(item["image"][0].numpy(), to_gan_range(raw))
