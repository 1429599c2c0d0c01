"""The published detector configs (DSVT-P, DSVT-V, ScatterFormer, CenterPoint on Waymo): exactly the
official parameter count of every part when built from the YAML, the settings the papers train with,
and a forward pass of each config's detector (on a reduced range) returning Detections."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from pointformer.config import ConfigError, load_config
from pointformer.engine.optim import OneCycleSchedule
from pointformer.models import Detections, build_detector
from pointformer.models.backbones.bev_res import BEVResBackbone
from pointformer.models.backbones.cascade_ded import CascadeDEDBackbone, DEDBlock
from pointformer.models.heads.center_head import CenterHead
from pointformer.models.heads.losses import axis_aligned_diou_3d
from pointformer.models.layers.basic_block2d import BasicBlock2d
from pointformer.models.necks.identity import IdentityNeck
from pointformer.models.necks.second_fpn import SECONDFPN
from pointformer.runs.train import build_optimizer_from, build_schedule
from pointformer.structures import VoxelGrid

sys.path.insert(0, str(Path(__file__).parent))
from test_detector import make_batch  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = ("Vehicle", "Pedestrian", "Cyclist")

# Per part, instantiated from the official code (OpenPCDet / DSVT / ScatterFormer / HEDNet modules with
# the published YAML). DSVT's and CenterPoint's BACKBONE_2D are our backbone2d + neck together; the VFEs
# (OpenPCDet DynamicVoxelVFE [192, 192] = 38,496, [64, 64] = 4,640; MeanVFE none) are listed too.
OFFICIAL = {
    "waymo_dsvt_pillar": {"voxel_encoder": 38_496, "backbone3d": 2_684_928, "bev2d": 5_479_680, "head": 450_188},
    "waymo_dsvt_voxel": {"voxel_encoder": 38_496, "backbone3d": 3_133_824, "bev2d": 5_479_680, "head": 450_188},
    "waymo_scatterformer": {"voxel_encoder": 4_640, "backbone3d": 4_241_856, "bev2d": 7_751_680, "head": 302_732},
    "waymo_centerpoint": {"voxel_encoder": 0, "backbone3d": 2_695_312, "bev2d": 4_576_768, "head": 486_731},
    # OpenPCDet PillarVFE [64, 64], no 3D backbone (tests/checkpoints/test_openpcdet.py counts the official modules)
    "waymo_centerpoint_pillar": {"voxel_encoder": 4_640, "backbone3d": 0, "bev2d": 4_806_400, "head": 413_003},
}
GRIDS = {
    "waymo_dsvt_pillar": (1, 468, 468),
    "waymo_dsvt_voxel": (32, 468, 468),
    "waymo_scatterformer": (32, 480, 480),
    "waymo_centerpoint": (40, 1504, 1504),
    "waymo_centerpoint_pillar": (1, 468, 468),
}

# Reduced ranges for the forward passes: grids the windows, pooling and strides of each model still
# divide (DSVT 48 x 48 cells: 12 and 24 windows, BEV stages 48/24/12; ScatterFormer 48 -> 24 BEV, the
# DED levels 24/12/6; CenterPoint 128 -> 16 at stride 8, SECOND 16/8). Score threshold 0 so that
# untrained heads return boxes.
REDUCED_HALF = {"waymo_dsvt_pillar": 7.68, "waymo_dsvt_voxel": 7.68, "waymo_scatterformer": 7.68,
                "waymo_centerpoint": 6.4, "waymo_centerpoint_pillar": 7.68}  # fmt: skip


def reduced(name: str) -> list[str]:
    h = REDUCED_HALF[name]
    return [
        f"voxelization.point_cloud_range=[{-h}, {-h}, -2, {h}, {h}, 4]",
        f"dataset.point_cloud_range=[{-h}, {-h}, -2, {h}, {h}, 4]",
        "model.head.score_threshold=0.0",
    ]


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def frames(half: float, sizes=(2000, 1500), seed: int = 0):
    """Random points over the reduced range (z -1.8..3.7 m) and two boxes per frame."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in sizes:
        p = torch.rand(n, 5, generator=g)
        p[:, :2] = (p[:, :2] * 2 - 1) * half
        p[:, 2] = p[:, 2] * 5.5 - 1.8
        boxes = torch.tensor([[0.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.3, 0, 0], [3.0, -4.0, 0.0, 0.8, 0.8, 1.8, 1.0, 0, 0]])
        out.append((p, boxes, torch.tensor([0, 1])))
    return out


# --- the full configurations -----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_parameter_counts(name):
    cfg = load_config(name)
    assert cfg.grid.shape == GRIDS[name]
    model = build_detector(cfg)
    counts = model.parameter_counts()
    official = OFFICIAL[name]
    assert counts["voxel_encoder"] == official["voxel_encoder"]
    assert counts["backbone3d"] == official["backbone3d"]
    assert counts["bev"] == 0
    assert counts["backbone2d"] + counts["neck"] == official["bev2d"]
    assert counts["head"] == official["head"]
    assert counts["total"] == sum(official.values())
    assert model.class_names == CLASSES


def test_part_types_and_derived_channels():
    parts = {name: build_detector(load_config(name)) for name in OFFICIAL}
    cp, pillar, dsvt_p, dsvt_v, sf = (parts[n] for n in sorted(OFFICIAL))
    for m in (dsvt_p, dsvt_v):
        assert type(m.backbone3d).__name__ == "DSVT"
        assert isinstance(m.backbone2d, BEVResBackbone) and isinstance(m.neck, SECONDFPN)
        assert m.bev.out_channels == 192 and m.neck.out_channels == 384
        assert m.backbone3d.out_spatial_shape[0] == 1  # DSVT-V pools z 32 -> 1
    assert type(sf.backbone3d).__name__ == "ScatterFormer"
    assert isinstance(sf.backbone2d, CascadeDEDBackbone) and isinstance(sf.neck, IdentityNeck)
    assert sf.bev.out_channels == 128 and sf.neck.out_channels == 128
    assert type(cp.voxel_encoder).__name__ == "MeanVFE" and type(cp.backbone3d).__name__ == "VoxelResBackBone8x"
    assert cp.bev.out_channels == 256 and cp.neck.out_channels == 512  # HeightCompression: 2 z cells x 128
    # Head maps: stride 1 (DSVT), 2 (ScatterFormer's pooled BEV), 8 (CenterPoint).
    assert (dsvt_p.head.out_size_factor, sf.head.out_size_factor, cp.head.out_size_factor) == (1, 2, 8)
    assert sf.backbone3d.out_spatial_shape[1:] == (240, 240) and cp.backbone3d.out_spatial_shape[1:] == (188, 188)
    # CenterPoint-Pillar: OpenPCDet's PillarVFE padded to the 20-point cap, no 3D backbone, the head at stride 1.
    assert type(pillar.voxel_encoder).__name__ == "PillarVFE" and pillar.voxel_encoder.max_points_per_voxel == 20
    assert type(pillar.backbone3d).__name__ == "IdentityBackbone3D" and pillar.bev.out_channels == 64
    assert pillar.neck.out_channels == 384 and pillar.head.out_size_factor == 1


def test_published_settings():
    p, v = load_config("waymo_dsvt_pillar"), load_config("waymo_dsvt_voxel")
    sf, cp = load_config("waymo_scatterformer"), load_config("waymo_centerpoint")
    for cfg in (p, v):
        assert cfg.optimizer["lr"] == 0.003 and cfg.train.epochs == 24
        assert cfg.data.options["disable_augmentation_after_epoch"] == 23  # the last epoch without augmentation
    assert v.grid.voxel_size == (0.32, 0.32, 0.1875) and v.model["backbone3d"]["set_sizes"] == [48, 48, 48, 48]
    assert v.model["head"] == p.model["head"] and v.data.options == p.data.options  # inherited
    assert sf.optimizer["lr"] == 0.006 and sf.train.batch_size == 4
    assert cp.max_points_per_voxel == 5 and cp.max_voxels == 150_000 and cp.train.epochs == 30
    assert cp.schedule["div_factor"] == 10 and cp.schedule["pct_start"] == 0.4
    assert p.schedule["div_factor"] == 100 and p.schedule["pct_start"] == 0.1
    heads = {n: build_detector(load_config(n)).head for n in ("waymo_dsvt_pillar", "waymo_centerpoint")}
    dsvt, centerpoint = heads["waymo_dsvt_pillar"], heads["waymo_centerpoint"]
    assert torch.allclose(dsvt.iou_power, torch.tensor([0.68, 0.71, 0.65]))
    assert torch.allclose(dsvt.score_power + dsvt.iou_power, torch.ones(3))
    assert dsvt.iou_signed and dsvt.iou_reg_weight == 2.0 and not dsvt.bias_before_norm
    assert centerpoint.bias_before_norm and not centerpoint.with_iou and centerpoint.shared_conv[0].bias is not None


def test_adam_onecycle_optimizer_and_schedule():
    """OpenPCDet adam_onecycle: decoupled decay on every parameter (norms and biases too), betas
    (0.9, 0.99), lr/div -> lr -> lr/div/1e4, beta1 0.95 -> 0.85 -> 0.95."""
    cfg = load_config("waymo_dsvt_pillar", reduced("waymo_dsvt_pillar"))
    model = build_detector(cfg)
    opt = build_optimizer_from(cfg, model)
    assert isinstance(opt, torch.optim.AdamW) and len(opt.param_groups) == 1
    assert opt.param_groups[0]["weight_decay"] == 0.05 and opt.param_groups[0]["betas"][1] == 0.99
    assert sum(p.numel() for p in opt.param_groups[0]["params"]) == count(model)
    total = 1000
    sched = build_schedule(cfg, opt, total)
    assert isinstance(sched, OneCycleSchedule)
    assert sched.lr_at(0)[0] == pytest.approx(0.003 / 100)
    assert sched.lr_at(100)[0] == pytest.approx(0.003)
    assert sched.lr_at(total)[0] == pytest.approx(0.003 / 100 / 1e4)
    assert opt.param_groups[0]["betas"][0] == pytest.approx(0.95)


# --- forward passes on reduced ranges --------------------------------------------------------


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_forward_reduced_range_returns_detections(name):
    torch.manual_seed(0)
    cfg = load_config(name, reduced(name))
    model = build_detector(cfg).eval()
    batch = make_batch(frames(REDUCED_HALF[name]))
    seen = []
    model.neck.register_forward_hook(lambda module, args, out: seen.append(out))
    with torch.no_grad():
        detections = model(batch)
    (bev,) = seen
    _, gy, gx = cfg.grid.shape
    f = model.head.out_size_factor
    assert bev.shape == (2, model.neck.out_channels, gy // f, gx // f)
    assert len(detections) == 2
    lo, hi = torch.tensor(model.head.post_center_range[:3]), torch.tensor(model.head.post_center_range[3:])
    for d in detections:
        assert isinstance(d, Detections)
        assert d.boxes.shape[1] == 7 and d.boxes.shape[0] == d.scores.shape[0] == d.labels.shape[0] > 0
        assert d.boxes.dtype == torch.float32 and d.labels.dtype == torch.int64
        assert torch.isfinite(d.boxes).all() and ((d.scores >= 0) & (d.scores <= 1)).all()
        assert set(d.labels.tolist()) <= {0, 1, 2}
        assert ((d.boxes[:, :3] >= lo) & (d.boxes[:, :3] <= hi)).all()


def test_max_voxels_caps_each_frame():
    cfg = load_config("waymo_centerpoint", [*reduced("waymo_centerpoint"), "voxelization.max_voxels=500"])
    model = build_detector(cfg)
    assert model.max_voxels == 500
    batch = make_batch(frames(REDUCED_HALF["waymo_centerpoint"]))
    voxels = model.voxelize(batch.points, batch.batch_index, batch.batch_size)
    per_frame = torch.bincount(voxels.coords[:, 0].long(), minlength=2)
    assert per_frame.tolist() == [500, 500]
    uncapped = build_detector(load_config("waymo_centerpoint", reduced("waymo_centerpoint")))
    assert uncapped.max_voxels == 150_000  # the published cap, far above these frames
    assert uncapped.voxelize(batch.points, batch.batch_index, batch.batch_size).coords.shape[0] > 2000


def test_pillar_vfe_needs_the_point_cap():
    cfg = load_config("waymo_centerpoint_pillar", ["voxelization.max_points_per_voxel=-1"])
    with pytest.raises(ConfigError, match=r"model.voxel_encoder \(PillarVFE\).*voxelization.max_points_per_voxel"):
        build_detector(cfg)


@pytest.mark.parametrize("value", [0, -2, 1.5, "many", True])
def test_bad_voxel_caps_are_config_errors(value):
    for key in ("max_voxels", "max_points_per_voxel"):
        with pytest.raises(ConfigError, match=f"voxelization.{key}"):
            load_config("waymo_centerpoint", [f"voxelization.{key}={value}"])


# --- the new parts against direct computations -----------------------------------------------


def test_basic_block_matches_its_formula():
    torch.manual_seed(0)
    block = BasicBlock2d(4, 6, stride=2, projection=True).eval()
    for bn in (block.bn1, block.bn2, block.projection[1]):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 4, 9, 7)

    def bn(m, y):
        return torch.nn.functional.batch_norm(y, m.running_mean, m.running_var, m.weight, m.bias, eps=m.eps)

    conv = torch.nn.functional.conv2d
    h = torch.relu(bn(block.bn1, conv(x, block.conv1.weight, stride=2, padding=1)))
    h = bn(block.bn2, conv(h, block.conv2.weight, padding=1))
    short = bn(block.projection[1], conv(x, block.projection[0].weight, stride=2))
    assert torch.allclose(block(x), torch.relu(h + short), atol=1e-5)
    assert block(x).shape == (2, 6, 5, 4)  # ceil(9 / 2), ceil(7 / 2)
    with pytest.raises(ValueError, match="projection"):
        BasicBlock2d(4, 6)


def test_bev_res_backbone_with_fpn_shapes():
    torch.manual_seed(0)
    backbone = BEVResBackbone(8, (4, 4, 8), (1, 2, 2), (1, 2, 2))
    neck = SECONDFPN(backbone.out_channels, (4, 4, 4), (1, 2, 4))
    maps = backbone(torch.randn(1, 8, 24, 24))
    assert [tuple(m.shape[1:]) for m in maps] == [(4, 24, 24), (4, 12, 12), (8, 6, 6)]
    assert neck(maps).shape == (1, 12, 24, 24)
    # Every stage starts with a projection block, even where the shape is kept (OpenPCDet's).
    assert all(stage[0].projection is not None for stage in backbone.stages)
    assert all(block.projection is None for stage in backbone.stages for block in stage[1:])


def test_ded_block_is_an_encoder_decoder_with_skips():
    torch.manual_seed(0)
    ded = DEDBlock(6, 6, num_blocks=(1, 1, 1), strides=(1, 2, 2)).eval()
    assert ded.encoder[0][0].projection is None  # in == C at stride 1: no level-0 projection
    x = torch.randn(1, 6, 16, 16)
    l0 = ded.encoder[0](x)
    l1 = ded.encoder[1](l0)
    l2 = ded.encoder[2](l1)
    up1 = ded.decoder_norm[0](ded.decoder[0](l2) + l1)
    expected = ded.decoder_norm[1](ded.decoder[1](up1) + l0)
    assert torch.allclose(ded(x), expected, atol=1e-6)
    with pytest.raises(ValueError, match="divisible"):
        ded(torch.randn(1, 6, 18, 18))
    cascade = CascadeDEDBackbone(3, channels=6, num_layers=2, num_blocks=(1, 1, 1))
    out = cascade(torch.randn(2, 3, 16, 16))
    assert len(out) == 1 and out[0].shape == (2, 6, 16, 16)
    assert cascade.layers[0].encoder[0][0].projection is not None  # 3 -> 6 channels


def test_identity_neck():
    neck = IdentityNeck((7,))
    x = torch.randn(1, 7, 3, 3)
    assert neck([x]) is x and neck.out_channels == 7 and count(neck) == 0
    with pytest.raises(ValueError, match="exactly one"):
        IdentityNeck((4, 4))


def test_center_head_bias_before_norm_counts():
    grid = VoxelGrid.from_config((-75.2, -75.2, -2, 75.2, 75.2, 4), (0.1, 0.1, 0.15))
    tasks = [list(CLASSES)]
    kw = dict(out_size_factor=8, with_velocity=False, with_iou=False)
    biased = CenterHead(512, tasks, grid, bias_before_norm=True, **kw)
    plain = CenterHead(512, tasks, grid, **kw)
    # One bias per conv before a norm: the shared conv and the hidden conv of the 5 separate heads.
    assert count(biased) == 486_731 and count(biased) - count(plain) == 6 * 64
    assert count(CenterHead(256, tasks, grid)) == 414_606  # FlatFormer's, unchanged by default


def test_axis_aligned_diou():
    a = torch.tensor([[0.0, 0, 0, 2, 2, 2, 0.0], [0, 0, 0, 2, 2, 2, 0], [0, 0, 0, 2, 2, 2, 1.0]])
    b = torch.tensor([[0.0, 0, 0, 2, 2, 2, 0.0], [1, 0, 0, 2, 2, 2, 0], [0, 0, 0, 2, 2, 2, 0.0]])
    d = axis_aligned_diou_3d(a, b)
    # Identical boxes: 1; shifted by 1 m in x: IoU 4/12, centre distance 1 over the enclosing box's
    # squared diagonal 3^2 + 2^2 + 2^2 = 17; headings are ignored.
    assert torch.allclose(d, torch.tensor([1.0, 4 / 12 - 1 / 17, 1.0]))
    far = axis_aligned_diou_3d(torch.tensor([[0.0, 0, 0, 1, 1, 1]]), torch.tensor([[100.0, 0, 0, 1, 1, 1]]))
    assert -1 <= far.item() < -0.9
    p = a.clone().requires_grad_(True)
    axis_aligned_diou_3d(p, b).sum().backward()
    assert torch.isfinite(p.grad).all() and p.grad[1, 0] > 0  # moving towards the target (+x) raises DIoU


def test_diou_loss_trains_the_box_branch():
    grid = VoxelGrid.from_config((-8, -8, -2, 8, 8, 4), (0.5, 0.5, 6))
    torch.manual_seed(0)
    head = CenterHead(8, [list(CLASSES)], grid, with_velocity=False, iou_reg_weight=2.0, iou_signed=True)
    out = head(torch.randn(1, 8, 32, 32))
    boxes = torch.tensor([[1.0, 2.0, 0.0, 4.0, 2.0, 1.5, 0.3, 0, 0]])
    losses = head.loss(out, boxes, torch.tensor([0]), torch.tensor([0]), 1)
    assert set(losses) == {"loss_heatmap", "loss_bbox", "loss_iou", "loss_iou_reg"}
    assert 0 < losses["loss_iou_reg"].item() <= 2 * 2.0
    head.zero_grad()
    losses["loss_iou_reg"].backward()
    assert head.task_heads[0].heads["dim"][-1].weight.grad.abs().sum() > 0
    # The IoU branch has its own loss: none of this one reaches it (no gradient, or, with the branches
    # stacked in training, an exactly zero one).
    grad = head.task_heads[0].heads["iou"][-1].weight.grad
    assert grad is None or not grad.any()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_training_step_reduced_range(name):
    """Losses finite and positive, gradients in every part with parameters (a few seconds each)."""
    torch.manual_seed(0)
    model = build_detector(load_config(name, reduced(name))).train()
    losses = model(make_batch(frames(REDUCED_HALF[name])))
    total = sum(losses.values())
    assert all(math.isfinite(v.item()) and v.item() > 0 for v in losses.values())
    total.backward()
    for part, module in model.parts().items():
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        if grads:
            assert any(g is not None and g.abs().sum() > 0 for g in grads), part


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_forward_full_size_waymo_frame(name):
    """The full config on a ray-cast Waymo-scale frame (~180k points, five lidars, two returns):
    one Detections with boxes inside the post-centre range (10-30 s each on one CPU thread)."""
    from pointformer.runs.synthetic_frame import make_frame

    cfg = load_config(name)
    frame = make_frame(cfg, quick=False, kind="raycast")
    assert frame.batch.points.shape[0] > 100_000
    torch.manual_seed(0)
    model = build_detector(cfg).eval()
    with torch.no_grad():
        (detections,) = model(frame.batch)
    assert detections.boxes.shape[1] == 7 and detections.boxes.shape[0] == detections.scores.shape[0]
    assert torch.isfinite(detections.boxes).all()
    lo, hi = torch.tensor(model.head.post_center_range[:3]), torch.tensor(model.head.post_center_range[3:])
    assert ((detections.boxes[:, :3] >= lo) & (detections.boxes[:, :3] <= hi)).all()
