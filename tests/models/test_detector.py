"""Detector built from configs: the official parameter counts per part, training losses and gradients,
one Detections per frame, empty scenes, batch consistency and a weights_only state-dict round trip."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from pointformer.config import load_config
from pointformer.data.collate import FrameBatch
from pointformer.models import Detections, Detector, build_detector

pytestmark = pytest.mark.usefixtures("one_thread")

# FlatFormer Waymo (the released model, instantiated from the official code).
OFFICIAL_COUNTS = {
    "voxel_encoder": 17_472,
    "backbone3d": 1_059_840,
    "bev": 0,
    "backbone2d": 701_952,
    "neck": 74_240,
    "head": 414_606,
    "total": 2_268_110,
}

# The demo config on a 19.2 m square (48 x 48 pillars of 0.4 m, a 24 x 24 head map): the same parts,
# fast enough for many forwards. Score threshold 0 so that eval mode always returns boxes to compare.
HALF = 9.6
SMALL = [
    f"voxelization.point_cloud_range=[{-HALF}, {-HALF}, -2, {HALF}, {HALF}, 4]",
    f"dataset.point_cloud_range=[{-HALF}, {-HALF}, -2, {HALF}, {HALF}, 4]",
    "model.backbone3d.window_shape=[6, 6]",
    "model.backbone3d.group_size=16",
    f"model.head.post_center_range=[{-HALF - 1}, {-HALF - 1}, -5, {HALF + 1}, {HALF + 1}, 5]",
    "model.head.score_threshold=0.0",
    "model.head.post_max_sizes=50",
]
FEATURES = ("x", "y", "z", "intensity", "elongation")


def small_detector(seed: int = 0) -> Detector:
    torch.manual_seed(seed)
    return build_detector(load_config("demo/waymo_flatformer_demo.yaml", SMALL))


def random_frame(g: torch.Generator, num_points: int, num_boxes: int):
    """(points (N, 5), boxes (M, 9), labels (M,)) inside the small range."""
    points = torch.rand(num_points, 5, generator=g)
    points[:, :2] = (points[:, :2] * 2 - 1) * HALF
    points[:, 2] = points[:, 2] * 4 - 1.5
    boxes = torch.zeros(num_boxes, 9)
    boxes[:, :2] = (torch.rand(num_boxes, 2, generator=g) * 2 - 1) * (HALF - 1.5)
    boxes[:, 2] = torch.rand(num_boxes, generator=g) - 0.5
    boxes[:, 3:6] = torch.rand(num_boxes, 3, generator=g) * 3 + 0.6
    boxes[:, 6] = (torch.rand(num_boxes, generator=g) * 2 - 1) * np.pi
    boxes[:, 7:] = torch.randn(num_boxes, 2, generator=g)
    labels = torch.randint(0, 3, (num_boxes,), generator=g)
    return points, boxes, labels


def make_batch(frames) -> FrameBatch:
    """A ``FrameBatch`` of (points, boxes, labels) frames, as ``collate_frames`` lays it out."""
    n = torch.tensor([len(f[0]) for f in frames])
    m = torch.tensor([len(f[1]) for f in frames])
    index = torch.arange(len(frames))

    def offsets(c):
        return torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(c, 0)])

    return FrameBatch(
        points=torch.cat([f[0] for f in frames]).float(),
        batch_index=torch.repeat_interleave(index, n),
        point_offsets=offsets(n),
        boxes=torch.cat([f[1] for f in frames]).float(),
        labels=torch.cat([f[2] for f in frames]).long(),
        box_batch_index=torch.repeat_interleave(index, m),
        box_offsets=offsets(m),
        difficulty=torch.ones(int(m.sum()), dtype=torch.int8),
        poses=torch.eye(4, dtype=torch.float64).expand(len(frames), 4, 4).clone(),
        frame_ids=tuple(f"frame{i}" for i in range(len(frames))),
        point_features=FEATURES,
    )


def no_points(g, num_boxes=2):
    _, boxes, labels = random_frame(g, 0, num_boxes)
    return torch.zeros(0, 5), boxes, labels


def points_out_of_range(g, num_boxes=2):
    points, boxes, labels = random_frame(g, 50, num_boxes)
    points[:, 0] += 3 * HALF  # all beyond x max
    return points, boxes, labels


# --- the full configuration ------------------------------------------------------------------


def test_official_parameter_counts_and_summary():
    model = build_detector(load_config("waymo_flatformer.yaml"))
    assert model.parameter_counts() == OFFICIAL_COUNTS
    assert set(model.parts()) == {k for k in OFFICIAL_COUNTS if k != "total"}
    types = {"voxel_encoder": "DynamicVFE", "backbone3d": "FlatFormer", "bev": "ScatterToBEV",
             "backbone2d": "SECOND", "neck": "SECONDFPN", "head": "CenterHead", "total": "Detector"}  # fmt: skip
    rows = {line.split()[0]: line.split()[1:] for line in model.summary().splitlines()[1:]}
    assert rows == {part: [types[part], f"{count:,}"] for part, count in OFFICIAL_COUNTS.items()}
    assert model.class_names == ("Vehicle", "Pedestrian", "Cyclist")
    assert model.grid.shape == (1, 468, 468)


# --- training --------------------------------------------------------------------------------


def test_training_losses_and_gradients_reach_every_parameter():
    model = small_detector().train()
    g = torch.Generator().manual_seed(1)
    # An odd number of objects: the L1 gradient of a bias sums their signs, which an even count can cancel.
    batch = make_batch([random_frame(g, 800, 5), random_frame(g, 500, 2)])
    losses = model(batch)
    assert set(losses) == {"loss_heatmap", "loss_bbox", "loss_iou"}
    assert all(v.dim() == 0 and torch.isfinite(v) and v > 0 for v in losses.values()), losses
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    # Every parameter but the velocity branch (code weight 0 for vx, vy, as the official config) learns.
    zero = [n for n, p in model.named_parameters() if not p.grad.abs().sum() > 0]
    assert zero and all(".heads.vel." in n for n in zero), zero


def test_a_few_training_steps_lower_the_loss():
    model = small_detector().train()
    g = torch.Generator().manual_seed(2)
    batch = make_batch([random_frame(g, 600, 4)])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    totals = []
    # Single steps from a random start overshoot (the second loss is often the highest): judge the
    # mean of the last three of ten steps.
    for _ in range(10):
        optimizer.zero_grad()
        loss = sum(model(batch).values())
        loss.backward()
        optimizer.step()
        totals.append(float(loss.detach()))
    assert sum(totals[-3:]) / 3 < 0.7 * totals[0], totals


@pytest.mark.parametrize("scene", [no_points, points_out_of_range])
def test_empty_scene_trains(scene):
    model = small_detector().train()
    g = torch.Generator().manual_seed(3)
    for frames in ([scene(g)], [scene(g, num_boxes=0)], [random_frame(g, 300, 2), scene(g)]):
        losses = model(make_batch(frames))
        assert all(torch.isfinite(v) for v in losses.values()), losses
        sum(losses.values()).backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        model.zero_grad()


# --- inference -------------------------------------------------------------------------------


def _check_detections(dets, batch_size: int, model: Detector) -> None:
    assert isinstance(dets, list) and len(dets) == batch_size
    for d in dets:
        assert isinstance(d, Detections)
        assert d.boxes.dtype == torch.float32 and d.scores.dtype == torch.float32 and d.labels.dtype == torch.int64
        assert d.boxes.shape[1] in (7, 9) and torch.isfinite(d.boxes).all()
        assert ((d.scores >= 0) & (d.scores <= 1)).all()
        assert ((d.labels >= 0) & (d.labels < len(model.class_names))).all()
        assert (d.boxes[:, 3:6] > 0).all()


def test_eval_returns_one_detections_per_frame():
    model = small_detector().eval()
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        dets = model(make_batch([random_frame(g, 500, 3), random_frame(g, 700, 2), random_frame(g, 100, 0)]))
    _check_detections(dets, 3, model)
    assert all(0 < len(d) <= 3 * 50 for d in dets)  # score threshold 0: the per-class caps bound them


@pytest.mark.parametrize("scene", [no_points, points_out_of_range])
def test_empty_scene_inference(scene):
    model = small_detector().eval()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        _check_detections(model(make_batch([scene(g)])), 1, model)
        _check_detections(model(make_batch([scene(g), random_frame(g, 300, 1)])), 2, model)


def test_batch_gives_the_same_detections_as_single_frames():
    model = small_detector().eval()
    # Running statistics of a trained model (not the identity of a fresh one), so that batch norm matters.
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    g = torch.Generator().manual_seed(6)
    frames = [random_frame(g, 900, 3), random_frame(g, 400, 2)]
    with torch.no_grad():
        together = model(make_batch(frames))
        alone = [model(make_batch([f]))[0] for f in frames]
    for a, b in zip(together, alone, strict=True):
        assert len(a) == len(b) > 0
        torch.testing.assert_close(a.scores, b.scores, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(a.labels, b.labels)
        torch.testing.assert_close(a.boxes, b.boxes, atol=1e-4, rtol=1e-4)


def test_state_dict_round_trip_weights_only():
    model = small_detector(seed=0)
    g = torch.Generator().manual_seed(7)
    batch = make_batch([random_frame(g, 600, 3)])
    # Move the running statistics away from their initial values, as training does.
    model.train()
    with torch.no_grad():
        model(batch)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = small_detector(seed=1)
    before = fresh.state_dict()
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    model.eval()
    fresh.eval()
    with torch.no_grad():
        expected, got = model(batch), fresh(batch)
    assert len(expected[0]) > 0
    for a, b in zip(expected, got, strict=True):
        assert torch.equal(a.boxes, b.boxes) and torch.equal(a.scores, b.scores) and torch.equal(a.labels, b.labels)
