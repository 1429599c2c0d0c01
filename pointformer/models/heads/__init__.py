"""Detection heads on dense BEV feature maps.

Names load on first use (PEP 562), so that inference-only code (``pointformer.export``'s runtime
importing ``heads.decode``) does not import the training modules (losses, targets).
"""

from __future__ import annotations

import importlib

_WHERE = {
    "BEVCoder": "coder",
    "CenterHead": "center_head",
    "CenterHeadOutputs": "center_head",
    "TaskOutputs": "center_head",
    "QueryDecodeSettings": "query_decode",
    "TaskTargets": "targets",
    "TransFusionHead": "transfusion_head",
    "TransFusionOutputs": "transfusion_head",
    "build_task_targets": "targets",
    "gaussian_radius": "targets",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
