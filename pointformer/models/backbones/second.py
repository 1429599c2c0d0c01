"""SECOND's 2D BEV backbone, with FlatFormer's residual option."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int, stride: int, eps: float, momentum: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels, eps=eps, momentum=momentum),
        nn.ReLU(inplace=True),
    )


class SECOND(nn.Module):
    """Stages of 3x3 Conv (no bias) + BatchNorm + ReLU: per stage one conv with the stage's
    stride, then ``layer_nums[i]`` convs with stride 1.

    With ``residual`` (FlatFormer's addition) every conv-BN-ReLU unit whose output has its input's
    shape is added to its input: ``x = unit(x) + x``.

    Args:
        in_channels: channels of the BEV input.
        out_channels: channels of each stage.
        layer_nums: extra stride-1 units per stage.
        strides: stride of each stage's first conv.
        residual: the residual connections above.
        norm_eps, norm_momentum: BatchNorm2d settings.

    701,952 parameters at 128 in, ``(64, 128)``, ``(3, 3)``, ``(1, 2)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: Sequence[int] = (64, 128),
        layer_nums: Sequence[int] = (3, 3),
        strides: Sequence[int] = (1, 2),
        residual: bool = True,
        norm_eps: float = 1e-3,
        norm_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        if not len(out_channels) == len(layer_nums) == len(strides):
            raise ValueError(
                f"SECOND: out_channels, layer_nums and strides need one entry per stage, got "
                f"{len(out_channels)}, {len(layer_nums)}, {len(strides)}"
            )
        self.in_channels = int(in_channels)
        self.out_channels = tuple(int(c) for c in out_channels)
        self.strides = tuple(int(s) for s in strides)
        self.residual = residual
        stages = []
        previous = self.in_channels
        for out, num, stride in zip(self.out_channels, layer_nums, self.strides, strict=True):
            units = [conv_bn_relu(previous, out, stride, norm_eps, norm_momentum)]
            units += [conv_bn_relu(out, out, 1, norm_eps, norm_momentum) for _ in range(num)]
            stages.append(nn.ModuleList(units))
            previous = out
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x``: ``(B, in_channels, H, W)``. Returns one ``(B, out_channels[i], H_i, W_i)`` map per
        stage, ``H_i = H / prod(strides[:i + 1])`` (rounded up)."""
        outputs = []
        for stage in self.stages:
            for unit in stage:
                y = unit(x)
                x = y + x if self.residual and y.shape == x.shape else y
            outputs.append(x)
        return outputs
