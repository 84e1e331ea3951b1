"""The small U-Net that finds the left ventricle on a coarse whole slice.

It sees :func:`lgemri.nets.preprocess.localization_input` (the slice at 3 mm, 128 x 128) and
predicts LV versus background (:func:`lgemri.nets.preprocess.localization_target`); the centre of
its LV mask places the 128 x 128 crop that the segmentation network sees. The reference paper
uses an nnU-Net-style localization stage (Omar et al., section 3.1.D); a plain residual U-Net
(Ronneberger et al. 2015, MONAI's ``UNet``) is enough for this coarse task.
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.networks.nets import UNet

__all__ = ["Localizer", "LOCALIZER_CHANNELS"]

LOCALIZER_CHANNELS = (8, 16, 32, 64)


class Localizer(UNet):
    """MONAI ``UNet`` with defaults for LV localization: 2 classes, 4 levels, 1 residual unit each.

    With the defaults it has 51,777 parameters and a forward pass of a 10 x 1 x 128 x 128 batch in
    eval mode takes about 0.01 s with ``torch.set_num_threads(2)`` on the development CPU.

    Args:
        spatial_dims: 2 (or 3).
        in_channels: Input channels.
        out_channels: Output classes (logits); 2 = background, LV.
        channels: Feature channels per level, finest first.
        strides: Down-sampling factor of each stage (``len(channels) - 1``).
        dropout: Dropout probability.
        num_res_units: Residual units per block.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 2,
        channels: Sequence[int] = LOCALIZER_CHANNELS,
        strides: Sequence[int] | None = None,
        dropout: float = 0.0,
        num_res_units: int = 1,
    ) -> None:
        channels = tuple(int(c) for c in channels)
        if strides is None:
            strides = (2,) * (len(channels) - 1)
        super().__init__(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            channels=channels,
            strides=tuple(int(s) for s in strides),
            num_res_units=num_res_units,
            dropout=dropout,
        )
