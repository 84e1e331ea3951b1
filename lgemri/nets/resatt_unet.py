"""The attention-residual U-Net that segments the LV-centred crops (ResAtt-U-Net).

The reference web-based LGE paper (Omar et al., "Web-Based Cardiac Delayed Enhanced MRI
Segmentation Using Deep Learning and Synthetic Data Augmentation", section 3.4.A) segments
128 x 128 crops into the five EMIDEC classes with an attention residual U-Net: five down- and
up-sampling stages, blocks of two convolutions with batch normalisation and ReLU joined by a
residual connection, and attention gates on the skip connections (Oktay et al., "Attention U-Net:
Learning Where to Look for the Pancreas", arXiv:1804.03999, 2018; the residual-attention U-Net
of Li et al., Applied Sciences 12(14):7241, 2022). This module builds it from MONAI blocks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks import Convolution, ResidualUnit
from monai.networks.nets.attentionunet import AttentionBlock

from ..errors import InputError

__all__ = ["ResAttUNet", "DEFAULT_CHANNELS", "DEFAULT_STRIDES"]

DEFAULT_CHANNELS = (16, 32, 64, 96, 128, 160)
DEFAULT_STRIDES = (2, 2, 2, 2, 2)


class ResAttUNet(nn.Module):
    """Attention-residual U-Net (ResAtt-U-Net) for 2D or 3D segmentation, returning logits.

    Encoder: a residual unit at full resolution followed by one strided residual unit per stride.
    Decoder: per stage a transposed convolution (2 x 2 with stride 2 by default, as in
    Ronneberger et al.'s U-Net: no checkerboard overlap, and 4/9 of the weights of a 3 x 3 one), an
    attention gate (Oktay et al. 2018, MONAI's ``AttentionBlock``) that weighs the skip
    connection by the upsampled coarser features, and a residual unit on the concatenation.
    Every residual unit is MONAI's ``ResidualUnit(subunits=2)``: two convolutions, each followed
    by batch norm, ``nn.Dropout`` and ReLU, plus a (strided) residual convolution. A 1 x 1
    convolution gives the class logits.

    Dropout sits in every residual unit, so Monte-Carlo dropout works at inference: see
    :func:`lgemri.nets.enable_mc_dropout`.

    Inputs whose spatial size is not a multiple of ``prod(strides)`` are padded (replicating the
    edge) before the encoder and the logits are cropped back, so any size works; 128 x 128 crops
    need no padding with the default strides (the bottleneck is 4 x 4).

    Defaults (2D, 1 input channel, 5 classes, ``channels=(16, 32, 64, 96, 128, 160)``):
    2,359,116 parameters, a 9.56 MB checkpoint (:func:`lgemri.nets.checkpoint.save_checkpoint`);
    a forward pass of a 10 x 1 x 128 x 128 batch in eval mode under ``torch.inference_mode``
    took 0.19 s (median of 10 runs; fastest 0.16 s) with ``torch.set_num_threads(2)`` and
    0.29 s with one thread on the development CPU (2 cores shared with other jobs; torch 2.13).
    The wider ``(16, 32, 64, 128, 192, 256)`` has 4.7-5.2 M parameters (19-21 MB), over the
    10 MB budget; the cost is at the coarse levels, the time at the fine ones.

    References:
        Omar N. et al., "Web-Based Cardiac Delayed Enhanced MRI Segmentation Using Deep Learning
        and Synthetic Data Augmentation" (ResAtt-U-Net, five stages, class-weighted loss).
        Oktay O. et al., "Attention U-Net: Learning Where to Look for the Pancreas",
        arXiv:1804.03999, 2018.
        Li Z. et al., "Residual-Attention U-Net++", Applied Sciences 12(14):7241, 2022.

    Args:
        spatial_dims: 2 or 3.
        in_channels: Input channels (1 for the LGE crop, 2 with the stage-1 cavity mask).
        out_channels: Output classes (logits).
        channels: Feature channels per resolution level, finest first; one more than strides.
        strides: Down-sampling factor of each stage (``len(channels) - 1`` stages).
        dropout: Dropout probability in every residual unit (element-wise ``nn.Dropout``).
        kernel_size: Convolution kernel size of the residual units.
        up_kernel_size: Kernel size of the transposed convolutions (a stage of stride 1 uses
            the next odd size, so that every stage exactly multiplies the size by its stride).

    Raises:
        InputError: Bad dimensions, channel/stride lengths or dropout.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 5,
        channels: Sequence[int] = DEFAULT_CHANNELS,
        strides: Sequence[int] = DEFAULT_STRIDES,
        dropout: float = 0.1,
        kernel_size: int = 3,
        up_kernel_size: int = 2,
    ) -> None:
        super().__init__()
        channels, strides = tuple(int(c) for c in channels), tuple(int(s) for s in strides)
        if spatial_dims not in (2, 3):
            raise InputError(f"ResAttUNet: spatial_dims must be 2 or 3, got {spatial_dims}")
        if len(channels) < 2 or len(strides) != len(channels) - 1:
            raise InputError(
                f"ResAttUNet: need one more channel count than strides, got channels={channels}, strides={strides}"
            )
        if min(channels) < 1 or min(strides) < 1 or in_channels < 1 or out_channels < 1:
            raise InputError("ResAttUNet: channels, strides, in_channels and out_channels must be positive")
        if not 0.0 <= float(dropout) < 1.0:
            raise InputError(f"ResAttUNet: dropout must lie in [0, 1), got {dropout}")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.channels = channels
        self.strides = strides
        self.dropout = float(dropout)
        self.divisor = math.prod(strides)

        def residual(cin: int, cout: int, stride: int) -> ResidualUnit:
            return ResidualUnit(
                spatial_dims,
                cin,
                cout,
                strides=stride,
                kernel_size=kernel_size,
                subunits=2,
                act="relu",
                norm="batch",
                dropout=self.dropout,
                dropout_dim=1,
            )

        self.encoder = nn.ModuleList([residual(in_channels, channels[0], 1)])
        for level, stride in enumerate(strides, start=1):
            self.encoder.append(residual(channels[level - 1], channels[level], stride))
        self.up = nn.ModuleList()
        self.gates = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for level in range(len(strides), 0, -1):  # coarsest first
            fine, coarse = channels[level - 1], channels[level]
            stride = strides[level - 1]
            kernel = up_kernel_size if stride > 1 else 2 * (up_kernel_size // 2) + 1  # odd for stride 1
            padding = (kernel - 1) // 2
            output_padding = stride - kernel + 2 * padding  # output size exactly stride x input size
            if not 0 <= output_padding < stride:
                raise InputError(f"ResAttUNet: up_kernel_size {up_kernel_size} does not fit stride {stride}")
            self.up.append(
                Convolution(
                    spatial_dims,
                    coarse,
                    fine,
                    strides=stride,
                    kernel_size=kernel,
                    act="relu",
                    norm="batch",
                    is_transposed=True,
                    padding=padding,
                    output_padding=output_padding,
                )
            )
            self.gates.append(AttentionBlock(spatial_dims, f_int=max(fine // 2, 1), f_g=fine, f_l=fine))
            self.decoder.append(residual(2 * fine, fine, 1))
        self.head = Convolution(spatial_dims, channels[0], out_channels, kernel_size=1, conv_only=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, out_channels, *spatial)`` for an input ``(N, in_channels, *spatial)``."""
        size = x.shape[2:]
        pad = [(-n) % self.divisor for n in size]
        if any(pad):
            widths = [w for p in reversed(pad) for w in (0, p)]  # last axis first for F.pad
            x = F.pad(x, widths, mode="replicate")
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for up, gate, block in zip(self.up, self.gates, self.decoder):
            skip = skips.pop()
            x = up(x)
            x = block(torch.cat((gate(g=x, x=skip), x), dim=1))
        x = self.head(x)
        if any(pad):
            x = x[(Ellipsis, *(slice(0, n) for n in size))]
        return x
