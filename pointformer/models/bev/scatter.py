"""Sparse voxels to a dense bird's-eye-view map."""

from __future__ import annotations

import torch
from torch import nn

from pointformer.structures import SparseVoxels


class ScatterToBEV(nn.Module):
    """Scatters voxel features onto a dense ``(B, C * Z, Y, X)`` canvas, zeros in empty cells.

    The z cells are folded into channels as ``c * Z + z`` (``SparseVoxels.dense()`` reshaped to
    ``(B, C * Z, Y, X)``); pillars (``Z = 1``) give ``(B, C, Y, X)``.

    Args:
        in_channels: ``C``.
        num_z: ``Z``, the grid's z cells (1 for pillars); ``out_channels = C * Z``. A grid with
            another ``Z`` is refused at forward, so that ``out_channels`` is known when building.
    """

    def __init__(self, in_channels: int, num_z: int = 1) -> None:
        super().__init__()
        if num_z < 1:
            raise ValueError(f"ScatterToBEV: num_z must be >= 1, got {num_z}")
        self.in_channels = int(in_channels)
        self.num_z = int(num_z)
        self.out_channels = self.in_channels * self.num_z
        # Memory format of the canvas (values unchanged): the eval fast path (models.fastpath) asks for
        # channels-last, where every voxel's C features land as one contiguous row.
        self.channels_last = False

    def forward(self, voxels: SparseVoxels) -> torch.Tensor:
        """``voxels``: ``(N, C)`` features, ``(batch, z, y, x)`` coords. Returns ``(B, C * Z, Y, X)``
        in the features' dtype (channels-last strides when ``channels_last``); duplicate coords keep
        one of their rows."""
        if voxels.num_channels != self.in_channels:
            raise ValueError(f"ScatterToBEV: expected {self.in_channels} channels, got {voxels.num_channels}")
        z, y, x = voxels.spatial_shape
        if z != self.num_z:
            raise ValueError(f"ScatterToBEV: built for Z = {self.num_z} z cells, the grid has {voxels.spatial_shape}")
        c = voxels.coords.long()
        if self.channels_last:
            # (B, Y * X, C, Z): channel c * Z + z of cell (y, x) is element [b, y * X + x, c, z].
            canvas = voxels.features.new_zeros(voxels.batch_size, y * x, self.in_channels, z)
            canvas[c[:, 0], c[:, 2] * x + c[:, 3], :, c[:, 1]] = voxels.features
            return canvas.view(voxels.batch_size, y, x, self.in_channels * z).permute(0, 3, 1, 2)
        cell = (c[:, 1] * y + c[:, 2]) * x + c[:, 3]
        canvas = voxels.features.new_zeros(voxels.batch_size, self.in_channels, z * y * x)
        # Advanced indices around a slice: the (N, C) rows land at canvas[b, :, cell].
        canvas[c[:, 0], :, cell] = voxels.features
        return canvas.view(voxels.batch_size, self.in_channels * z, y, x)
