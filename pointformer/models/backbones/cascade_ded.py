"""ScatterFormer's 2D backbone: HEDNet's cascade of dense encoder-decoder blocks (``CascadeDEDBackbone``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pointformer.models.layers.basic_block2d import BasicBlock2d


class DEDBlock(nn.Module):
    """One dense encoder-decoder (HEDNet's ``DEDBackbone``), ``C`` channels at every level::

        level 0: [projection block (in -> C, stride s0) if in != C or s0 != 1], num_blocks[0] blocks
        level i: BasicBlock2d(C, C, stride s_i, projection), num_blocks[i] blocks     (i >= 1)
        decoder, deepest first: x = BN(ReLU(BN(ConvT(x, kernel = stride = s_i))) + skip_{i-1})

    The output has level 0's resolution. (The official block adds the level-0 projection only when
    ``in != C``; a stride ``s0 != 1`` with ``in == C`` would be silently ignored there and is applied
    here. Every published config has ``s0 = 1``.)

    Args:
        in_channels: input channels.
        channels: ``C``.
        num_blocks: plain blocks per level (the official ``NUM_SBB``).
        strides: per level (the official ``DOWN_STRIDES``).
        norm_eps, norm_momentum: BatchNorm2d settings.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_blocks: Sequence[int],
        strides: Sequence[int],
        norm_eps: float = 1e-3,
        norm_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        if len(num_blocks) != len(strides) or not strides:
            raise ValueError(f"DEDBlock: num_blocks and strides need one entry per level, got {num_blocks}, {strides}")
        if min(strides) < 1 or min(num_blocks) < 0:
            raise ValueError(f"DEDBlock: strides must be >= 1 and num_blocks >= 0, got {strides}, {num_blocks}")
        norm = dict(norm_eps=norm_eps, norm_momentum=norm_momentum)
        self.strides = tuple(int(s) for s in strides)
        encoder = []
        for level, (num, stride) in enumerate(zip(num_blocks, self.strides, strict=True)):
            blocks = []
            cin = in_channels if level == 0 else channels
            if level > 0 or cin != channels or stride != 1:
                blocks.append(BasicBlock2d(cin, channels, stride, projection=True, **norm))
            blocks += [BasicBlock2d(channels, channels, **norm) for _ in range(int(num))]
            encoder.append(nn.Sequential(*blocks))
        self.encoder = nn.ModuleList(encoder)
        # decoder[j] undoes level len - 1 - j (deepest first), as the official ModuleList order.
        self.decoder = nn.ModuleList(
            nn.Sequential(
                nn.ConvTranspose2d(channels, channels, s, stride=s, bias=False),
                nn.BatchNorm2d(channels, eps=norm_eps, momentum=norm_momentum),
                nn.ReLU(inplace=True),
            )
            for s in self.strides[:0:-1]
        )
        self.decoder_norm = nn.ModuleList(
            nn.BatchNorm2d(channels, eps=norm_eps, momentum=norm_momentum) for _ in self.strides[1:]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level in self.encoder:
            x = level(x)
            skips.append(x)
        for deconv, norm, skip in zip(self.decoder, self.decoder_norm, skips[-2::-1], strict=True):
            up = deconv(x)
            if up.shape[-2:] != skip.shape[-2:]:
                raise ValueError(
                    f"DEDBlock: a level of {tuple(skip.shape[-2:])} cells upsampled back from {tuple(x.shape[-2:])} "
                    f"gives {tuple(up.shape[-2:])}; the map size must be divisible by the product of the strides "
                    f"{self.strides}"
                )
            x = norm(up + skip)
        return x


class CascadeDEDBackbone(nn.Module):
    """``num_layers`` ``DEDBlock``s in sequence (HEDNet / ScatterFormer ``CascadeDEDBackbone``).

    Waymo ScatterFormer (128 BEV channels in, ``C = 128``, 4 blocks, levels with (2, 1, 1) plain
    blocks at strides (1, 2, 2)): 4 x 1,937,920 = 7,751,680 parameters; output ``(B, 128, H, W)``
    at the input's resolution (the BEV side must be divisible by 4).

    Args:
        in_channels: channels of the BEV input.
        channels: ``C`` (the official ``FEATURE_DIM``); ``out_channels = (C,)``.
        num_layers: DED blocks (``NUM_LAYERS``).
        num_blocks: plain blocks per level (``NUM_SBB``).
        strides: per level (``DOWN_STRIDES``).
        norm_eps, norm_momentum: BatchNorm2d settings.

    Returns a list with one map (the ``backbone2d`` contract: a list of maps for the neck; pair it
    with ``IdentityNeck``). Initialisation as HEDNet's: Kaiming-normal (fan_out, ReLU) 2D convs,
    PyTorch's defaults for the transposed convs and norms.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int = 128,
        num_layers: int = 4,
        num_blocks: Sequence[int] = (2, 1, 1),
        strides: Sequence[int] = (1, 2, 2),
        norm_eps: float = 1e-3,
        norm_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"CascadeDEDBackbone: num_layers must be >= 1, got {num_layers}")
        self.in_channels = int(in_channels)
        self.out_channels = (int(channels),)
        norm = dict(norm_eps=norm_eps, norm_momentum=norm_momentum)
        self.layers = nn.ModuleList(
            DEDBlock(self.in_channels if i == 0 else channels, channels, num_blocks, strides, **norm)
            for i in range(num_layers)
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x``: ``(B, in_channels, H, W)``. Returns ``[(B, C, H', W')]``, ``H' = H`` with a first
        stride of 1."""
        if x.shape[1] != self.in_channels:
            raise ValueError(f"CascadeDEDBackbone: expected {self.in_channels} input channels, got {x.shape[1]}")
        for layer in self.layers:
            x = layer(x)
        return [x]
