"""No 3D backbone: the encoder's pillars go straight to the BEV scatter (PointPillars, CenterPoint-Pillar)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from pointformer.structures import SparseVoxels


class IdentityBackbone3D(nn.Module):
    """Passes the voxel encoder's ``SparseVoxels`` through unchanged; no parameters. OpenPCDet's
    pillar detectors (``PillarVFE`` / ``DynPillarVFE`` -> ``PointPillarScatter``) have no
    ``BACKBONE_3D``.

    Args:
        in_channels: the encoder's ``out_channels``; ``out_channels`` is the same.
        sparse_shape: the grid's ``(Z, Y, X)`` cells; ``out_spatial_shape`` is the same.
    """

    def __init__(self, in_channels: int, sparse_shape: Sequence[int]) -> None:
        super().__init__()
        self.in_channels = self.out_channels = int(in_channels)
        self.out_spatial_shape = tuple(int(s) for s in sparse_shape)

    def forward(self, voxels: SparseVoxels) -> SparseVoxels:
        """``voxels``: ``(N, C)`` features on ``(batch, z, y, x)`` coords. Returns ``voxels``."""
        if voxels.num_channels != self.in_channels:
            raise ValueError(f"IdentityBackbone3D: expected {self.in_channels} channels, got {voxels.num_channels}")
        return voxels
