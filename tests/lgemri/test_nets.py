"""Tests for lgemri.nets: the ResAtt-U-Net, the localizer, the registry, MC dropout, checkpoints."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from monai.networks.nets.attentionunet import AttentionBlock

from lgemri.errors import InputError
from lgemri.nets import NETWORKS, build_network, enable_mc_dropout
from lgemri.nets.checkpoint import (
    load_checkpoint,
    load_training_state,
    save_checkpoint,
    save_training_state,
)
from lgemri.nets.localizer import Localizer
from lgemri.nets.resatt_unet import DEFAULT_CHANNELS, DEFAULT_STRIDES, ResAttUNet

TINY = (4, 8, 8, 8, 8, 8)
DEFAULT_PARAMETERS = 2_359_116


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# (spatial_dims, in_channels, out_channels, channels, strides, input spatial size)
SHAPE_CASES = [
    (2, 1, 5, TINY, (2, 2, 2, 2, 2), (64, 64)),
    (2, 2, 5, TINY, (2, 2, 2, 2, 2), (32, 96)),
    (2, 1, 2, TINY, (2, 2, 2, 2, 2), (50, 70)),  # not a multiple of 32: padded, cropped back
    (2, 1, 3, (4, 8, 8), (2, 2), (20, 24)),
    (3, 1, 5, (2, 4, 4, 4, 4, 4), (2, 2, 2, 2, 2), (32, 32, 32)),
    (3, 2, 3, (2, 4, 4), (2, 1), (12, 10, 9)),
]


@pytest.mark.parametrize("dims, cin, cout, channels, strides, size", SHAPE_CASES)
def test_resatt_unet_output_shape(dims, cin, cout, channels, strides, size):
    torch.manual_seed(0)
    net = ResAttUNet(spatial_dims=dims, in_channels=cin, out_channels=cout, channels=channels, strides=strides)
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(2, cin, *size))
    assert out.shape == (2, cout, *size)
    assert torch.isfinite(out).all()


def test_resatt_unet_defaults_follow_the_paper_and_fit_in_10_mb(tmp_path):
    net = ResAttUNet()
    assert len(net.strides) == 5 and len(net.channels) == 6
    assert net.channels == DEFAULT_CHANNELS and net.strides == DEFAULT_STRIDES
    assert sum(isinstance(m, AttentionBlock) for m in net.modules()) == 5
    assert any(type(m) is nn.Dropout for m in net.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert _count(net) == DEFAULT_PARAMETERS
    path = save_checkpoint(tmp_path / "net.pt", net, task="segmentation", network={"name": "resatt_unet", "kwargs": {}})
    assert path.stat().st_size <= 10_000_000


@pytest.mark.parametrize(
    "kwargs",
    [
        {"spatial_dims": 1},
        {"channels": (4, 8, 8), "strides": (2, 2, 2)},
        {"channels": (4,), "strides": ()},
        {"dropout": 1.0},
        {"channels": (0, 8, 8), "strides": (2, 2)},
    ],
)
def test_resatt_unet_rejects_bad_arguments(kwargs):
    with pytest.raises(InputError, match="ResAttUNet"):
        ResAttUNet(**kwargs)


def test_mc_dropout_varies_only_in_mc_mode():
    torch.manual_seed(0)
    net = ResAttUNet(channels=TINY, dropout=0.3)
    x = torch.randn(2, 1, 32, 32)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))
        enable_mc_dropout(net)
        a, b = net(x), net(x)
    assert not torch.allclose(a, b)
    assert all(not m.training for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    assert all(m.training for m in net.modules() if isinstance(m, nn.Dropout))
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))


def test_build_network_registry():
    assert set(NETWORKS) == {"resatt_unet", "localizer", "ensemble"}
    assert isinstance(build_network("resatt_unet", channels=TINY), ResAttUNet)
    loc = build_network("localizer")
    assert isinstance(loc, Localizer)
    with torch.no_grad():
        assert loc.eval()(torch.zeros(3, 1, 128, 128)).shape == (3, 2, 128, 128)
    with pytest.raises(InputError, match="choose from ensemble, localizer, resatt_unet"):
        build_network("unet3000")
    with pytest.raises(InputError, match="bad arguments"):
        build_network("localizer", colour="red")


def _tiny_spec() -> dict:
    return {"name": "resatt_unet", "kwargs": {"in_channels": 2, "out_channels": 5, "channels": TINY}}


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(1)
    spec = _tiny_spec()
    net = build_network(spec["name"], **spec["kwargs"])
    net.train()
    net(torch.randn(4, 2, 32, 32))  # move the batch-norm running statistics off their defaults
    path = save_checkpoint(
        tmp_path / "sub" / "best.pt",
        net,
        task="segmentation",
        network=spec,
        extra={"two_stage": True, "class_weights": torch.ones(5).numpy(), "epoch": 3},
    )
    loaded, meta = load_checkpoint(path, task="segmentation")
    assert not loaded.training
    x = torch.randn(2, 2, 32, 32)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), loaded(x))
    assert meta["task"] == "segmentation" and meta["kind"] == "model"
    assert meta["extra"] == {"two_stage": True, "class_weights": [1.0] * 5, "epoch": 3}
    assert meta["network"]["kwargs"]["channels"] == TINY
    assert not list(path.parent.glob(".*tmp*"))  # the temporary file was renamed away


def test_checkpoint_errors(tmp_path):
    spec = _tiny_spec()
    net = build_network(spec["name"], **spec["kwargs"])
    path = save_checkpoint(tmp_path / "cavity.pt", net, task="cavity", network=spec)
    with pytest.raises(InputError, match=r"cavity\.pt: holds a 'cavity' network, expected a 'segmentation'"):
        load_checkpoint(path, task="segmentation")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError, match="garbage.pt: not a cardiac_mi checkpoint"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": net.state_dict()}, foreign)
    with pytest.raises(InputError, match="foreign.pt: not a cardiac_mi checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(InputError, match="missing.pt: checkpoint file not found"):
        load_checkpoint(tmp_path / "missing.pt")
    wrong = save_checkpoint(
        tmp_path / "wrong.pt",
        net,
        task="segmentation",
        network={"name": "resatt_unet", "kwargs": {"channels": (4, 8, 8, 8, 8, 16)}},
    )
    with pytest.raises(InputError, match="wrong.pt: weights do not fit"):
        load_checkpoint(wrong)
    with pytest.raises(InputError, match="unknown task"):
        save_checkpoint(tmp_path / "x.pt", net, task="detection", network=spec)


def test_training_state_round_trip(tmp_path):
    torch.manual_seed(2)
    spec = _tiny_spec()

    def fresh():
        net = build_network(spec["name"], **spec["kwargs"])
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.5**e)
        return net, opt, sched

    net, opt, sched = fresh()
    loss = net(torch.randn(2, 2, 32, 32)).square().mean()
    loss.backward()
    opt.step()
    sched.step()
    path = save_training_state(
        tmp_path / "last.pt",
        net,
        task="segmentation",
        network=spec,
        epoch=1,
        optimizer=opt,
        scheduler=sched,
        history=[{"epoch": 1, "train_loss": 0.5}],
        extra={"best": {"score": 0.1}},
    )
    net2, opt2, sched2 = fresh()
    state = load_training_state(path, net2, opt2, sched2, task="segmentation")
    assert state["epoch"] == 1 and state["history"] == [{"epoch": 1, "train_loss": 0.5}]
    assert state["extra"]["best"] == {"score": 0.1}
    assert opt2.param_groups[0]["lr"] == pytest.approx(5e-3) and sched2.last_epoch == 1
    first = next(iter(opt.state.values()))["exp_avg"]
    assert torch.equal(next(iter(opt2.state.values()))["exp_avg"], first)
    for key, value in net.state_dict().items():
        assert torch.equal(value, net2.state_dict()[key])
    # a model checkpoint reads the training state too, but cannot be resumed from
    model, meta = load_checkpoint(path, task="segmentation")
    assert meta["kind"] == "training_state"
    best = save_checkpoint(tmp_path / "best.pt", net, task="segmentation", network=spec)
    with pytest.raises(InputError, match="not a training state"):
        load_training_state(best, net2, opt2)
