"""Random sparse voxel batches and small helpers shared by the backbone tests."""

from __future__ import annotations

import torch

from pointformer.structures import SparseVoxels


def count(module: torch.nn.Module) -> int:
    """Parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


def random_voxels(counts, channels, grid, generator, dtype=torch.float32) -> SparseVoxels:
    """Distinct random voxels of a ``(Z, Y, X)`` grid, ``counts[b]`` in sample b, rows grouped by sample."""
    z, y, x = grid
    rows = []
    for b, n in enumerate(counts):
        cell = torch.randperm(z * y * x, generator=generator)[:n]
        rows.append(torch.stack([torch.full_like(cell, b), cell // (y * x), (cell // x) % y, cell % x], 1))
    coords = torch.cat(rows).int()
    features = torch.randn(coords.shape[0], channels, generator=generator, dtype=dtype)
    return SparseVoxels(features, coords, grid, len(counts))


def sample_alone(voxels: SparseVoxels, b: int) -> SparseVoxels:
    """Sample ``b`` alone, as a batch of one."""
    keep = voxels.coords[:, 0] == b
    coords = voxels.coords[keep].clone()
    coords[:, 0] = 0
    return SparseVoxels(voxels.features[keep], coords, voxels.spatial_shape, 1, voxels.stride)
