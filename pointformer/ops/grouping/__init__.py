"""Grouping ops: the layouts that turn sparse voxels into a ``Partition`` for attention."""

from pointformer.ops.grouping.windows import window_coords, windows_per_axis

__all__ = ["window_coords", "windows_per_axis"]
