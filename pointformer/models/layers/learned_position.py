"""DSVT's learned positional embedding of window-relative voxel coordinates."""

from __future__ import annotations

import torch
from torch import nn


class LearnedPositionEmbedding(nn.Module):
    """An MLP from a voxel's position to a ``C``-wide embedding: ``Linear(d, C) -> BN1d -> ReLU ->
    Linear(C, C)`` (DSVT's ``PositionEmbeddingLearned``).

    DSVT feeds it the voxel's in-window coordinates centred on the window, in cells
    (``window_relative_location``). The BatchNorm normalises over every voxel of the batch in
    training, so training-mode outputs depend on the batch; eval mode is per voxel.

    Args:
        in_dims: ``d``, 2 for ``(x, y)`` or 3 for ``(x, y, z)``.
        channels: ``C``.

    ``(d + 1) * C + 2 * C + (C + 1) * C`` parameters: 38,016 at ``d = 2``, 38,208 at ``d = 3``
    (``C = 192``).
    """

    def __init__(self, in_dims: int, channels: int) -> None:
        super().__init__()
        if in_dims not in (2, 3):
            raise ValueError(f"LearnedPositionEmbedding: in_dims must be 2 or 3, got {in_dims}")
        self.in_dims, self.channels = int(in_dims), int(channels)
        self.mlp = nn.Sequential(
            nn.Linear(in_dims, channels), nn.BatchNorm1d(channels), nn.ReLU(inplace=True), nn.Linear(channels, channels)
        )

    def forward(self, location: torch.Tensor) -> torch.Tensor:
        """``location``: ``(N, d)`` float; returns ``(N, C)`` in the parameters' dtype."""
        if location.dim() != 2 or location.shape[1] != self.in_dims:
            raise ValueError(
                f"LearnedPositionEmbedding: expected (N, {self.in_dims}) locations, got {tuple(location.shape)}"
            )
        weight = self.mlp[0].weight
        return self.mlp(location.to(weight.dtype))


def window_relative_location(
    coords_in_window: torch.Tensor, window_shape: tuple[int, int, int], with_z: bool
) -> torch.Tensor:
    """DSVT's embedding input: in-window coordinates minus half the window, in cells.

    Args:
        coords_in_window: ``(N, 3)`` integer in-window ``(z, y, x)``.
        window_shape: ``(wz, wy, wx)`` cells.
        with_z: append z (3D windows); otherwise ``(x, y)`` only.

    Returns:
        ``(N, 3)`` float32 ``(x - wx / 2, y - wy / 2, z - wz / 2)``, or ``(N, 2)`` without z. Not
        normalised (the published configs set ``normalize_pos: False``).
    """
    wz, wy, wx = window_shape
    z, y, x = coords_in_window.to(torch.float32).unbind(1)
    parts = [x - wx / 2, y - wy / 2] + ([z - wz / 2] if with_z else [])
    return torch.stack(parts, dim=1)
