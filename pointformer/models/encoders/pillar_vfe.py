"""PillarVFE: OpenPCDet's PointPillars encoder, whose pillars are zero-padded to a fixed point count.

OpenPCDet's ``PillarVFE`` runs on the hard voxelization's ``(M, T, F)`` tensor: every pillar holds
its first ``T`` points (``MAX_POINTS_PER_VOXEL``) and rows of zeros after them. The decorated inputs
of the padding rows are zeroed, but the layers then run on every row: a padding row's first output is
``ReLU(BN(0))``, a per-channel constant that is not 0 wherever the BatchNorm shift is positive, and
later layers see it concatenated with the pillar's max. So the max over a pillar with fewer than
``T`` points also takes a padding row's value, and the ReLU does not make that moot (it would only for
a BatchNorm-free layer without bias). A checkpoint trained with OpenPCDet expects these semantics;
``DynamicVFE`` (OpenPCDet's ``DynPillarVFE``, no padding) gives other features for the same weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pointformer.models.encoders.dynamic_vfe import DynamicVFE
from pointformer.ops import Voxelization
from pointformer.structures import SparseVoxels, VoxelGrid


class PillarVFE(DynamicVFE):
    """``DynamicVFE``'s layers over each pillar's kept points plus OpenPCDet's zero padding rows.

    Every pillar with ``n < T`` kept points (``T = max_points_per_voxel``, the detector's cap) also
    pools the rows a zero-padded ``(M, T, F)`` tensor has for it: zero decorated inputs, run through
    every layer like a point. In training all ``T - n`` padding rows of a pillar enter the BatchNorm
    batch statistics, as in OpenPCDet; in evaluation (running statistics) the padding rows of a pillar
    are identical and one per pillar gives the same max.

    Args:
        in_channels, grid, feat_channels, with_cluster_center, with_voxel_center, with_absolute_xyz,
            norm_eps, norm_momentum: as ``DynamicVFE`` (OpenPCDet's ``NUM_FILTERS [64, 64]`` is
            ``feat_channels [32, 64]``: its first layer's 64 = 32 per point + 32 pooled).
        max_points_per_voxel: ``T``, derived by the builder from ``voxelization.max_points_per_voxel``
            (OpenPCDet's ``MAX_POINTS_PER_VOXEL``); must be a positive cap.
    """

    def __init__(
        self,
        in_channels: int,
        grid: VoxelGrid,
        max_points_per_voxel: int,
        feat_channels: Sequence[int] = (32, 64),
        with_cluster_center: bool = True,
        with_voxel_center: bool = True,
        with_absolute_xyz: bool = True,
        norm_eps: float = 1e-3,
        norm_momentum: float = 0.01,
    ) -> None:
        if max_points_per_voxel is None or int(max_points_per_voxel) < 1:
            raise ValueError(
                "PillarVFE pads every pillar to voxelization.max_points_per_voxel points (OpenPCDet "
                f"MAX_POINTS_PER_VOXEL): it needs a positive cap, got {max_points_per_voxel}; use DynamicVFE "
                "for dynamic pillars (OpenPCDet DynPillarVFE)"
            )
        super().__init__(in_channels, grid, feat_channels, with_cluster_center, with_voxel_center,
                         with_absolute_xyz, norm_eps, norm_momentum)  # fmt: skip
        self.max_points_per_voxel = int(max_points_per_voxel)

    def padding_rows(self, voxels: Voxelization) -> torch.Tensor:
        """``(R,)`` int64 voxel of each padding row: ``T - n`` rows per pillar of ``n < T`` kept points
        in training, one in evaluation."""
        counts = voxels.num_points.long()
        if (counts > self.max_points_per_voxel).any():
            raise ValueError(
                f"PillarVFE: a voxel holds {int(counts.max())} points, more than its padded size "
                f"{self.max_points_per_voxel}: voxelize with max_points_per_voxel={self.max_points_per_voxel}"
            )
        missing = self.max_points_per_voxel - counts
        if not self.training:
            missing = missing.clamp(max=1)
        return torch.repeat_interleave(torch.arange(counts.shape[0], device=counts.device), missing)

    def forward(self, points: torch.Tensor, voxels: Voxelization) -> SparseVoxels:
        """As ``DynamicVFE.forward``, with the padding rows pooled too; ``voxels`` must come from a
        voxelization capped at ``max_points_per_voxel``."""
        self._check_inputs(points, voxels)
        kept = torch.nonzero(voxels.point_to_voxel >= 0).squeeze(1)
        voxel_of_point = voxels.point_to_voxel[kept]
        decorated = self.point_inputs(points[kept], voxel_of_point, voxels)
        pad = self.padding_rows(voxels)
        features = torch.cat([decorated, decorated.new_zeros(pad.shape[0], decorated.shape[1])])
        return self.pool(features, torch.cat([voxel_of_point, pad]), voxels)
