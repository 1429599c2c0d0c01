"""Grouping ops: the layouts that turn sparse voxels into a ``Partition`` for attention.

* ``partition_flattened``: FlatFormer's flattened windows, equal-size groups;
* ``partition_rotated_sets``: DSVT's dynamic sets, y-major and x-major (``dsvt_pooling_map`` for DSVT-V);
* ``partition_scattered``: ScatterFormer's windows as one variable-length sequence;
* ``partition_serialized``: Point Transformer V3-style space-filling-curve patches;
* ``partition_from_sorted``: equal-size groups over voxels already in group order (what the
  flattened and serialized layouts end with).
"""

from pointformer.ops.grouping.assembly import partition_from_sorted, partition_from_sorted_reference
from pointformer.ops.grouping.flattened import flattened_window_keys, partition_flattened
from pointformer.ops.grouping.rotated_sets import (
    PoolingMap,
    RotatedSets,
    dsvt_pooling_map,
    dsvt_window_configs,
    partition_rotated_sets,
)
from pointformer.ops.grouping.scattered import (
    partition_scattered,
    scattered_window_key,
    scattered_window_keys,
    scattered_window_keys_reference,
)
from pointformer.ops.grouping.serialized import partition_serialized, serialization_codes
from pointformer.ops.grouping.windows import window_coords, windows_per_axis

__all__ = [
    "PoolingMap",
    "RotatedSets",
    "dsvt_pooling_map",
    "dsvt_window_configs",
    "flattened_window_keys",
    "partition_flattened",
    "partition_from_sorted",
    "partition_from_sorted_reference",
    "partition_rotated_sets",
    "partition_scattered",
    "partition_serialized",
    "scattered_window_key",
    "scattered_window_keys",
    "scattered_window_keys_reference",
    "serialization_codes",
    "window_coords",
    "windows_per_axis",
]
