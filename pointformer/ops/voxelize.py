"""Voxelization: which voxel of a regular grid each point falls into.

Public: ``voxelize`` and its result ``Voxelization``; ``voxelize_reference`` is the pure-PyTorch
implementation that the native kernels (csrc/voxelize/) are tested against.

Conventions:
  * A point is inside when ``range_min <= p < range_max`` on every axis (half-open, compared in
    the points' dtype) and its cell index ``floor((p - range_min) / voxel_size)`` is inside the
    grid (float rounding right below ``range_max`` can otherwise give one cell too many).
    NaN and inf coordinates are outside. Outside points get ``point_to_voxel == -1``.
  * ``coords`` are sorted lexicographically by ``(batch, z, y, x)``.
  * Dynamic voxelization (the default) keeps every inside point. Hard voxelization caps:
    ``max_points_per_voxel`` keeps each voxel's first points in input order;
    ``max_voxels`` (per sample) keeps the sample's voxels whose first point comes earliest in the
    input (the first-come rule of spconv's PointToVoxel and mmcv's hard voxelization). Dropped
    points get -1. Both rules are deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from pointformer.ops import _library
from pointformer.structures.grid import VoxelGrid
from pointformer.structures.sparse_voxels import SparseVoxels


@dataclass(frozen=True)
class Voxelization:
    """Result of ``voxelize`` for ``N`` points and ``M`` occupied voxels.

    Attributes:
        point_to_voxel: ``(N,)`` int64 row of each point's voxel in ``coords``, -1 if dropped.
        coords: ``(M, 4)`` int32 ``(batch, z, y, x)``, sorted lexicographically.
        num_points: ``(M,)`` int32 points assigned to each voxel (after ``max_points_per_voxel``).
        grid: the voxel grid.
        batch_size: number of samples.
        all_points_kept: True when no entry of ``point_to_voxel`` is -1 (the exported graph's
            input, ``pointformer.export``: encoders then skip selecting the kept points, whose
            count depends on the data).
    """

    point_to_voxel: torch.Tensor
    coords: torch.Tensor
    num_points: torch.Tensor
    grid: VoxelGrid
    batch_size: int
    all_points_kept: bool = False

    @property
    def num_voxels(self) -> int:
        return self.coords.shape[0]

    def to_sparse_voxels(self, features: torch.Tensor) -> SparseVoxels:
        """``SparseVoxels`` over these voxels with ``(M, C)`` per-voxel ``features`` (e.g. the
        ``segment_reduce`` of point features by ``point_to_voxel``)."""
        return SparseVoxels(features, self.coords, self.grid.shape, self.batch_size)


def voxelize(
    points: torch.Tensor,
    voxel_size: Sequence[float],
    point_cloud_range: Sequence[float],
    batch_index: torch.Tensor | None = None,
    max_points_per_voxel: int = -1,
    max_voxels: int = -1,
    batch_size: int | None = None,
) -> Voxelization:
    """Assigns points to the voxels of a regular grid (see the module docstring for the rules).

    Args:
        points: ``(N, C)`` float32/float64, ``C >= 3``, columns x, y, z (metres) first.
        voxel_size: ``(sx, sy, sz)`` metres.
        point_cloud_range: ``(x_min, y_min, z_min, x_max, y_max, z_max)`` metres.
        batch_index: ``(N,)`` integer sample of each point (points of a batch concatenated), or
            None for a single sample.
        max_points_per_voxel: -1 (no cap) or > 0.
        max_voxels: per-sample cap on voxels, -1 (no cap) or > 0.
        batch_size: number of samples; default ``batch_index.max() + 1`` (1 without batch_index).
    """
    grid = VoxelGrid.from_config(point_cloud_range, voxel_size)
    if points.dim() != 2 or points.shape[1] < 3:
        raise ValueError(f"voxelize: points must have shape (N, >=3) with x, y, z first, got {tuple(points.shape)}")
    if points.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"voxelize: points must be float32 or float64, got {points.dtype}")
    if max_points_per_voxel != -1 and max_points_per_voxel <= 0:
        raise ValueError(f"voxelize: max_points_per_voxel must be -1 or > 0, got {max_points_per_voxel}")
    if max_voxels != -1 and max_voxels <= 0:
        raise ValueError(f"voxelize: max_voxels must be -1 or > 0, got {max_voxels}")
    if batch_index is not None:
        if batch_index.shape != (points.shape[0],) or batch_index.dtype.is_floating_point:
            raise ValueError(
                f"voxelize: batch_index must be an integer tensor of shape ({points.shape[0]},), got "
                f"{batch_index.dtype} {tuple(batch_index.shape)}"
            )
        batch_index = batch_index.to(device=points.device, dtype=torch.int64)
        if batch_size is None:
            batch_size = int(batch_index.max()) + 1 if batch_index.numel() else 1
        if batch_index.numel() and (int(batch_index.min()) < 0 or int(batch_index.max()) >= batch_size):
            raise ValueError(f"voxelize: batch_index values must lie in [0, {batch_size})")
    batch_size = 1 if batch_size is None else int(batch_size)
    if batch_size < 1:
        raise ValueError(f"voxelize: batch_size must be >= 1, got {batch_size}")
    _check_grid_fits(grid, batch_size)

    if _library.has_kernel("voxelize", points.device):
        p2v, coords, num_points = torch.ops.pointformer.voxelize(
            points, batch_index, batch_size, list(grid.voxel_size), list(grid.range_min), list(grid.range_max),
            list(grid.shape), max_points_per_voxel, max_voxels,
        )  # fmt: skip
    else:
        p2v, coords, num_points = voxelize_reference(
            points, grid, batch_index, batch_size, max_points_per_voxel, max_voxels
        )
    return Voxelization(p2v, coords, num_points, grid, batch_size)


_INT32_MAX = 2**31 - 1


def _check_grid_fits(grid: VoxelGrid, batch_size: int) -> None:
    if max(grid.shape) > _INT32_MAX:
        raise ValueError(
            f"voxelize: grid shape {grid.shape} (Z, Y, X) overflows int32 voxel coordinates; use larger voxels "
            f"or a smaller point_cloud_range"
        )
    if batch_size * grid.num_cells >= 2**62:
        raise ValueError(f"voxelize: batch_size {batch_size} x grid {grid.shape} cells overflows int64 voxel keys")


def voxel_keys_reference(
    points: torch.Tensor, grid: VoxelGrid, batch_index: torch.Tensor | None, batch_size: int
) -> torch.Tensor:
    """``(N,)`` int64 linear voxel key ``((b * Z + z) * Y + y) * X + x`` of each point, -1 when
    dropped: the arithmetic of csrc/common/voxel_grid.h, step for step."""
    xyz = points[:, :3]
    lo = torch.tensor(grid.range_min, dtype=points.dtype, device=points.device)
    hi = torch.tensor(grid.range_max, dtype=points.dtype, device=points.device)
    size = torch.tensor(grid.voxel_size, dtype=points.dtype, device=points.device)
    shape_xyz = torch.tensor(grid.shape_xyz, device=points.device)
    inside = ((xyz >= lo) & (xyz < hi)).all(dim=1)
    cell_f = torch.floor((xyz - lo) / size)
    cell = torch.where(inside[:, None], cell_f, torch.zeros_like(cell_f)).long()
    inside &= ((cell >= 0) & (cell < shape_xyz)).all(dim=1)
    batch = torch.zeros_like(inside, dtype=torch.int64) if batch_index is None else batch_index.long()
    inside &= (batch >= 0) & (batch < batch_size)
    size_x, size_y, size_z = grid.shape_xyz
    key = ((batch * size_z + cell[:, 2]) * size_y + cell[:, 1]) * size_x + cell[:, 0]
    return torch.where(inside, key, torch.full_like(key, -1))


def decode_voxel_keys(keys: torch.Tensor, grid: VoxelGrid) -> torch.Tensor:
    """``(M, 4)`` int32 ``(batch, z, y, x)`` of linear voxel keys."""
    size_x, size_y, size_z = grid.shape_xyz
    x = keys % size_x
    y = (keys // size_x) % size_y
    z = (keys // (size_x * size_y)) % size_z
    b = keys // (size_x * size_y * size_z)
    return torch.stack([b, z, y, x], dim=1).to(torch.int32)


def voxelize_reference(
    points: torch.Tensor,
    grid: VoxelGrid,
    batch_index: torch.Tensor | None,
    batch_size: int,
    max_points_per_voxel: int = -1,
    max_voxels: int = -1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pure-PyTorch voxelize: ``(point_to_voxel, coords, num_points)`` as the native op returns."""
    n = points.shape[0]
    device = points.device
    keys = voxel_keys_reference(points, grid, batch_index, batch_size)
    valid = torch.nonzero(keys >= 0).squeeze(1)
    voxel_keys, inverse, counts = torch.unique(keys[valid], sorted=True, return_inverse=True, return_counts=True)
    num_voxels = voxel_keys.shape[0]

    # Rank of each point inside its voxel, in input order; the first point of each voxel.
    order = torch.argsort(inverse, stable=True)
    run_start = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(inverse)
    rank[order] = torch.arange(valid.shape[0], device=device) - run_start[inverse[order]]
    first_point = valid[order[run_start]]

    new_id = torch.arange(num_voxels, device=device)
    if max_voxels > 0 and num_voxels > max_voxels:
        sample = voxel_keys // grid.num_cells
        by_arrival = torch.argsort(sample * n + first_point)
        sample_start = torch.searchsorted(sample, torch.arange(batch_size, device=device))
        rank_in_sample = torch.arange(num_voxels, device=device) - sample_start[sample[by_arrival]]
        kept = torch.empty(num_voxels, dtype=torch.bool, device=device)
        kept[by_arrival] = rank_in_sample < max_voxels
        new_id = torch.where(kept, torch.cumsum(kept.long(), 0) - 1, torch.full_like(new_id, -1))
    else:
        kept = torch.ones(num_voxels, dtype=torch.bool, device=device)

    point_id = new_id[inverse]
    if max_points_per_voxel > 0:
        point_id = torch.where(rank < max_points_per_voxel, point_id, torch.full_like(point_id, -1))
    point_to_voxel = torch.full((n,), -1, dtype=torch.int64, device=device)
    point_to_voxel[valid] = point_id
    if max_points_per_voxel > 0:
        counts = counts.clamp(max=max_points_per_voxel)
    coords = decode_voxel_keys(voxel_keys[kept], grid)
    return point_to_voxel, coords, counts[kept].to(torch.int32)


@_library.register_fake("voxelize")
def _voxelize_fake(points, batch_index, batch_size, voxel_size, range_min, range_max, grid_shape,
                   max_points_per_voxel, max_voxels):  # fmt: skip
    num_voxels = torch.library.get_ctx().new_dynamic_size()
    return (
        points.new_empty(points.shape[0], dtype=torch.int64),
        points.new_empty(num_voxels, 4, dtype=torch.int32),
        points.new_empty(num_voxels, dtype=torch.int32),
    )
