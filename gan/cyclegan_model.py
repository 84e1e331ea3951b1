"""Modified CycleGAN: cine-like short-axis images with infarct masks (A) <-> LGE (B).

After Zhu et al., "Unpaired image-to-image translation using cycle-consistent adversarial
networks" (ICCV 2017), modified as in the reference paper (Omar et al., section 3.3.G):

- domain A is a cine (bSSFP-like) image with a simulated infarct mask embedded; cine shows the
  anatomy but not the scar, so the mask travels with the image as extra input channels (one-hot),
  and the generator learns to paint the scar where the mask says. Domain B is LGE with its mask;
- generators in both directions, ``G_A: A -> B`` and ``G_B: B -> A`` (U-Nets on image + one-hot
  mask), and discriminators in both, ``D_A`` (real vs generated B) and ``D_B`` (real vs generated
  A), PatchGANs on ``(mask, image)``;
- the cycle loss is weighted by the anatomical mask,
  ``||M . (G_B(G_A(x)) - x)||_1`` (and the same for B), with ``M`` the class weight of the label
  under each pixel (``cycle_weighting="class"``, the weights of the segmentation loss), or 1 on
  the LV (dilated by 3 pixels) and ``background_weight`` elsewhere (``"lv"``), or 1 (``"none"``);
- plus the identity loss ``||M . (G_A(y) - y)||_1`` for ``y`` in B (and ``G_B`` on A), weighted
  ``lambda_identity * lambda_cycle`` as in the original;
- the discriminators see a pool of 50 earlier generated images (Shrivastava et al. 2017).

The unpaired batches come from :class:`gan.data.UnpairedDataset`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from lgemri.config import Count, NonNegative, NonNegativeInt, Rate, Share
from lgemri.errors import InputError

from .base_model import BaseModel, CommonOptions
from .metrics.psnr_ssim import psnr
from .networks import (
    GAN_MODES,
    NORMS,
    OUTPUTS,
    GANLoss,
    ImagePool,
    define_D,
    define_G,
    one_hot,
    set_requires_grad,
    weighted_l1,
)

__all__ = ["CycleGANOptions", "CycleGANModel", "CYCLE_WEIGHTINGS"]

CYCLE_WEIGHTINGS = ("class", "lv", "none")


@dataclasses.dataclass
class CycleGANOptions(CommonOptions):
    """CycleGAN settings.

    Attributes:
        depth, ngf, ndf, n_layers_d, norm, dropout, output: Networks, as for Pix2Pix
            (CycleGAN defaults: instance norm, no dropout).
        gan_mode: ``lsgan`` (CycleGAN's default) or ``vanilla``.
        lambda_cycle: Weight of each cycle loss.
        lambda_identity: Identity loss weight, relative to ``lambda_cycle`` (0 for none).
        condition_on_mask: Feed the one-hot mask to generators and discriminators.
        cycle_weighting: The mask ``M`` of the cycle and identity losses: ``class``, ``lv``
            or ``none``.
        background_weight: Weight outside the LV with ``cycle_weighting="lv"``.
        pool_size: Size of the discriminators' image pools (0: no pool).
    """

    depth: Annotated[int, Field(ge=2)] = 6
    ngf: Count = 64
    ndf: Count = 64
    n_layers_d: Count = 3
    norm: Literal[NORMS] = "instance"
    dropout: Rate = 0.0
    output: Literal[OUTPUTS] = "tanh"
    gan_mode: Literal[GAN_MODES] = "lsgan"
    lambda_cycle: NonNegative = 10.0
    lambda_identity: NonNegative = 0.5
    condition_on_mask: bool = True
    cycle_weighting: Literal[CYCLE_WEIGHTINGS] = "class"
    background_weight: Share = 0.1
    pool_size: NonNegativeInt = 50


class CycleGANModel(BaseModel):
    """Cine (+ mask) <-> LGE CycleGAN with a mask-weighted cycle loss (module docstring)."""

    name = "cyclegan"
    Options = CycleGANOptions
    loss_names = ("D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B", "G")
    visual_names = ("mask_A", "real_A", "fake_B", "rec_A", "mask_B", "real_B", "fake_A", "rec_B")
    model_names = ("G_A", "G_B", "D_A", "D_B")
    inference_names = ("G_A", "G_B")
    data_kind = "unpaired"
    score = ("val_cycle", "min")

    def build(self) -> None:
        o = self.opt
        c_in = 1 + (o.num_classes if o.condition_on_mask else 0)
        self.netG_A = define_G(c_in, 1, o.depth, o.ngf, o.norm, o.dropout, output=o.output)
        self.netG_B = define_G(c_in, 1, o.depth, o.ngf, o.norm, o.dropout, output=o.output)
        self.netD_A = self.netD_B = None
        if self.is_train:
            self.netD_A = define_D(c_in, o.ndf, o.n_layers_d, o.norm)
            self.netD_B = define_D(c_in, o.ndf, o.n_layers_d, o.norm)
            self.criterion_gan = GANLoss(o.gan_mode).to(self.device)
            self.pool_A, self.pool_B = ImagePool(o.pool_size), ImagePool(o.pool_size)
            self.optimizer_G = self.make_optimizer([self.netG_A, self.netG_B])
            self.optimizer_D = self.make_optimizer([self.netD_A, self.netD_B])
            self.optimizers = [self.optimizer_G, self.optimizer_D]

    # -- inputs ----------------------------------------------------------------------------

    def set_input(self, batch: Mapping[str, Any]) -> None:
        dev = self.device
        self.real_A = batch["A"].to(dev).float()
        self.mask_A = batch["mask_A"].to(dev).long()
        self.real_B = batch["B"].to(dev).float() if "B" in batch else None
        self.mask_B = batch["mask_B"].to(dev).long() if "mask_B" in batch else None
        self.paired = batch.get("paired")
        self.oh_A = one_hot(self.mask_A, self.opt.num_classes)
        self.oh_B = one_hot(self.mask_B, self.opt.num_classes) if self.mask_B is not None else None

    def _cond(self, image: torch.Tensor, oh: torch.Tensor) -> torch.Tensor:
        return torch.cat([image, oh.to(image.dtype)], 1) if self.opt.condition_on_mask else image

    def cycle_weights(self, mask: torch.Tensor) -> torch.Tensor | None:
        """The mask ``M`` of the cycle and identity losses, ``(N, 1, H, W)`` (None: all ones)."""
        mode = self.opt.cycle_weighting
        if mode == "none":
            return None
        if mode == "class":
            return self.pixel_weights(mask)
        lv = F.max_pool2d((mask > 0).float().unsqueeze(1), 7, stride=1, padding=3)
        return self.opt.background_weight + (1.0 - self.opt.background_weight) * lv

    # -- the steps -------------------------------------------------------------------------

    def forward(self) -> None:
        self.fake_B = self.netG_A(self._cond(self.real_A, self.oh_A))
        self.rec_A = self.netG_B(self._cond(self.fake_B, self.oh_A))
        if self.real_B is not None:
            self.fake_A = self.netG_B(self._cond(self.real_B, self.oh_B))
            self.rec_B = self.netG_A(self._cond(self.fake_A, self.oh_B))

    def backward_G(self) -> None:
        o = self.opt
        w_a, w_b = self.cycle_weights(self.mask_A), self.cycle_weights(self.mask_B)
        with self.autocast():
            if o.lambda_identity > 0:
                idt_A = self.netG_A(self._cond(self.real_B, self.oh_B))
                idt_B = self.netG_B(self._cond(self.real_A, self.oh_A))
            pred_A = self.netD_A(self._cond(self.fake_B, self.oh_A))
            pred_B = self.netD_B(self._cond(self.fake_A, self.oh_B))
        self.loss_idt_A = self.loss_idt_B = torch.zeros((), device=self.device)
        if o.lambda_identity > 0:
            self.loss_idt_A = weighted_l1(idt_A, self.real_B, w_b) * o.lambda_cycle * o.lambda_identity
            self.loss_idt_B = weighted_l1(idt_B, self.real_A, w_a) * o.lambda_cycle * o.lambda_identity
        self.loss_G_A = self.criterion_gan(pred_A, True)
        self.loss_G_B = self.criterion_gan(pred_B, True)
        self.loss_cycle_A = weighted_l1(self.rec_A, self.real_A, w_a) * o.lambda_cycle
        self.loss_cycle_B = weighted_l1(self.rec_B, self.real_B, w_b) * o.lambda_cycle
        self.loss_G = (
            self.loss_G_A + self.loss_G_B + self.loss_cycle_A + self.loss_cycle_B + self.loss_idt_A + self.loss_idt_B
        )
        self.backward(self.loss_G)

    def _backward_D(self, net, pool: ImagePool, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        fake = pool.query(fake.detach())
        with self.autocast():  # separate forwards, as for Pix2Pix
            pred_fake, pred_real = net(fake), net(real)
        loss = 0.5 * (self.criterion_gan(pred_fake, False) + self.criterion_gan(pred_real, True))
        self.backward(loss)
        return loss

    def optimize_parameters(self) -> None:
        if self.real_B is None or self.mask_B is None:
            raise InputError("cyclegan training needs batches with 'B' and 'mask_B' (domain B)")
        with self.autocast():
            self.forward()
        set_requires_grad([self.netD_A, self.netD_B], False)
        self.optimizer_G.zero_grad(set_to_none=True)
        self.backward_G()
        self.step(self.optimizer_G, [self.netG_A, self.netG_B])
        set_requires_grad([self.netD_A, self.netD_B], True)
        self.optimizer_D.zero_grad(set_to_none=True)
        self.loss_D_A = self._backward_D(
            self.netD_A, self.pool_B, self._cond(self.fake_B, self.oh_A), self._cond(self.real_B, self.oh_B)
        )
        self.loss_D_B = self._backward_D(
            self.netD_B, self.pool_A, self._cond(self.fake_A, self.oh_B), self._cond(self.real_A, self.oh_A)
        )
        self.step(self.optimizer_D, [self.netD_A, self.netD_B])
        self.end_step()

    # -- validation and use ----------------------------------------------------------------

    def validation_metrics(self) -> dict[str, torch.Tensor]:
        w_a, w_b = self.cycle_weights(self.mask_A), self.cycle_weights(self.mask_B)

        def per_sample(pred, target, w):
            diff = (pred.float() - target.float()).abs()
            w = torch.ones_like(diff) if w is None else w.expand_as(diff)
            return (w * diff).flatten(1).sum(1) / w.flatten(1).sum(1)

        cyc = 0.5 * (per_sample(self.rec_A, self.real_A, w_a) + per_sample(self.rec_B, self.real_B, w_b))
        out = {"val_cycle": cyc}
        # with a paired B (same anatomy, e.g. the cine and LGE phantoms of one case) A -> B is scored too
        if self.paired is not None:
            paired = torch.as_tensor(self.paired, device=self.device).bool()
            value = psnr(self.fake_B.float(), self.real_B.float(), data_range=2.0).to(self.device)
            out["val_psnr_ab"] = torch.where(paired, value, torch.full_like(value, math.nan))
        return out

    @torch.no_grad()
    def generate(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """LGE-like images ``G_A(cine, mask)`` in [-1, 1] for ``batch["image"]`` (or ``"A"``) and
        ``batch["mask"]`` (or ``"mask_A"``)."""
        image = batch.get("A", batch.get("image"))
        mask = batch.get("mask_A", batch.get("mask"))
        if image is None or mask is None:
            raise InputError("cyclegan synthesis needs a cine image with each mask (give --images DIR)")
        image = image.to(self.device).float()
        oh = one_hot(mask.to(self.device).long(), self.opt.num_classes)
        with self.autocast():
            return self.netG_A(self._cond(image, oh)).float()
