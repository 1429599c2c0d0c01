"""Grouping ops: the layouts that turn sparse voxels into a ``Partition`` for attention."""

from pointformer.ops.grouping.rotated_sets import (
    PoolingMap,
    RotatedSets,
    dsvt_pooling_map,
    dsvt_window_configs,
    partition_rotated_sets,
)
from pointformer.ops.grouping.windows import window_coords, windows_per_axis

__all__ = [
    "PoolingMap",
    "RotatedSets",
    "dsvt_pooling_map",
    "dsvt_window_configs",
    "partition_rotated_sets",
    "window_coords",
    "windows_per_axis",
]
