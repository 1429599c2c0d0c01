"""Reduced detectors for the export tests: every Waymo config on a small range, its BatchNorm
statistics calibrated on the test frames (so outputs have a trained model's scale, not the blow-up
of random weights through deep untrained stacks), and frames of points."""

from __future__ import annotations

import torch
from torch import nn

from pointformer.config import load_config
from pointformer.models import build_detector

CONFIGS = ("waymo_flatformer", "waymo_dsvt_pillar", "waymo_dsvt_voxel", "waymo_scatterformer", "waymo_centerpoint")
# Half-extents in metres whose grids every window, pooling and stride of the model still divides
# (as tests/models/test_configs.py reduces them).
# The demo config (the smallest FlatFormer): 36 x 36 pillars of 0.4 m, divided by its 9 x 9 windows
# and the 2D backbone's strides.
DEMO = "demo/waymo_flatformer_demo.yaml"
REDUCED_HALF = {"waymo_flatformer": 7.68, "waymo_dsvt_pillar": 7.68, "waymo_dsvt_voxel": 7.68,
                "waymo_scatterformer": 7.68, "waymo_centerpoint": 6.4, DEMO: 7.2}  # fmt: skip


def reduced_overrides(name: str, score_threshold: float = 0.0) -> list[str]:
    h = REDUCED_HALF[name]
    return [
        f"voxelization.point_cloud_range=[{-h}, {-h}, -2, {h}, {h}, 4]",
        f"dataset.point_cloud_range=[{-h}, {-h}, -2, {h}, {h}, 4]",
        f"model.head.score_threshold={score_threshold}",
    ]


def frame(half: float, n: int, seed: int) -> torch.Tensor:
    """``(n, 5)`` points over the reduced range (z -1.8..3.7 m), features in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(n, 5, generator=g)
    p[:, :2] = (p[:, :2] * 2 - 1) * half
    p[:, 2] = p[:, 2] * 5.5 - 1.8
    return p


def few_voxels_frame(half: float) -> torch.Tensor:
    """Four points in three voxels (two share one) near the centre."""
    p = torch.tensor([[0.5, 0.5, 0.0, 0.2, 0.1], [0.55, 0.52, 0.05, 0.3, 0.1], [-2.0, 1.0, 0.5, 0.1, 0.0],
                      [3.0, -3.0, -1.0, 0.5, 0.2]])  # fmt: skip
    return p


def sample_frames(name: str) -> list[torch.Tensor]:
    h = REDUCED_HALF[name]
    return [frame(h, 2000, 0), frame(h, 1500, 1)]


def calibrate(model: nn.Module, frames: list[torch.Tensor]) -> nn.Module:
    """BatchNorm running statistics set to the cumulative mean over ``frames`` (eval otherwise), and
    the regression maps brought to a trained head's scale: the last conv of every regression
    branch (offset, z, log size, sin/cos, IoU) is scaled by 0.1, which takes their magnitude from
    ~30 (random Kaiming weights on calibrated features) to ~3; the heatmap keeps its init."""
    # CenterHead: one set of branches per task; TransFusionHead: one prediction head.
    branch_sets = (
        [t.heads for t in model.head.task_heads] if hasattr(model.head, "task_heads") else [model.head.prediction_head]
    )
    for branches in branch_sets:
        for name, branch in branches.items():
            if name != "heatmap":
                with torch.no_grad():
                    branch[-1].weight.mul_(0.1)
    model.eval()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    with torch.no_grad():
        for points in frames:
            batch_index = torch.zeros(points.shape[0], dtype=torch.int64)
            voxels = model.voxel_encoder(points, model.voxelize(points, batch_index, 1))
            model.head(model.neck(model.backbone2d(model.bev(model.backbone3d(voxels)))))
    return model.eval()


def reduced_model(name: str, score_threshold: float = 0.0):
    """``(cfg, detector)``: the reduced config, weights from seed 0, BatchNorm calibrated."""
    cfg = load_config(name, reduced_overrides(name, score_threshold))
    torch.manual_seed(0)
    model = build_detector(cfg)
    return cfg, calibrate(model, sample_frames(name))
