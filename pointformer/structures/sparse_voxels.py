"""SparseVoxels: features on the occupied cells of a voxel grid, batched by concatenation."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class SparseVoxels:
    """Sparse voxel features of a batch of samples.

    Attributes:
        features: ``(N, C)`` floating features, one row per occupied voxel.
        coords: ``(N, 4)`` int32 voxel coordinates ``(batch, z, y, x)`` (spconv order), in cells of
            this tensor's grid (i.e. after ``stride``).
        spatial_shape: ``(Z, Y, X)`` cells of this tensor's grid.
        batch_size: number of samples; a sample may have no voxels.
        stride: ``(z, y, x)`` cell size relative to the input voxel grid.

    The structure is immutable: ``replace_features`` returns a new one that shares coordinates
    and the derived-data cache (partitions keyed by layout), which stay valid for the same coords.
    """

    features: torch.Tensor
    coords: torch.Tensor
    spatial_shape: tuple[int, int, int]
    batch_size: int
    stride: tuple[int, int, int] = (1, 1, 1)
    _cache: dict[Hashable, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.features.dim() != 2:
            raise ValueError(f"SparseVoxels.features must have shape (N, C), got {tuple(self.features.shape)}")
        if self.coords.dim() != 2 or self.coords.shape[1] != 4 or self.coords.dtype != torch.int32:
            raise ValueError(
                f"SparseVoxels.coords must be int32 (N, 4) as (batch, z, y, x), got {self.coords.dtype} "
                f"{tuple(self.coords.shape)}"
            )
        if self.coords.shape[0] != self.features.shape[0]:
            raise ValueError(
                f"SparseVoxels.features has {self.features.shape[0]} rows but coords has {self.coords.shape[0]}"
            )
        if self.coords.device != self.features.device:
            raise ValueError("SparseVoxels.features and coords must be on the same device")
        if len(self.spatial_shape) != 3 or self.batch_size < 1:
            raise ValueError(
                f"SparseVoxels needs spatial_shape (Z, Y, X) and batch_size >= 1, got "
                f"{self.spatial_shape} and {self.batch_size}"
            )
        object.__setattr__(self, "spatial_shape", tuple(int(s) for s in self.spatial_shape))
        object.__setattr__(self, "stride", tuple(int(s) for s in self.stride))

    @property
    def num_voxels(self) -> int:
        return self.features.shape[0]

    @property
    def num_channels(self) -> int:
        return self.features.shape[1]

    @property
    def device(self) -> torch.device:
        return self.features.device

    def replace_features(self, features: torch.Tensor) -> SparseVoxels:
        """Same voxels with new ``(N, C')`` features; coordinates and cache are shared."""
        return SparseVoxels(features, self.coords, self.spatial_shape, self.batch_size, self.stride, self._cache)

    def cached(self, key: Hashable, compute: Callable[[], T]) -> T:
        """Derived data for this layout (a partition, say), computed once and shared."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def batch_counts(self) -> torch.Tensor:
        """``(batch_size,)`` int64: voxels per sample."""
        return torch.bincount(self.coords[:, 0].long(), minlength=self.batch_size)

    def batch_offsets(self) -> torch.Tensor:
        """``(batch_size + 1,)`` int64 offsets (cu_seqlens) of each sample's rows.

        Meaningful when rows are grouped by sample, as ``voxelize`` returns them.
        """
        counts = self.batch_counts()
        return torch.cat([counts.new_zeros(1), counts.cumsum(0)])

    def to(self, device: torch.device | str) -> SparseVoxels:
        """A copy on ``device`` (never in place); the cache is not carried over."""
        return SparseVoxels(
            self.features.to(device), self.coords.to(device), self.spatial_shape, self.batch_size, self.stride
        )

    def dense(self) -> torch.Tensor:
        """``(batch_size, C, Z, Y, X)`` dense tensor with zeros in empty cells."""
        z, y, x = self.spatial_shape
        out = self.features.new_zeros(self.batch_size, z, y, x, self.num_channels)
        c = self.coords.long()
        out[c[:, 0], c[:, 1], c[:, 2], c[:, 3]] = self.features
        return out.permute(0, 4, 1, 2, 3).contiguous()
