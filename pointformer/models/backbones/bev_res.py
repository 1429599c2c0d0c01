"""DSVT's residual BEV backbone (OpenPCDet ``BaseBEVResBackbone``), its stages only."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pointformer.models.layers.basic_block2d import BasicBlock2d


class BEVResBackbone(nn.Module):
    """Stages of residual basic blocks; returns every stage's map (multi-scale).

    Stage ``i`` is one ``BasicBlock2d`` with stride ``strides[i]`` and a 1x1 projection shortcut
    (always, as OpenPCDet's, even where the shape is kept), then ``layer_nums[i]`` plain blocks.

    OpenPCDet's module also holds the upsampling "deblocks" (ConvTranspose2d + BN + ReLU per stage,
    concatenated); here they are the ``SECONDFPN`` neck, which has the same layers and parameters,
    so ``BEVResBackbone`` + ``SECONDFPN`` is the official ``BACKBONE_2D``. DSVT on Waymo (192 BEV
    channels; stages (128, 128, 256), blocks (1, 2, 2), strides (1, 2, 2); neck 3 x 128 at
    (1, 2, 4)): 4,872,704 + 606,976 = 5,479,680 parameters, output ``(B, 384, H, W)`` at stride 1.

    Args:
        in_channels: channels of the BEV input.
        out_channels: channels of each stage.
        layer_nums: plain blocks after each stage's strided block.
        strides: stride of each stage's first block.
        norm_eps, norm_momentum: BatchNorm2d settings.

    Initialisation: PyTorch's defaults (the official module has no ``init_weights``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: Sequence[int] = (128, 128, 256),
        layer_nums: Sequence[int] = (1, 2, 2),
        strides: Sequence[int] = (1, 2, 2),
        norm_eps: float = 1e-3,
        norm_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        if not len(out_channels) == len(layer_nums) == len(strides) or not out_channels:
            raise ValueError(
                f"BEVResBackbone: out_channels, layer_nums and strides need one entry per stage, got "
                f"{len(out_channels)}, {len(layer_nums)}, {len(strides)}"
            )
        if min(strides) < 1 or min(layer_nums) < 0:
            raise ValueError(f"BEVResBackbone: strides must be >= 1 and layer_nums >= 0, got {strides}, {layer_nums}")
        self.in_channels = int(in_channels)
        self.out_channels = tuple(int(c) for c in out_channels)
        self.strides = tuple(int(s) for s in strides)
        norm = dict(norm_eps=norm_eps, norm_momentum=norm_momentum)
        stages, previous = [], self.in_channels
        for out, num, stride in zip(self.out_channels, layer_nums, self.strides, strict=True):
            blocks = [BasicBlock2d(previous, out, stride, projection=True, **norm)]
            blocks += [BasicBlock2d(out, out, **norm) for _ in range(int(num))]
            stages.append(nn.Sequential(*blocks))
            previous = out
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x``: ``(B, in_channels, H, W)``. Returns per stage ``(B, out_channels[i], H_i, W_i)``,
        ``H_i = ceil(H_{i-1} / strides[i])``."""
        if x.shape[1] != self.in_channels:
            raise ValueError(f"BEVResBackbone: expected {self.in_channels} input channels, got {x.shape[1]}")
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs
