"""Generators, discriminators and GAN objectives of the mask -> LGE and cine -> LGE models.

After Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks" (CVPR
2017) and the layout of junyanz/pytorch-CycleGAN-and-pix2pix ``models/networks.py``:

- :func:`define_G` builds a U-Net generator (:class:`UnetGenerator`) of configurable depth: ``depth``
  stride-2 convolutions down, as many up-sampling layers up, ``depth - 1`` skip connections,
  dropout in the innermost decoder blocks, a ``tanh`` (or ``sigmoid``) output. The up-sampling
  layers are 4 x 4 stride-2 transposed convolutions (``upsample="transpose"``, the reference
  implementation) or resize-convolutions (``upsample="resize"``: nearest-neighbour x2, then a
  3 x 3 convolution), which cannot draw the checkerboard pattern that transposed convolutions
  learn (Odena, Dumoulin & Olah, "Deconvolution and Checkerboard Artifacts", Distill 2016).
  The default is the reference paper's final model (Omar et al., section 3.3.C, Table I,
  trial 5: "U-Net (6/5 layers) ... tanh activation"), read as 6 down-sampling layers and 5
  skip-connected up-sampling layers plus the output layer: a 128 x 128 ROI reaches 2 x 2 at the
  bottleneck.
- :func:`define_D` builds a PatchGAN (:class:`PatchDiscriminator`): ``n_layers`` stride-2
  convolutions then two stride-1 ones, one logit per overlapping patch (70 x 70 pixels for
  ``n_layers=3``, the paper's "moderately deep PatchGAN").
- :class:`GANLoss` is the adversarial objective, ``vanilla`` (the cross-entropy of the original
  GAN, on logits) or ``lsgan`` (least squares, Mao et al. 2017).

Every network takes and returns ``(N, C, H, W)`` tensors; images live in ``[-1, 1]``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from lgemri.errors import InputError

__all__ = [
    "NORMS",
    "GAN_MODES",
    "UPSAMPLES",
    "OUTPUTS",
    "UnetGenerator",
    "PatchDiscriminator",
    "GANLoss",
    "define_G",
    "define_D",
    "init_weights",
    "set_requires_grad",
    "one_hot",
    "ImagePool",
    "weighted_l1",
]

NORMS = ("batch", "instance", "none")
GAN_MODES = ("vanilla", "lsgan")
OUTPUTS = ("tanh", "sigmoid")
UPSAMPLES = ("transpose", "resize")


def _norm_layer(norm: str):
    if norm == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if norm == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if norm == "none":
        return None
    raise InputError(f"unknown norm {norm!r}; choose from {', '.join(NORMS)}")


def _block(*layers: nn.Module | None) -> nn.Sequential:
    return nn.Sequential(*(layer for layer in layers if layer is not None))


def _upsample_layers(upsample: str, in_ch: int, out_ch: int, bias: bool) -> tuple[nn.Module, ...]:
    """Layers that double the spatial size: a 4 x 4 stride-2 transposed convolution, or a
    nearest-neighbour x2 resize followed by a 3 x 3 convolution (every output pixel then sees
    the same number of input taps, so no 2-pixel periodic pattern can come from the layer)."""
    if upsample == "transpose":
        return (nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1, bias=bias),)
    if upsample == "resize":
        return (nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=bias))
    raise InputError(f"unknown up-sampling {upsample!r}; choose from {', '.join(UPSAMPLES)}")


class UnetGenerator(nn.Module):
    """U-Net generator of Isola et al. with a configurable number of levels.

    Level ``i`` (0-based) has ``ngf * min(2**i, 8)`` feature channels. Encoder: 4 x 4
    stride-2 convolutions, LeakyReLU(0.2) and normalisation (none on the first and the innermost
    level). Decoder: ReLU, an up-sampling layer (4 x 4 stride-2 transposed convolution or
    nearest x2 + 3 x 3 convolution, see ``upsample``), normalisation and dropout on the
    ``dropout_layers`` innermost blocks; every decoder block but the outermost is
    concatenated with the encoder feature of the same size (the skip connection).

    Args:
        in_channels: Input channels (5 for a one-hot EMIDEC mask).
        out_channels: Output channels (1 for a grey-level image).
        depth: Number of stride-2 levels (``>= 2``); inputs must be divisible by ``2**depth``.
        ngf: Feature channels of the first level.
        norm: ``batch``, ``instance`` or ``none``.
        dropout: Dropout probability in the innermost decoder blocks (Pix2Pix uses 0.5 as its
            noise source); 0 for none.
        dropout_layers: How many of the innermost decoder blocks get dropout.
        output: ``tanh`` (images in [-1, 1]) or ``sigmoid`` ([0, 1]).
        upsample: ``transpose`` (transposed convolutions, the reference Pix2Pix) or ``resize``
            (resize-convolutions, free of checkerboard artefacts).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 1,
        depth: int = 6,
        ngf: int = 64,
        norm: str = "batch",
        dropout: float = 0.5,
        dropout_layers: int = 3,
        output: str = "tanh",
        upsample: str = "transpose",
    ) -> None:
        super().__init__()
        if depth < 2:
            raise InputError(f"U-Net depth must be at least 2, got {depth}")
        if in_channels < 1 or out_channels < 1 or ngf < 1:
            raise InputError(f"channels must be positive, got in={in_channels}, out={out_channels}, ngf={ngf}")
        if not 0.0 <= dropout < 1.0:
            raise InputError(f"dropout must lie in [0, 1), got {dropout}")
        if output not in OUTPUTS:
            raise InputError(f"unknown generator output {output!r}; choose from {', '.join(OUTPUTS)}")
        if upsample not in UPSAMPLES:
            raise InputError(f"unknown up-sampling {upsample!r}; choose from {', '.join(UPSAMPLES)}")
        norm_layer = _norm_layer(norm)
        use_bias = norm != "batch"
        self.depth = depth
        self.upsample = upsample
        ch = [ngf * min(2**i, 8) for i in range(depth)]

        def norm_of(c: int) -> nn.Module | None:
            return norm_layer(c) if norm_layer is not None else None

        down = [nn.Conv2d(in_channels, ch[0], 4, 2, 1, bias=use_bias)]
        for i in range(1, depth):
            inner = i == depth - 1
            down.append(
                _block(
                    nn.LeakyReLU(0.2, True),
                    nn.Conv2d(ch[i - 1], ch[i], 4, 2, 1, bias=use_bias),
                    None if inner else norm_of(ch[i]),
                )
            )
        self.down = nn.ModuleList(down)
        up = []
        for i in range(depth - 1, 0, -1):
            in_ch = ch[i] if i == depth - 1 else 2 * ch[i]
            drop = dropout > 0 and (depth - 1 - i) < dropout_layers
            up.append(
                _block(
                    nn.ReLU(True),
                    *_upsample_layers(upsample, in_ch, ch[i - 1], use_bias),
                    norm_of(ch[i - 1]),
                    nn.Dropout(dropout) if drop else None,
                )
            )
        self.up = nn.ModuleList(up)
        self.outermost = _block(
            nn.ReLU(True),
            *_upsample_layers(upsample, 2 * ch[0], out_channels, True),
            nn.Tanh() if output == "tanh" else nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = 2**self.depth
        if x.ndim != 4 or x.shape[-1] % factor or x.shape[-2] % factor:
            raise InputError(
                f"U-Net of depth {self.depth} needs (N, C, H, W) input with H and W divisible by {factor}, "
                f"got {tuple(x.shape)}"
            )
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        x = skips.pop()  # innermost: no skip of its own
        for layer in self.up:
            x = torch.cat([skips.pop(), layer(x)], dim=1)
        return self.outermost(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator: one real/fake logit per overlapping image patch.

    ``Conv(4, s2) + LeakyReLU``, then ``n_layers - 1`` times ``Conv(4, s2) + norm + LeakyReLU``
    (channels doubling up to ``8 * ndf``), then ``Conv(4, s1) + norm + LeakyReLU`` and a final
    ``Conv(4, s1)`` to one channel. The receptive field is 70 x 70 for ``n_layers=3``.

    Args:
        in_channels: Input channels (mask one-hot + image for the conditional Pix2Pix D).
        ndf: Feature channels of the first layer.
        n_layers: Number of stride-2 layers (``>= 1``).
        norm: ``batch``, ``instance`` or ``none``.
    """

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch") -> None:
        super().__init__()
        if n_layers < 1:
            raise InputError(f"PatchGAN needs at least 1 layer, got {n_layers}")
        if in_channels < 1 or ndf < 1:
            raise InputError(f"channels must be positive, got in={in_channels}, ndf={ndf}")
        norm_layer = _norm_layer(norm)
        use_bias = norm != "batch"

        def norm_of(c: int) -> nn.Module | None:
            return norm_layer(c) if norm_layer is not None else None

        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                _block(nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=use_bias), norm_of(ndf * mult)),
                nn.LeakyReLU(0.2, True),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            _block(nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=use_bias), norm_of(ndf * mult)),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * mult, 1, 4, 1, 1),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class GANLoss(nn.Module):
    """The adversarial objective on discriminator logits.

    ``vanilla``: binary cross-entropy with logits (Goodfellow et al. 2014); ``lsgan``: mean
    squared error to the target label (Mao et al. 2017). Call ``loss(prediction, target_is_real)``.
    The loss is computed in float32, also under autocast.
    """

    def __init__(self, gan_mode: str = "vanilla", real_label: float = 1.0, fake_label: float = 0.0) -> None:
        super().__init__()
        if gan_mode not in GAN_MODES:
            raise InputError(f"unknown GAN objective {gan_mode!r}; choose from {', '.join(GAN_MODES)}")
        self.gan_mode = gan_mode
        self.register_buffer("real_label", torch.tensor(float(real_label)))
        self.register_buffer("fake_label", torch.tensor(float(fake_label)))

    def forward(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        prediction = prediction.float()
        target = (self.real_label if target_is_real else self.fake_label).expand_as(prediction)
        if self.gan_mode == "vanilla":
            return F.binary_cross_entropy_with_logits(prediction, target)
        return F.mse_loss(prediction, target)


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """Pix2Pix initialisation: convolution weights from N(0, gain), norm weights from N(1, gain),
    biases 0 (draws from the global torch generator: seed it first)."""

    def init(m: nn.Module) -> None:
        name = type(m).__name__
        if hasattr(m, "weight") and m.weight is not None and ("Conv" in name or "Linear" in name):
            nn.init.normal_(m.weight, 0.0, gain)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif "BatchNorm2d" in name and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)

    net.apply(init)
    return net


def define_G(
    in_channels: int,
    out_channels: int = 1,
    depth: int = 6,
    ngf: int = 64,
    norm: str = "batch",
    dropout: float = 0.5,
    dropout_layers: int = 3,
    output: str = "tanh",
    init_gain: float = 0.02,
    upsample: str = "transpose",
) -> UnetGenerator:
    """A :class:`UnetGenerator`, initialised; arguments as there (the paper's final model by default)."""
    net = UnetGenerator(in_channels, out_channels, depth, ngf, norm, dropout, dropout_layers, output, upsample)
    return init_weights(net, init_gain)


def define_D(
    in_channels: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch", init_gain: float = 0.02
) -> PatchDiscriminator:
    """A :class:`PatchDiscriminator`, initialised; arguments as there."""
    return init_weights(PatchDiscriminator(in_channels, ndf, n_layers, norm), init_gain)


def set_requires_grad(nets: nn.Module | Iterable[nn.Module | None], requires_grad: bool) -> None:
    """Switch gradients of all parameters of ``nets`` on or off (freeze D while G learns)."""
    if isinstance(nets, nn.Module):
        nets = [nets]
    for net in nets:
        if net is not None:
            for p in net.parameters():
                p.requires_grad_(requires_grad)


def one_hot(mask: torch.Tensor, num_classes: int = 5) -> torch.Tensor:
    """``(N, H, W)`` integer labels as ``(N, num_classes, H, W)`` float one-hot maps.

    Raises:
        InputError: A label outside ``0..num_classes - 1``.
    """
    mask = mask.long()
    if mask.ndim == 4 and mask.shape[1] == 1:
        mask = mask[:, 0]
    if mask.numel() and (int(mask.min()) < 0 or int(mask.max()) >= num_classes):
        raise InputError(f"mask labels must lie in 0..{num_classes - 1}, found {int(mask.min())}..{int(mask.max())}")
    return F.one_hot(mask, num_classes).permute(0, 3, 1, 2).float()


class ImagePool:
    """A buffer of earlier generated samples (Shrivastava et al. 2017, as in CycleGAN).

    ``query(batch)`` returns a batch of the same size where each element is, with probability
    one half once the pool is full, an older generated sample (which the new one replaces in
    the pool), else the new one. ``pool_size=0`` returns the batch unchanged. Draws come from
    the global torch generator.
    """

    def __init__(self, pool_size: int) -> None:
        self.pool_size = int(pool_size)
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.pool_size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.pool_size:
                self.images.append(image)
                out.append(image)
            elif float(torch.rand(())) > 0.5:
                k = int(torch.randint(0, self.pool_size, ()))
                out.append(self.images[k].clone())
                self.images[k] = image
            else:
                out.append(image)
        return torch.cat(out, 0)


def weighted_l1(prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute difference, weighted per pixel: ``sum(w |p - t|) / sum(w)`` over all pixels
    and channels (``w`` of shape ``(N, 1, H, W)`` broadcasts over channels; None = plain L1).

    With ``w`` the class weight of the label under each pixel this is the reference paper's
    class-weighted L1 (section 3.3.B); normalising by ``sum(w)`` keeps it on the scale of the
    plain L1, so ``lambda`` keeps its meaning whatever the weights. Computed in float32.
    """
    diff = (prediction.float() - target.float()).abs()
    if weight is None:
        return diff.mean()
    weight = weight.float().expand_as(diff)
    return (weight * diff).sum() / weight.sum().clamp_min(1e-12)
