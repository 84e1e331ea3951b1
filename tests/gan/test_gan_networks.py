"""Tests for gan.networks: generator and discriminator shapes, output ranges, GAN objectives."""

from __future__ import annotations

import pytest
import torch

from gan.networks import (
    GANLoss,
    ImagePool,
    PatchDiscriminator,
    UnetGenerator,
    define_D,
    define_G,
    one_hot,
    weighted_l1,
)
from lgemri.errors import InputError


@pytest.mark.parametrize("depth, ngf", [(2, 4), (4, 4), (6, 2), (7, 2)])
def test_generator_shape_and_tanh_range(depth, ngf):
    torch.manual_seed(0)
    net = define_G(5, 1, depth=depth, ngf=ngf, norm="instance", dropout=0.5)
    x = torch.randn(2, 5, 128, 128) * 10  # large inputs: the output must still lie in [-1, 1]
    with torch.no_grad():
        y = net(x)
    assert y.shape == (2, 1, 128, 128)
    assert float(y.min()) >= -1.0 and float(y.max()) <= 1.0
    assert len(net.down) == depth and len(net.up) == depth - 1


def test_generator_default_is_the_papers_final_model():
    net = UnetGenerator(5)
    assert net.depth == 6 and isinstance(net.outermost[-1], torch.nn.Tanh)
    dropouts = [m for m in net.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(dropouts) == 3 and dropouts[0].p == 0.5
    with torch.no_grad():
        assert net.eval()(torch.zeros(1, 5, 128, 128)).shape == (1, 1, 128, 128)


def test_generator_sigmoid_output_and_bad_settings():
    net = define_G(5, 1, depth=3, ngf=2, output="sigmoid")
    with torch.no_grad():
        y = net(torch.randn(1, 5, 64, 64) * 10)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    with pytest.raises(InputError, match="divisible by 8"):
        net(torch.zeros(1, 5, 60, 60))
    with pytest.raises(InputError, match="depth"):
        UnetGenerator(5, depth=1)
    with pytest.raises(InputError, match="choose from"):
        UnetGenerator(5, output="relu")
    with pytest.raises(InputError, match="norm"):
        UnetGenerator(5, norm="group")


@pytest.mark.parametrize("n_layers, side", [(1, 62), (2, 30), (3, 14)])
def test_patch_discriminator_shape(n_layers, side):
    net = define_D(6, ndf=4, n_layers=n_layers)
    assert net(torch.randn(2, 6, 128, 128)).shape == (2, 1, side, side)
    assert isinstance(net, PatchDiscriminator)


@pytest.mark.parametrize("mode", ["vanilla", "lsgan"])
def test_gan_loss(mode):
    loss = GANLoss(mode)
    confident_real = torch.full((2, 1, 4, 4), 5.0 if mode == "vanilla" else 1.0)
    assert float(loss(confident_real, True)) < float(loss(confident_real, False))
    if mode == "lsgan":
        assert float(loss(torch.ones(1, 1, 2, 2), True)) == 0.0
    with pytest.raises(InputError, match="vanilla, lsgan"):
        GANLoss("wgan")


def test_one_hot_and_weighted_l1():
    mask = torch.tensor([[[0, 1], [3, 4]]])
    oh = one_hot(mask)
    assert oh.shape == (1, 5, 2, 2) and torch.equal(oh.argmax(1), mask) and float(oh.sum()) == 4
    with pytest.raises(InputError, match="0..4"):
        one_hot(torch.tensor([[[0, 5]]]))
    a, b = torch.zeros(1, 1, 2, 2), torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert float(weighted_l1(a, b)) == pytest.approx(0.25)
    w = torch.tensor([[[[3.0, 1.0], [1.0, 1.0]]]])
    assert float(weighted_l1(a, b, w)) == pytest.approx(3 / 6)


def test_image_pool():
    torch.manual_seed(0)
    pool = ImagePool(2)
    first = pool.query(torch.zeros(2, 1, 2, 2))
    assert torch.equal(first, torch.zeros(2, 1, 2, 2))
    later = pool.query(torch.ones(8, 1, 2, 2))
    assert later.shape == (8, 1, 2, 2) and 0 < float(later.mean()) <= 1
    assert ImagePool(0).query(torch.ones(1, 1, 1, 1)).shape == (1, 1, 1, 1)
