"""The 2D residual block of the BEV backbones of DSVT (OpenPCDet ``BaseBEVResBackbone``) and
ScatterFormer (HEDNet's ``DEDBackbone``)."""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock2d(nn.Module):
    """ResNet basic block on a BEV map::

        out = ReLU(BN(Conv3x3(ReLU(BN(Conv3x3/stride(x))))) + shortcut(x))

    ``shortcut`` is the identity, or with ``projection`` a 1x1 Conv (stride ``stride``, no bias) +
    BN, as OpenPCDet's ``BasicBlock(downsample=True)``. Convs have no bias (a BatchNorm follows).

    Args:
        in_channels, out_channels: channels in and out.
        stride: stride of the first 3x3 conv (and of the projection); 1 or 2 in practice. A map of
            odd size ``n`` gives ``ceil(n / 2)`` (padding 1).
        projection: the 1x1 projection shortcut; required when the shape changes.
        norm_eps, norm_momentum: BatchNorm2d settings (OpenPCDet: 1e-3, 0.01).

    Parameters: ``9 c_in c_out + 9 c_out^2 + 4 c_out`` (+ ``c_in c_out + 2 c_out`` with the
    projection): 295,424 at 128 -> 128.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        projection: bool = False,
        norm_eps: float = 1e-3,
        norm_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        if not projection and (stride != 1 or in_channels != out_channels):
            raise ValueError(
                f"BasicBlock2d: {in_channels} -> {out_channels} channels at stride {stride} changes the shape, "
                "which needs projection=True"
            )
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels, eps=norm_eps, momentum=norm_momentum)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels, eps=norm_eps, momentum=norm_momentum)
        self.projection = (
            nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels, eps=norm_eps, momentum=norm_momentum),
            )
            if projection
            else None
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W)`` -> ``(B, out_channels, ceil(H / stride), ceil(W / stride))``."""
        shortcut = x if self.projection is None else self.projection(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)
