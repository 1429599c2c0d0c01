"""A neck that passes a single-map 2D backbone's output through."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class IdentityNeck(nn.Module):
    """For 2D backbones that already produce the head's map (``CascadeDEDBackbone``): takes the
    backbone's one-map list and returns the map. No parameters.

    Args:
        in_channels: the backbone's ``out_channels``, one entry; ``out_channels`` is that entry.
    """

    def __init__(self, in_channels: Sequence[int] | int) -> None:
        super().__init__()
        channels = (in_channels,) if isinstance(in_channels, int) else tuple(in_channels)
        if len(channels) != 1:
            raise ValueError(
                f"IdentityNeck: the 2D backbone gives {len(channels)} maps {list(channels)}; it passes exactly one "
                "through (use SECONDFPN to merge several)"
            )
        self.out_channels = int(channels[0])

    def forward(self, features: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """``features``: ``[(B, C, H, W)]`` (or the map itself). Returns ``(B, C, H, W)``."""
        if isinstance(features, torch.Tensor):
            return features
        if len(features) != 1:
            raise ValueError(f"IdentityNeck: expected one feature map, got {len(features)}")
        return features[0]
