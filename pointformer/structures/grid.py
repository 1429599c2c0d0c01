"""The voxel grid: the one place where a grid shape is derived from a range and a voxel size."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# A voxel size must divide the range to within this fraction of a cell (float noise, not slack).
_DIVISION_TOLERANCE = 1e-4
_AXES = "xyz"


@dataclass(frozen=True)
class VoxelGrid:
    """A regular grid of voxels over the half-open box ``[range_min, range_max)``.

    Args:
        point_cloud_range: ``(x_min, y_min, z_min, x_max, y_max, z_max)`` in metres, in the
            vehicle/LiDAR frame (x forward, y left, z up).
        voxel_size: ``(sx, sy, sz)`` in metres. Each must divide its extent of the range exactly
            (up to float noise); otherwise ``ValueError`` names the axis and the quotient.

    ``shape`` is ``(Z, Y, X)``, the spconv order used by voxel coordinates ``(batch, z, y, x)``.
    """

    point_cloud_range: tuple[float, float, float, float, float, float]
    voxel_size: tuple[float, float, float]

    def __post_init__(self) -> None:
        rng = tuple(float(v) for v in self.point_cloud_range)
        size = tuple(float(v) for v in self.voxel_size)
        if len(rng) != 6:
            raise ValueError(
                f"point_cloud_range must have 6 numbers (x_min, y_min, z_min, x_max, y_max, z_max), got {len(rng)}"
            )
        if len(size) != 3:
            raise ValueError(f"voxel_size must have 3 numbers (sx, sy, sz), got {len(size)}")
        object.__setattr__(self, "point_cloud_range", rng)
        object.__setattr__(self, "voxel_size", size)
        for d, axis in enumerate(_AXES):
            lo, hi, s = rng[d], rng[d + 3], size[d]
            if not all(math.isfinite(v) for v in (lo, hi, s)):
                raise ValueError(f"point_cloud_range and voxel_size must be finite, got {axis}: [{lo}, {hi}) / {s}")
            if s <= 0:
                raise ValueError(f"voxel_size[{d}] ({axis}) must be > 0, got {s}")
            if hi <= lo:
                raise ValueError(f"point_cloud_range {axis}_max ({hi}) must be greater than {axis}_min ({lo})")
            cells = (hi - lo) / s
            if abs(cells - round(cells)) > _DIVISION_TOLERANCE * max(1.0, round(cells)):
                raise ValueError(
                    f"voxel_size[{d}] = {s} does not divide the {axis} extent {hi - lo:g} m of "
                    f"point_cloud_range ({hi - lo:g} / {s} = {cells:.4f} cells)"
                )

    @classmethod
    def from_config(cls, point_cloud_range: Sequence[float], voxel_size: Sequence[float]) -> VoxelGrid:
        return cls(tuple(point_cloud_range), tuple(voxel_size))  # type: ignore[arg-type]

    @property
    def range_min(self) -> tuple[float, float, float]:
        return self.point_cloud_range[:3]  # type: ignore[return-value]

    @property
    def range_max(self) -> tuple[float, float, float]:
        return self.point_cloud_range[3:]  # type: ignore[return-value]

    @property
    def shape_xyz(self) -> tuple[int, int, int]:
        """Number of cells along x, y, z."""
        return tuple(  # type: ignore[return-value]
            int(round((self.point_cloud_range[d + 3] - self.point_cloud_range[d]) / self.voxel_size[d]))
            for d in range(3)
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(Z, Y, X)``: number of cells along z, y, x."""
        x, y, z = self.shape_xyz
        return (z, y, x)

    @property
    def num_cells(self) -> int:
        return math.prod(self.shape)
