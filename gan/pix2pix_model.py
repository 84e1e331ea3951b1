"""Pix2Pix: a 5-class EMIDEC mask in, an LGE image out (Isola et al. 2017; Omar et al. 3.3).

- Generator: :class:`~gan.networks.UnetGenerator` on the one-hot mask (5 x 128 x 128), by
  default the paper's final model: depth 6, dropout 0.5, ``tanh``, with resize-convolution
  up-sampling (``upsample="resize"``: nearest x2 + 3 x 3 convolution) instead of the reference
  implementation's 4 x 4 stride-2 transposed convolutions (``upsample="transpose"``), which drew
  checkerboard artefacts on real EMIDEC slices (see gan/README.md, "Checkerboard-free generator
  on real EMIDEC slices"). Checkpoints written before the option existed store no ``upsample``
  and load with transposed convolutions, as they were trained.
- Discriminator: PatchGAN on ``(mask one-hot, image)`` (``d_input="mask+image"``; the paper's
  trials also tried ``image`` only).
- Generator loss: ``GAN + lambda_l1 * weighted L1``, the L1 weighted per pixel by the class
  weight of the mask label under it (:func:`lgemri.losses.class_weights` of the training masks'
  class frequencies, the weights of the segmentation loss), ``lambda_l1 = 100``.
- Discriminator loss: ``(GAN(D(real), real) + GAN(D(fake), fake)) / 2``; ``vanilla`` or ``lsgan``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

import torch
from pydantic import Field

from lgemri.config import Count, NonNegative, Rate
from lgemri.errors import InputError

from .base_model import BaseModel, CommonOptions
from .metrics.psnr_ssim import lv_region, psnr, ssim
from .networks import (
    GAN_MODES,
    NORMS,
    OUTPUTS,
    UPSAMPLES,
    GANLoss,
    define_D,
    define_G,
    one_hot,
    set_requires_grad,
    weighted_l1,
)

__all__ = ["Pix2PixOptions", "Pix2PixModel", "D_INPUTS"]

D_INPUTS = ("mask+image", "image")


@dataclasses.dataclass
class Pix2PixOptions(CommonOptions):
    """Pix2Pix settings (defaults: the reference paper's final model, Table I trial 5).

    Attributes:
        depth: U-Net levels (6: 128 -> 2 at the bottleneck, 5 skip connections).
        ngf: Generator channels of the first level.
        ndf: Discriminator channels of the first layer.
        n_layers_d: PatchGAN stride-2 layers (3: 70 x 70 patches).
        norm: ``batch``, ``instance`` or ``none`` (both networks).
        dropout: Generator dropout (the Pix2Pix noise); 0 for none.
        output: Generator output, ``tanh`` or ``sigmoid``.
        gan_mode: ``vanilla`` or ``lsgan``.
        lambda_l1: Weight of the class-weighted L1 term.
        d_input: What D sees: ``mask+image`` (conditional) or ``image``.
        upsample: Generator up-sampling, ``resize`` (nearest x2 + 3 x 3 convolution, no
            checkerboard artefacts) or ``transpose`` (4 x 4 stride-2 transposed convolutions, the
            reference Pix2Pix and every checkpoint written before this option existed).
    """

    depth: Annotated[int, Field(ge=2)] = 6
    ngf: Count = 64
    ndf: Count = 64
    n_layers_d: Count = 3
    norm: Literal[NORMS] = "batch"
    dropout: Rate = 0.5
    output: Literal[OUTPUTS] = "tanh"
    gan_mode: Literal[GAN_MODES] = "vanilla"
    lambda_l1: NonNegative = 100.0
    d_input: Literal[D_INPUTS] = "mask+image"
    upsample: Literal[UPSAMPLES] = "resize"

    # Fields added after checkpoints were first written, with the value that rebuilds what those
    # checkpoints were trained with. A checkpoint stores every field of its day (``asdict``), so
    # a mapping that holds all the older fields but lacks one of these comes from such a file.
    LEGACY: ClassVar[dict[str, Any]] = {"upsample": "transpose"}


class Pix2PixModel(BaseModel):
    """Mask -> LGE Pix2Pix (see the module docstring)."""

    name = "pix2pix"
    Options = Pix2PixOptions
    loss_names = ("G_GAN", "G_L1", "G", "D_real", "D_fake", "D")
    visual_names = ("mask", "real_B", "fake_B")
    model_names = ("G", "D")
    inference_names = ("G",)
    data_kind = "paired"
    score = ("val_psnr", "max")

    @classmethod
    def make_options(cls, options: Any = None) -> Pix2PixOptions:
        """As :meth:`BaseModel.make_options`; stored options of a checkpoint written before a
        field of :attr:`Pix2PixOptions.LEGACY` existed get that field's old value (an old
        ``best.pt`` / ``last.pt`` rebuilds transposed convolutions, also on ``--resume``)."""
        if isinstance(options, Mapping) and not isinstance(options, cls.Options):
            older = {f.name for f in dataclasses.fields(cls.Options)} - set(Pix2PixOptions.LEGACY)
            if older <= set(options):
                options = {**Pix2PixOptions.LEGACY, **options}
        return super().make_options(options)

    def build(self) -> None:
        o = self.opt
        self.netG = define_G(o.num_classes, 1, o.depth, o.ngf, o.norm, o.dropout, output=o.output, upsample=o.upsample)
        self.netD = None
        if self.is_train:
            d_in = 1 + (o.num_classes if o.d_input == "mask+image" else 0)
            self.netD = define_D(d_in, o.ndf, o.n_layers_d, o.norm)
            self.criterion_gan = GANLoss(o.gan_mode).to(self.device)
            self.optimizer_G = self.make_optimizer([self.netG])
            self.optimizer_D = self.make_optimizer([self.netD])
            self.optimizers = [self.optimizer_G, self.optimizer_D]

    def set_input(self, batch: Mapping[str, Any]) -> None:
        self.mask = batch["mask"].to(self.device).long()
        self.real_A = one_hot(self.mask, self.opt.num_classes)
        self.real_B = batch["image"].to(self.device).float() if "image" in batch else None

    def forward(self) -> None:
        self.fake_B = self.netG(self.real_A)

    def _d_input(self, image: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.real_A, image], 1) if self.opt.d_input == "mask+image" else image

    def backward_D(self) -> None:
        with self.autocast():  # separate forwards: batch norm must not see real and fake together
            pred_fake = self.netD(self._d_input(self.fake_B.detach()))
            pred_real = self.netD(self._d_input(self.real_B))
        self.loss_D_fake = self.criterion_gan(pred_fake, False)
        self.loss_D_real = self.criterion_gan(pred_real, True)
        self.loss_D = 0.5 * (self.loss_D_fake + self.loss_D_real)
        self.backward(self.loss_D)

    def backward_G(self) -> None:
        with self.autocast():
            pred_fake = self.netD(self._d_input(self.fake_B))
        self.loss_G_GAN = self.criterion_gan(pred_fake, True)
        self.loss_G_L1 = weighted_l1(self.fake_B, self.real_B, self.pixel_weights(self.mask))
        self.loss_G = self.loss_G_GAN + self.opt.lambda_l1 * self.loss_G_L1
        self.backward(self.loss_G)

    def optimize_parameters(self) -> None:
        if self.real_B is None:
            raise InputError("pix2pix training needs batches with 'image'")
        with self.autocast():
            self.forward()
        set_requires_grad(self.netD, True)
        self.optimizer_D.zero_grad(set_to_none=True)
        self.backward_D()
        self.step(self.optimizer_D, [self.netD])
        set_requires_grad(self.netD, False)
        self.optimizer_G.zero_grad(set_to_none=True)
        self.backward_G()
        self.step(self.optimizer_G, [self.netG])
        self.end_step()

    def validation_metrics(self) -> dict[str, torch.Tensor]:
        fake, real = self.fake_B.float(), self.real_B.float()
        weights = self.pixel_weights(self.mask)
        l1 = ((fake - real).abs() * weights).flatten(1).sum(1) / weights.flatten(1).sum(1)
        lv = lv_region(self.mask)
        return {
            "val_psnr": psnr(fake, real, data_range=2.0),
            "val_ssim": ssim(fake, real, data_range=2.0),
            "val_psnr_lv": psnr(fake, real, data_range=2.0, region=lv),
            "val_ssim_lv": ssim(fake, real, data_range=2.0, region=lv),
            "val_l1": l1,
        }

    @torch.no_grad()
    def generate(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Images in [-1, 1], ``(N, 1, H, W)``, for the masks of ``batch``."""
        self.set_input(batch)
        self.test()
        return self.fake_B.float()
