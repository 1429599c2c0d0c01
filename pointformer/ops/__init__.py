"""Native ops: voxelization, segment reductions, box geometry, the grouping layouts and attention
over them.

Each op has a native kernel (CPU, and CUDA in CUDA builds) registered under
``torch.ops.pointformer`` and a pure-PyTorch reference used by the tests and as the fallback where
no kernel is built. ``backends()`` says which are available; ``reference_only()`` forces the
references, ``export_mode()`` the exportable form (``pointformer.export``).
"""

from pointformer.ops._library import backends, export_mode, reference_only
from pointformer.ops.attention import (
    grouped_attention,
    indexed_attention,
    scattered_linear_attention,
    scattered_linear_attention_partition,
    varlen_attention,
)
from pointformer.ops.boxes import (
    boxes_iou_3d,
    boxes_iou_bev,
    circle_nms,
    nms_bev,
    points_in_boxes,
)
from pointformer.ops.grouping import (
    RotatedSets,
    dsvt_pooling_map,
    dsvt_window_configs,
    partition_flattened,
    partition_rotated_sets,
    partition_scattered,
    partition_serialized,
    serialization_codes,
)
from pointformer.ops.segment_reduce import segment_reduce
from pointformer.ops.voxelize import Voxelization, voxelize

__all__ = [
    "RotatedSets",
    "Voxelization",
    "backends",
    "boxes_iou_3d",
    "boxes_iou_bev",
    "circle_nms",
    "dsvt_pooling_map",
    "dsvt_window_configs",
    "export_mode",
    "grouped_attention",
    "indexed_attention",
    "nms_bev",
    "partition_flattened",
    "partition_rotated_sets",
    "partition_scattered",
    "partition_serialized",
    "points_in_boxes",
    "reference_only",
    "scattered_linear_attention",
    "scattered_linear_attention_partition",
    "segment_reduce",
    "serialization_codes",
    "varlen_attention",
    "voxelize",
]
