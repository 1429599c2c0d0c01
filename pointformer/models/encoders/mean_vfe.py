"""MeanVFE: the mean of each voxel's point features (OpenPCDet's ``MeanVFE``, CenterPoint's encoder)."""

from __future__ import annotations

import torch
from torch import nn

from pointformer.ops import Voxelization, segment_reduce
from pointformer.structures import SparseVoxels


class MeanVFE(nn.Module):
    """Voxel feature = mean of the features of the voxel's kept points; no parameters.

    With a point cap (the detector's ``max_points_per_voxel``, 5 in OpenPCDet's Waymo CenterPoint)
    the mean runs over the kept points only, as OpenPCDet averages the points its voxel generator kept.

    Args:
        in_channels: ``F``, point feature channels; ``out_channels = F``.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"MeanVFE: in_channels must be >= 1, got {in_channels}")
        self.in_channels = self.out_channels = int(in_channels)

    def forward(self, points: torch.Tensor, voxels: Voxelization) -> SparseVoxels:
        """``points``: ``(N, F)``; points with ``point_to_voxel == -1`` are ignored. Returns
        ``(M, F)`` features on ``voxels.coords``."""
        if points.dim() != 2 or points.shape[1] != self.in_channels:
            raise ValueError(f"MeanVFE: points must be (N, {self.in_channels}), got {tuple(points.shape)}")
        if voxels.point_to_voxel.shape != points.shape[:1]:
            raise ValueError(
                f"MeanVFE: point_to_voxel has {voxels.point_to_voxel.shape[0]} entries for {points.shape[0]} points"
            )
        kept = torch.nonzero(voxels.point_to_voxel >= 0).squeeze(1)
        means = segment_reduce(points[kept], voxels.point_to_voxel[kept], voxels.num_voxels, "mean")
        return voxels.to_sparse_voxels(means)
