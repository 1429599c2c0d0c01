"""ScatterFormer's cross-window interaction (CWI) followed by its feed-forward network.

ScatterFormer attends only inside fixed BEV windows and never shifts them; information crosses
window borders through this module instead (paper §3.3, official ``CWI_FFN_Layer``)::

    x = BN(x)
    x = x + concat(dwconv_3x3x3(x[g0]), dwconv_x(x[g1]), dwconv_y(x[g2]), x[g3])
    x = x + FC2(ReLU(FC1(BN2(x))))

The channels are split into four groups of ``C // 4`` (the identity group takes the remainder):
a depthwise 3x3x3 submanifold conv, a depthwise conv along x (kernel ``(1, 1, W + 1)``), one along
y (``(1, W + 1, 1)``), and the identity. Two details of the official layer are kept as they are:
the first residual is added to the *normalised* features (the BN output replaces ``x``), so the
identity group enters the sum twice; and the FFN is pre-norm with a residual.
"""

from __future__ import annotations

import torch
from torch import nn

from pointformer.models.layers.sparse_depthwise import SubmanifoldDepthwiseConv3d
from pointformer.structures import SparseVoxels


class CrossWindowInteraction(nn.Module):
    """CWI + FFN of one ScatterFormer block (module docstring).

    Args:
        channels: ``C`` (at least 4).
        kernel_length: length of the 1-D convs along x and y (ScatterFormer: window size + 1, odd).
        ffn_channels: hidden width of the FFN (ScatterFormer: ``2 C``).
        norm_eps, norm_momentum: of both BatchNorm1d.

    Parameters at C = 128, kernel 13, FFN 256: 68,128 (BNs 2 x 256, dw convs 27 x 32 + 2 x 13 x 32,
    FC1 33,024, FC2 32,896).
    """

    def __init__(
        self,
        channels: int,
        kernel_length: int = 13,
        ffn_channels: int | None = None,
        norm_eps: float = 1e-3,
        norm_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        if channels < 4:
            raise ValueError(f"CrossWindowInteraction: channels must be >= 4 (four groups), got {channels}")
        if kernel_length < 1 or kernel_length % 2 == 0:
            raise ValueError(f"CrossWindowInteraction: kernel_length must be odd, got {kernel_length}")
        self.channels = int(channels)
        self.group = self.channels // 4
        ffn_channels = 2 * self.channels if ffn_channels is None else int(ffn_channels)
        self.norm = nn.BatchNorm1d(channels, eps=norm_eps, momentum=norm_momentum)
        self.conv_xyz = SubmanifoldDepthwiseConv3d(self.group, (3, 3, 3))
        self.conv_x = SubmanifoldDepthwiseConv3d(self.group, (1, 1, kernel_length))  # (z, y, x) kernel
        self.conv_y = SubmanifoldDepthwiseConv3d(self.group, (1, kernel_length, 1))
        self.ffn_norm = nn.BatchNorm1d(channels, eps=norm_eps, momentum=norm_momentum)
        self.fc1 = nn.Linear(channels, ffn_channels)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(ffn_channels, channels)

    def forward(self, x: torch.Tensor, voxels: SparseVoxels) -> torch.Tensor:
        """``x``: ``(N, C)`` features on the voxels of ``voxels`` (whose coords give the neighbours;
        its neighbour tables are cached there). Returns ``(N, C)``."""
        g = self.group
        x = self.norm(x)
        mixed = torch.cat(
            [
                self.conv_xyz(x[:, :g], voxels),
                self.conv_x(x[:, g : 2 * g], voxels),
                self.conv_y(x[:, 2 * g : 3 * g], voxels),
                x[:, 3 * g :],
            ],
            dim=1,
        )
        x = x + mixed
        return x + self.fc2(self.act(self.fc1(self.ffn_norm(x))))
