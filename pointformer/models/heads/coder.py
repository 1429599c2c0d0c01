"""The BEV box coder: boxes <-> per-cell regression values of a center head.

A head's dense maps cover the voxel grid downsampled by ``out_size_factor``: map cell ``(iy, ix)``
spans ``[range_min + i * cell_size, range_min + (i + 1) * cell_size)`` along each axis, with
``cell_size = voxel_size * out_size_factor`` (its centre is at ``i + 0.5``).

A box assigned to cell ``(iy, ix)`` regresses (CenterPoint's encoding, in this column order):
``[off_x, off_y, z, log dx, log dy, log dz, sin heading, cos heading(, vx, vy)]`` where
``off = centre / cell_size - index`` is the sub-cell position of the box centre in cells, in ``[0, 1)``
(measured from the cell's low corner, so 0.5 is the cell centre), ``z`` the box centre height in
metres, sizes in metres, heading counter-clockwise from +x in radians, velocity in m/s.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pointformer.structures import VoxelGrid

# Regression columns: centre offset (2), z (1), log sizes (3), sin/cos heading (2), velocity (2).
CODE_SIZE_NO_VELOCITY = 8
CODE_SIZE = 10


@dataclass(frozen=True)
class BEVCoder:
    """Encodes and decodes boxes against one BEV map.

    Attributes:
        range_min: ``(x_min, y_min)`` in metres, the low corner of cell (0, 0).
        cell_size: ``(sx, sy)`` in metres, the size of one map cell.
    """

    range_min: tuple[float, float]
    cell_size: tuple[float, float]

    @classmethod
    def from_grid(cls, grid: VoxelGrid, out_size_factor: int) -> BEVCoder:
        vx, vy = grid.voxel_size[0], grid.voxel_size[1]
        return cls((grid.range_min[0], grid.range_min[1]), (vx * out_size_factor, vy * out_size_factor))

    def cell_coords(self, xy: torch.Tensor) -> torch.Tensor:
        """``(N, 2)`` continuous map coordinates ``(cx, cy)`` in cells of metric ``(N, 2)`` points."""
        lo = xy.new_tensor(self.range_min)
        size = xy.new_tensor(self.cell_size)
        return (xy - lo) / size

    def encode(self, boxes: torch.Tensor, ix: torch.Tensor, iy: torch.Tensor, with_velocity: bool) -> torch.Tensor:
        """Regression targets ``(N, 10)`` (``(N, 8)`` without velocity) of ``(N, >=7|9)`` boxes assigned to
        the cells ``(iy, ix)`` (int64 ``(N,)`` each)."""
        cxy = self.cell_coords(boxes[:, :2])
        offset = cxy - torch.stack([ix, iy], dim=1).to(cxy.dtype)
        columns = [
            offset,
            boxes[:, 2:3],
            torch.log(boxes[:, 3:6]),
            torch.sin(boxes[:, 6:7]),
            torch.cos(boxes[:, 6:7]),
        ]
        if with_velocity:
            if boxes.shape[1] >= 9:
                columns.append(boxes[:, 7:9])
            else:
                columns.append(boxes.new_zeros(boxes.shape[0], 2))
        return torch.cat(columns, dim=1)

    def decode(self, code: torch.Tensor, ix: torch.Tensor, iy: torch.Tensor) -> torch.Tensor:
        """Boxes ``(..., 7)`` (or ``(..., 9)`` when ``code`` has velocity columns) from regression values
        ``(..., 8|10)`` predicted at the cells ``(iy, ix)`` (``(...)`` each, any integer or float dtype)."""
        x = (ix.to(code.dtype) + code[..., 0]) * self.cell_size[0] + self.range_min[0]
        y = (iy.to(code.dtype) + code[..., 1]) * self.cell_size[1] + self.range_min[1]
        # exp of an untrained head can overflow; sizes above e^20 m are meaningless anyway.
        dims = torch.exp(code[..., 3:6].clamp(max=20.0))
        heading = torch.atan2(code[..., 6], code[..., 7])
        columns = [x[..., None], y[..., None], code[..., 2:3], dims, heading[..., None]]
        if code.shape[-1] >= CODE_SIZE:
            columns.append(code[..., 8:10])
        return torch.cat(columns, dim=-1)
