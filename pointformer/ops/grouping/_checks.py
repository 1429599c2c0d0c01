"""Validation of voxel coordinates shared by the grouping layouts."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def check_voxel_coords(
    coords: torch.Tensor, batch_size: int, name: str, sparse_shape: Sequence[int] | None = None
) -> tuple[int, int]:
    """Validates ``(N, 4)`` int32 voxel coords (non-negative, batch below ``batch_size``, inside
    ``sparse_shape`` when given) with one host synchronization. Returns the largest batch index
    and the largest spatial coordinate (-1 and 0 for empty input)."""
    if coords.dim() != 2 or coords.shape[1] != 4 or coords.dtype != torch.int32:
        raise ValueError(
            f"{name}: coords must be int32 (N, 4) (batch, z, y, x), got {coords.dtype} {tuple(coords.shape)}"
        )
    if batch_size < 1:
        raise ValueError(f"{name}: batch_size must be >= 1, got {batch_size}")
    if coords.shape[0] == 0:
        return -1, 0
    low = coords.amin(dim=0)
    high = coords.amax(dim=0)
    low, high = torch.stack([low, high]).tolist()
    if min(low) < 0:
        raise ValueError(f"{name}: voxel coords must be non-negative, got a minimum of {low} (batch, z, y, x)")
    if high[0] >= batch_size:
        raise ValueError(f"{name}: batch index {high[0]} is out of range for batch_size {batch_size}")
    if sparse_shape is not None and any(h >= s for h, s in zip(high[1:], sparse_shape, strict=True)):
        raise ValueError(f"{name}: coords reach {high[1:]} (z, y, x), outside sparse_shape {tuple(sparse_shape)}")
    return high[0], max(high[1:])
