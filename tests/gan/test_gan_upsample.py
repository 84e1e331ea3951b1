"""The Pix2Pix generator's up-sampling option: resize-convolutions (the default of new runs) or
transposed convolutions (the reference Pix2Pix, and every checkpoint written before the option)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from gan.base_model import create_model, load_model, read_gan_file
from gan.networks import UPSAMPLES, define_G
from gan.pix2pix_model import Pix2PixModel, Pix2PixOptions
from lgemri.errors import InputError

REPO = Path(__file__).resolve().parents[2]
TINY = {"depth": 3, "ngf": 4, "ndf": 4, "n_layers_d": 2}


def _count(net: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in net.modules())


def _phase_spread(image: torch.Tensor, crop: int) -> float:
    """Largest difference between the means of the four 2 x 2 phases of the interior of a
    ``(N, C, H, W)`` image: 0 for an image free of a 2-pixel periodic pattern."""
    inner = image[..., crop:-crop, crop:-crop]
    phases = torch.stack([inner[..., a::2, b::2].mean() for a in (0, 1) for b in (0, 1)])
    return float(phases.max() - phases.min())


@pytest.mark.parametrize("upsample", UPSAMPLES)
def test_layers_are_what_the_option_says(upsample):
    torch.manual_seed(0)
    g = define_G(5, 1, depth=4, ngf=4, upsample=upsample)
    assert g.upsample == upsample
    if upsample == "transpose":
        assert _count(g, nn.ConvTranspose2d) == 4
        assert _count(g, nn.Upsample) == 0
    else:
        assert _count(g, nn.ConvTranspose2d) == 0
        assert _count(g, nn.Upsample) == 4
        ups = [m for m in g.modules() if isinstance(m, nn.Upsample)]
        assert all(m.scale_factor == 2 and m.mode == "nearest" for m in ups)
        convs = [m for m in g.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
        assert len(convs) == 4 and all(c.stride == (1, 1) and c.padding == (1, 1) for c in convs)


@pytest.mark.parametrize("upsample", UPSAMPLES)
def test_shapes_and_range(upsample):
    torch.manual_seed(0)
    g = define_G(5, 1, depth=4, ngf=4, upsample=upsample).eval()
    with torch.no_grad():
        y = g(torch.randn(2, 5, 64, 48))
    assert y.shape == (2, 1, 64, 48)
    assert float(y.abs().max()) <= 1.0
    with pytest.raises(InputError, match="divisible by 16"):
        g(torch.randn(1, 5, 40, 40))


def test_unknown_upsample_is_refused():
    with pytest.raises(InputError, match="up-sampling"):
        define_G(5, 1, depth=3, ngf=4, upsample="pixelshuffle")
    with pytest.raises(InputError, match="upsample"):
        create_model("pix2pix", {**TINY, "upsample": "bilinear"})


@pytest.mark.parametrize("upsample", UPSAMPLES)
def test_up_block_on_a_constant_map(upsample):
    """At initialisation a resize-convolution maps a constant feature map to a constant one (every
    output pixel sees the same 9 taps); a 4 x 4 stride-2 transposed convolution does not (even and
    odd output pixels see different taps): the checkerboard of Odena et al. 2016."""
    torch.manual_seed(0)
    g = define_G(5, 1, depth=4, ngf=8, upsample=upsample).eval()
    with torch.no_grad():
        block = g.up[-1]  # 2 * ngf channels in (after the skip concat of the level above), ngf out
        conv = next(m for m in block if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))
        x = torch.full((1, conv.in_channels, 16, 16), 0.5)
        spreads = [_phase_spread(block(x), crop=2), _phase_spread(g.outermost(torch.full((1, 16, 16, 16), 0.5)), 2)]
    if upsample == "resize":
        assert max(spreads) < 1e-6
    else:
        assert min(spreads) > 1e-4


def test_generator_of_a_blank_mask_has_no_checkerboard():
    """The whole resize generator on an all-background mask: the interior (away from the zero
    padding's reach) carries no 2-pixel periodic pattern; the transposed one does."""
    mask = torch.zeros(1, 5, 128, 128)
    mask[:, 0] = 1.0
    spread = {}
    for upsample in UPSAMPLES:
        torch.manual_seed(0)
        g = define_G(5, 1, depth=3, ngf=8, dropout=0.0, upsample=upsample).eval()
        with torch.no_grad():
            spread[upsample] = _phase_spread(g(mask), crop=32)
    assert spread["resize"] < 1e-6
    assert spread["transpose"] > 100 * max(spread["resize"], 1e-7)


def test_new_runs_default_to_resize_and_old_options_to_transpose():
    assert Pix2PixOptions().upsample == "resize"
    assert Pix2PixModel.make_options(TINY).upsample == "resize"  # a CLI/trainer partial mapping
    stored = dataclasses.asdict(Pix2PixModel.make_options(TINY))
    old = {k: v for k, v in stored.items() if k != "upsample"}  # what a checkpoint stored before
    assert Pix2PixModel.make_options(old).upsample == "transpose"
    assert Pix2PixModel.make_options({**old, "upsample": "resize"}).upsample == "resize"
    # the trainer's --resume merges the stored options with the command line's: still complete
    assert Pix2PixModel.make_options({**old, "ngf": 4}).upsample == "transpose"


def _save_without_upsample(tmp_path: Path) -> tuple[Path, Pix2PixModel]:
    torch.manual_seed(0)
    model = create_model("pix2pix", {**TINY, "upsample": "transpose"}, is_train=True)
    model.save(tmp_path / "new.pt")
    payload = torch.load(tmp_path / "new.pt", weights_only=True)
    del payload["options"]["upsample"]
    torch.save(payload, tmp_path / "old.pt")
    return tmp_path / "old.pt", model


def test_checkpoint_without_the_field_loads_transposed_convolutions(tmp_path):
    path, original = _save_without_upsample(tmp_path)
    assert "upsample" not in read_gan_file(path)["options"]
    model, meta = load_model(path)
    assert model.opt.upsample == "transpose"
    assert _count(model.netG, nn.ConvTranspose2d) == 3 and _count(model.netG, nn.Upsample) == 0
    assert "upsample" not in meta["options"]
    mask = torch.randint(0, 5, (2, 32, 32))
    original.eval()
    with torch.no_grad():
        expected = original.generate({"mask": mask})
    assert torch.equal(model.generate({"mask": mask}), expected)


def test_checkpoint_without_the_field_refuses_a_resize_model(tmp_path):
    path, _ = _save_without_upsample(tmp_path)
    resize = create_model("pix2pix", {**TINY, "upsample": "resize"}, is_train=False)
    with pytest.raises(InputError, match="networks were built with"):
        resize.load(path)


def test_shipped_phantom_checkpoint_still_loads_as_before():
    path = REPO / "gan" / "weights" / "pix2pix_phantom.pt"
    if not path.is_file():
        pytest.skip("gan/weights/pix2pix_phantom.pt not present")
    if "upsample" in (read_gan_file(path).get("options") or {}):
        pytest.skip("the shipped checkpoint was rewritten with the upsample field")
    model, _ = load_model(path, model="pix2pix")
    assert model.opt.upsample == "transpose"
    assert _count(model.netG, nn.ConvTranspose2d) == model.opt.depth
    assert _count(model.netG, nn.Upsample) == 0
    y = model.generate({"mask": torch.zeros(1, 128, 128, dtype=torch.long)})
    assert y.shape == (1, 1, 128, 128) and torch.isfinite(y).all()
