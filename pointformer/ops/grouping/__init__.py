"""Grouping ops: the layouts that turn sparse voxels into a ``Partition`` for attention."""

from pointformer.ops.grouping.flattened import flattened_window_keys, partition_flattened
from pointformer.ops.grouping.windows import window_coords, windows_per_axis

__all__ = ["flattened_window_keys", "partition_flattened", "window_coords", "windows_per_axis"]
