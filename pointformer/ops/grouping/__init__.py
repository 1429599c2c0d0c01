"""Grouping ops: the layouts that turn sparse voxels into a ``Partition`` for attention."""

from pointformer.ops.grouping.rotated_sets import (
    PoolingMap,
    RotatedSets,
    dsvt_pooling_map,
    dsvt_window_configs,
    partition_rotated_sets,
)
from pointformer.ops.grouping.scattered import partition_scattered, scattered_window_key
from pointformer.ops.grouping.serialized import partition_serialized, serialization_codes
from pointformer.ops.grouping.windows import window_coords, windows_per_axis

__all__ = [
    "PoolingMap",
    "RotatedSets",
    "dsvt_pooling_map",
    "dsvt_window_configs",
    "partition_rotated_sets",
    "partition_scattered",
    "partition_serialized",
    "scattered_window_key",
    "serialization_codes",
    "window_coords",
    "windows_per_axis",
]
