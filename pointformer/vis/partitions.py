"""Pictures of the grouping layouts on a synthetic Waymo-scale frame (``tools/visualize.py partition``)."""

from __future__ import annotations

import torch

from pointformer.ops import voxelize
from pointformer.ops.grouping.presets import PILLAR_LAYOUTS
from pointformer.structures.partition import Partition
from pointformer.vis.bev import render_partition_bev, write_png

# FlatFormer's and DSVT-P's Waymo pillar grid: 468 x 468 pillars of 0.32 m.
PILLAR_SIZE = (0.32, 0.32, 6.0)
PILLAR_RANGE = (-74.88, -74.88, -2.0, 74.88, 74.88, 4.0)

LAYOUTS = PILLAR_LAYOUTS


def render_layout(points: torch.Tensor, layout: str, path: str, scale: int = 2) -> Partition:
    """Voxelizes ``points`` into Waymo pillars, groups them with ``layout`` and writes the BEV PNG."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    v = voxelize(points, PILLAR_SIZE, PILLAR_RANGE)
    partition = LAYOUTS[layout](v.coords, 1, v.grid.shape)
    write_png(path, render_partition_bev(v.coords, partition, v.grid.shape, scale=scale))
    return partition
