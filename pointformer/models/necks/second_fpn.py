"""SECONDFPN: every backbone stage resampled to one resolution and concatenated."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class SECONDFPN(nn.Module):
    """Per stage ``i``: resample by ``upsample_strides[i]`` to ``out_channels[i]``, BatchNorm, ReLU;
    the results are concatenated along channels.

    A stride ``s >= 1`` is ConvTranspose2d(kernel = stride = s, no bias); a fractional stride
    ``s < 1`` is Conv2d(kernel = stride = round(1 / s), no bias).

    Args:
        in_channels: channels of each backbone stage.
        out_channels: channels of each resampled stage.
        upsample_strides: resampling factor of each stage.
        norm_eps, norm_momentum: BatchNorm2d settings.

    74,240 parameters at ``(64, 128) -> (128, 128)``, strides ``(1, 2)``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: Sequence[int] = (128, 128),
        upsample_strides: Sequence[float] = (1, 2),
        norm_eps: float = 1e-3,
        norm_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        if not len(in_channels) == len(out_channels) == len(upsample_strides):
            raise ValueError(
                f"SECONDFPN: in_channels, out_channels and upsample_strides need one entry per stage, got "
                f"{len(in_channels)}, {len(out_channels)}, {len(upsample_strides)}"
            )
        self.out_channels = int(sum(out_channels))
        blocks = []
        for cin, cout, stride in zip(in_channels, out_channels, upsample_strides, strict=True):
            if stride <= 0:
                raise ValueError(f"SECONDFPN: upsample strides must be > 0, got {stride}")
            if stride >= 1:
                s = int(round(stride))
                resample = nn.ConvTranspose2d(cin, cout, s, stride=s, bias=False)
                # mmdet3d's init for the deconvolutions (Kaiming normal, fan_out, ReLU).
                nn.init.kaiming_normal_(resample.weight, mode="fan_out", nonlinearity="relu")
            else:
                s = int(round(1 / stride))
                resample = nn.Conv2d(cin, cout, s, stride=s, bias=False)
            blocks.append(
                nn.Sequential(
                    resample, nn.BatchNorm2d(cout, eps=norm_eps, momentum=norm_momentum), nn.ReLU(inplace=True)
                )
            )
        self.blocks = nn.ModuleList(blocks)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """``features``: one ``(B, in_channels[i], H_i, W_i)`` map per stage, resampling to a common
        ``(H, W)``. Returns ``(B, out_channels, H, W)``."""
        if len(features) != len(self.blocks):
            raise ValueError(f"SECONDFPN: expected {len(self.blocks)} feature maps, got {len(features)}")
        outs = [block(x) for block, x in zip(self.blocks, features, strict=True)]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
