"""DynamicVFE: a PointNet over the points of each voxel (mmdet3d's dynamic voxel feature encoder)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pointformer.models.layers.pooled_pointnet import pooled_linear_bn_relu
from pointformer.ops import Voxelization, segment_reduce
from pointformer.structures import SparseVoxels, VoxelGrid


class DynamicVFE(nn.Module):
    """Per-point features pooled into per-voxel features (dynamic voxelization: no point cap).

    Each kept point gets ``[features (F), offset to its voxel's point mean (3, metres), offset to
    its voxel's centre (3, metres)]``. Every layer is Linear (no bias) + BatchNorm1d + ReLU over
    points followed by a max over each voxel's points; for every layer but the last, each point's
    output is concatenated with its voxel's max (so layer ``i > 0`` takes ``2 * feat_channels[i-1]``
    channels). The last layer's max is the voxel feature.

    Args:
        in_channels: ``F``, point feature channels (x, y, z first, in metres).
        grid: the voxel grid the points were voxelized on (for the voxel centres).
        feat_channels: output channels of each layer.
        with_cluster_center: add the offset to the mean of the voxel's kept points.
        with_voxel_center: add the offset to the voxel centre, ``range_min + (index + 0.5) * size``.
        with_absolute_xyz: keep the points' own x, y, z among the inputs (mmdet3d and FlatFormer do;
            OpenPCDet's ``USE_ABSLOTE_XYZ: False`` drops them). Without them a layer sees where a
            point lies in its voxel but not where the voxel is; with the voxel-centre offset, a
            pillar's z offset still carries the absolute height.
        norm_eps, norm_momentum: BatchNorm1d settings (FlatFormer: 1e-3, 0.01).
    """

    def __init__(
        self,
        in_channels: int,
        grid: VoxelGrid,
        feat_channels: Sequence[int] = (64, 128),
        with_cluster_center: bool = True,
        with_voxel_center: bool = True,
        with_absolute_xyz: bool = True,
        norm_eps: float = 1e-3,
        norm_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        if in_channels < 3:
            raise ValueError(f"DynamicVFE: in_channels must be >= 3 (x, y, z first), got {in_channels}")
        if len(feat_channels) < 1:
            raise ValueError("DynamicVFE: feat_channels needs at least one layer")
        self.in_channels = int(in_channels)
        self.grid = grid
        self.with_cluster_center = with_cluster_center
        self.with_voxel_center = with_voxel_center
        self.with_absolute_xyz = with_absolute_xyz
        # (x, y, z) order, to match the point columns; kept as buffers so they follow .to(device).
        self.register_buffer("voxel_size", torch.tensor(grid.voxel_size, dtype=torch.float32), persistent=False)
        self.register_buffer("range_min", torch.tensor(grid.range_min, dtype=torch.float32), persistent=False)
        own = self.in_channels if with_absolute_xyz else self.in_channels - 3
        channels = own + 3 * int(with_cluster_center) + 3 * int(with_voxel_center)
        layers = []
        for i, out in enumerate(feat_channels):
            in_ch = channels if i == 0 else 2 * feat_channels[i - 1]
            layers.append(
                nn.Sequential(
                    nn.Linear(in_ch, out, bias=False),
                    nn.BatchNorm1d(out, eps=norm_eps, momentum=norm_momentum),
                    nn.ReLU(inplace=True),
                )
            )
        self.layers = nn.ModuleList(layers)
        self.out_channels = int(feat_channels[-1])
        # Set by the inference fast path (pointformer.models.fastpath): in eval mode the last layer
        # takes its product with the previous layer's pooled half of its input once per voxel
        # (``pooled_linear_bn_relu``'s ``segment_inputs``) instead of once per point.
        self.per_voxel_shared_inputs = False

    def point_inputs(self, points: torch.Tensor, voxel_of_point: torch.Tensor, voxels: Voxelization) -> torch.Tensor:
        """``(P, F + 6)`` decorated inputs of the kept points (``(P, F + 3)`` without the absolute
        x, y, z; ``voxel_of_point`` ``(P,)`` int64)."""
        parts = [points if self.with_absolute_xyz else points[:, 3:]]
        xyz = points[:, :3]
        if self.with_cluster_center:
            mean = segment_reduce(xyz, voxel_of_point, voxels.num_voxels, "mean")
            parts.append(xyz - mean[voxel_of_point])
        if self.with_voxel_center:
            # coords are (b, z, y, x): flip to (x, y, z) cell indices.
            cell = voxels.coords[voxel_of_point][:, [3, 2, 1]].to(points.dtype)
            size, low = self.voxel_size.to(points.dtype), self.range_min.to(points.dtype)
            parts.append(xyz - (low + (cell + 0.5) * size))
        return torch.cat(parts, dim=1)

    def forward(self, points: torch.Tensor, voxels: Voxelization) -> SparseVoxels:
        """Voxel features from points.

        Args:
            points: ``(N, F)`` float32 points (x, y, z metres first), the input of ``voxelize``.
            voxels: the voxelization of ``points``; points with ``point_to_voxel == -1`` are ignored.

        Returns:
            ``SparseVoxels`` with ``(M, out_channels)`` features on ``voxels.coords``, the grid's
            ``(Z, Y, X)`` shape and ``voxels.batch_size``.
        """
        self._check_inputs(points, voxels)
        if voxels.all_points_kept:  # e.g. the exported graph's inputs: no data-dependent size
            kept_points, voxel_of_point = points, voxels.point_to_voxel
        else:
            kept = torch.nonzero(voxels.point_to_voxel >= 0).squeeze(1)
            kept_points, voxel_of_point = points[kept], voxels.point_to_voxel[kept]
        return self.pool(self.point_inputs(kept_points, voxel_of_point, voxels), voxel_of_point, voxels)

    def _check_inputs(self, points: torch.Tensor, voxels: Voxelization) -> None:
        name = type(self).__name__
        if points.dim() != 2 or points.shape[1] != self.in_channels:
            raise ValueError(f"{name}: points must be (N, {self.in_channels}), got {tuple(points.shape)}")
        if voxels.point_to_voxel.shape != points.shape[:1]:
            raise ValueError(
                f"{name}: point_to_voxel has {voxels.point_to_voxel.shape[0]} entries for {points.shape[0]} points"
            )

    def pool(self, features: torch.Tensor, voxel_of_point: torch.Tensor, voxels: Voxelization) -> SparseVoxels:
        """The layers over ``(P, C)`` decorated rows (``point_inputs``) of voxels ``voxel_of_point``
        ``(P,)`` int64, each layer's output max-pooled per voxel; the last layer's max as
        ``SparseVoxels`` on ``voxels``."""
        shared = None  # the previous layer's max per voxel, the second half of the next layer's input
        for layer in self.layers[:-1]:
            if shared is not None:
                features = torch.cat([features, shared[voxel_of_point]], dim=1)
            features = layer(features)
            shared = segment_reduce(features, voxel_of_point, voxels.num_voxels, "max")
        if shared is not None and not self.per_voxel_shared_inputs:
            features, shared = torch.cat([features, shared[voxel_of_point]], dim=1), None
        # The last layer's per-point outputs are only max-pooled: compute them in pooled form.
        linear, norm, _ = self.layers[-1]
        pooled = pooled_linear_bn_relu(features, voxel_of_point, voxels.num_voxels, linear, norm, shared)
        return voxels.to_sparse_voxels(pooled)
