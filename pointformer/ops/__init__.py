"""Native ops. Each op has a native kernel (CPU, and CUDA in CUDA builds) registered under
``torch.ops.pointformer`` and a pure-PyTorch reference used by the tests and as the fallback
where no kernel is built. ``backends()`` says which are available."""

from pointformer.ops._library import backends, reference_only
from pointformer.ops.boxes import (
    boxes_iou_3d,
    boxes_iou_bev,
    circle_nms,
    nms_bev,
    points_in_boxes,
)
from pointformer.ops.segment_reduce import segment_reduce
from pointformer.ops.voxelize import Voxelization, voxelize

__all__ = [
    "Voxelization",
    "backends",
    "boxes_iou_3d",
    "boxes_iou_bev",
    "circle_nms",
    "nms_bev",
    "points_in_boxes",
    "reference_only",
    "segment_reduce",
    "voxelize",
]
