"""Pictures of the grouping layouts on a synthetic Waymo-scale frame (``tools/visualize.py partition``)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from pointformer.ops import voxelize
from pointformer.structures.partition import Partition
from pointformer.vis.bev import render_partition_bev, write_png

# FlatFormer's and DSVT-P's Waymo pillar grid: 468 x 468 pillars of 0.32 m.
PILLAR_SIZE = (0.32, 0.32, 6.0)
PILLAR_RANGE = (-74.88, -74.88, -2.0, 74.88, 74.88, 4.0)

LayoutFn = Callable[[torch.Tensor, int, tuple[int, int, int]], Partition]


def _flattened(axis: str, shift: bool) -> LayoutFn:
    def build(coords, batch_size, shape):
        from pointformer.ops.grouping import partition_flattened

        return partition_flattened(coords, batch_size, shape, (1, 13, 13), 144, axis=axis, shift=shift)

    return build


def _rotated_sets(order: int, shifted: bool) -> LayoutFn:
    def build(coords, batch_size, shape):
        from pointformer.ops.grouping import partition_rotated_sets

        window, shift = ((1, 24, 24), (0, 6, 6)) if shifted else ((1, 12, 12), (0, 0, 0))
        return partition_rotated_sets(coords, batch_size, shape, window, 36, shift).partitions[order]

    return build


def _scattered(coords, batch_size, shape):
    from pointformer.ops.grouping import partition_scattered

    return partition_scattered(coords, batch_size, shape, (1, 12, 12))


def _serialized(order: str) -> LayoutFn:
    def build(coords, batch_size, shape):
        from pointformer.ops.grouping import partition_serialized

        return partition_serialized(coords, batch_size, order=order, patch_size=1024)

    return build


# The settings of each method's Waymo model.
LAYOUTS: dict[str, LayoutFn] = {
    "flattened-x": _flattened("x", False),
    "flattened-x-shift": _flattened("x", True),
    "flattened-y": _flattened("y", False),
    "flattened-y-shift": _flattened("y", True),
    "rotated-sets-y": _rotated_sets(0, False),
    "rotated-sets-x": _rotated_sets(1, False),
    "rotated-sets-y-shift": _rotated_sets(0, True),
    "rotated-sets-x-shift": _rotated_sets(1, True),
    "scattered": _scattered,
    "serialized-z": _serialized("z"),
    "serialized-z-trans": _serialized("z-trans"),
    "serialized-hilbert": _serialized("hilbert"),
    "serialized-hilbert-trans": _serialized("hilbert-trans"),
}


def render_layout(points: torch.Tensor, layout: str, path: str, scale: int = 2) -> Partition:
    """Voxelizes ``points`` into Waymo pillars, groups them with ``layout`` and writes the BEV PNG."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    v = voxelize(points, PILLAR_SIZE, PILLAR_RANGE)
    partition = LAYOUTS[layout](v.coords, 1, v.grid.shape)
    write_png(path, render_partition_bev(v.coords, partition, v.grid.shape, scale=scale))
    return partition
