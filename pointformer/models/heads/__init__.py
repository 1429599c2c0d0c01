"""Detection heads on dense BEV feature maps."""

from pointformer.models.heads.center_head import CenterHead, CenterHeadOutputs, TaskOutputs
from pointformer.models.heads.coder import BEVCoder
from pointformer.models.heads.targets import TaskTargets, build_task_targets, gaussian_radius

__all__ = [
    "BEVCoder",
    "CenterHead",
    "CenterHeadOutputs",
    "TaskOutputs",
    "TaskTargets",
    "build_task_targets",
    "gaussian_radius",
]
