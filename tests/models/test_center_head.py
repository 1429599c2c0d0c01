"""CenterHead: architecture, targets, losses, decoding, and a tiny optimisation."""

from __future__ import annotations

import math

import pytest
import torch

from pointformer.models.heads import BEVCoder, CenterHead, CenterHeadOutputs, TaskOutputs, gaussian_radius
from pointformer.models.heads.decode import rectified_scores
from pointformer.models.heads.losses import gaussian_focal_loss, paired_iou_3d
from pointformer.models.heads.targets import build_task_targets
from pointformer.ops import boxes_iou_3d
from pointformer.structures import VoxelGrid

CLASSES = ["Vehicle", "Pedestrian", "Cyclist"]
WAYMO_GRID = VoxelGrid((-74.88, -74.88, -2, 74.88, 74.88, 4), (0.32, 0.32, 6))
# A 32 x 32 map of 0.5 m cells over [-8, 8) m.
SMALL_GRID = VoxelGrid((-8, -8, -2, 8, 8, 4), (0.5, 0.5, 6))


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions: intra-op threads only add overhead (and stall on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_head(**kwargs) -> CenterHead:
    defaults = dict(in_channels=8, tasks=[CLASSES], grid=SMALL_GRID, post_center_range=None)
    defaults.update(kwargs)
    return CenterHead(**defaults)


def test_parameter_count_flatformer_settings():
    head = CenterHead(256, [CLASSES], WAYMO_GRID)
    assert sum(p.numel() for p in head.parameters()) == 414_606
    # shared conv 256->64 (no bias) + BN, and 7 separate heads of conv(64->64)+BN, conv(64->out)+bias.
    per_head = 64 * 64 * 9 + 128
    finals = sum(64 * 9 * c + c for c in (2, 1, 3, 2, 2, 1, 3))
    assert 256 * 64 * 9 + 128 + 7 * per_head + finals == 414_606
    heatmap_bias = head.task_heads[0].heads["heatmap"][-1].bias
    torch.testing.assert_close(heatmap_bias, torch.full((3,), -2.19))


def test_forward_shapes_and_optional_branches():
    head = small_head(with_velocity=False, with_iou=False)
    out = head(torch.randn(2, 8, 32, 32))
    task = out.tasks[0]
    assert task.heatmap.shape == (2, 3, 32, 32)
    assert task.center.shape == (2, 2, 32, 32) and task.height.shape == (2, 1, 32, 32)
    assert task.dim.shape == (2, 3, 32, 32) and task.rot.shape == (2, 2, 32, 32)
    assert task.vel is None and task.iou is None
    assert task.code().shape == (2, 8, 32, 32)


def test_gaussian_radius_hand_computed():
    # A 4.5 m x 2.0 m car on 0.32 m cells, overlap 0.1: the roots are 15.745, 30.120 and 3.9493;
    # the third (the two corners shrinking inwards) is the smallest.
    r = gaussian_radius(torch.tensor([4.5 / 0.32]), torch.tensor([2.0 / 0.32]), 0.1)
    torch.testing.assert_close(r, torch.tensor([3.9492685]))
    # 10 x 10 cells, overlap 0.7: r3 = (-28 + sqrt(28^2 + 4 * 2.8 * 30)) / 2 = 2.7332.
    r = gaussian_radius(torch.tensor([10.0]), torch.tensor([10.0]), 0.7)
    torch.testing.assert_close(r, torch.tensor([(-28 + math.sqrt(784 + 336)) / 2]))
    # Symmetric in height and width.
    torch.testing.assert_close(
        gaussian_radius(torch.tensor([9.0]), torch.tensor([4.0]), 0.1),
        gaussian_radius(torch.tensor([4.0]), torch.tensor([9.0]), 0.1),
    )


def _targets(boxes, labels, batch_index, batch_size=1, grid=SMALL_GRID, factor=1, **kwargs):
    coder = BEVCoder.from_grid(grid, factor)
    _, gy, gx = grid.shape
    settings = dict(gaussian_overlap=0.1, min_radius=1, max_objects=500, with_velocity=True)
    settings.update(kwargs)
    return build_task_targets(
        boxes, labels, batch_index, batch_size, 3, (gy // factor, gx // factor), coder, **settings
    )


def test_targets_hand_placed_box(device):
    # Centre (1.1, 2.3) on 0.5 m cells from -8: x = 9.1 / 0.5 = 18.2 cells, y = 10.3 / 0.5 = 20.6 cells.
    box = torch.tensor([[1.1, 2.3, 0.4, 4.5, 2.0, 1.6, 0.3, 1.5, -0.5]], device=device)
    tgt = _targets(box, torch.tensor([1], device=device), torch.tensor([0], device=device))
    assert tgt.num_objects == 1
    assert tgt.cell_index.tolist() == [20 * 32 + 18]
    assert tgt.labels.tolist() == [1]
    expected = torch.tensor(
        [0.2, 0.6, 0.4, math.log(4.5), math.log(2.0), math.log(1.6), math.sin(0.3), math.cos(0.3), 1.5, -0.5]
    )
    torch.testing.assert_close(tgt.box_targets[0].cpu(), expected, atol=1e-5, rtol=0)
    heat = tgt.heatmap.cpu()
    assert heat[0, 1, 20, 18] == 1.0 and int(heat.eq(1).sum()) == 1
    assert heat[0, [0, 2]].abs().sum() == 0  # other classes untouched
    # 9 x 4 cells -> radius floor(2.5275) = 2, sigma = 5 / 6.
    sigma = 5 / 6
    torch.testing.assert_close(heat[0, 1, 20, 19], torch.tensor(math.exp(-1 / (2 * sigma**2))))
    torch.testing.assert_close(heat[0, 1, 22, 16], torch.tensor(math.exp(-8 / (2 * sigma**2))))
    assert heat[0, 1, 20, 21] == 0 and heat[0, 1, 23, 18] == 0  # outside the radius
    assert int((heat > 0).sum()) == 25


def test_targets_out_size_factor_and_min_radius():
    # 1 m cells: x = 9.1 -> cell 9, offset 0.1; a 0.6 m pedestrian gets the minimum radius.
    box = torch.tensor([[1.1, 2.3, 0.0, 0.6, 0.6, 1.7, 0.0, 0.0, 0.0]])
    tgt = _targets(box, torch.tensor([1]), torch.tensor([0]), factor=2, min_radius=2)
    assert tgt.heatmap.shape == (1, 3, 16, 16)
    assert tgt.cell_index.tolist() == [10 * 16 + 9]
    torch.testing.assert_close(tgt.box_targets[0, :2], torch.tensor([0.1, 0.3]), atol=1e-5, rtol=0)
    assert int((tgt.heatmap > 0).sum()) == 25  # radius 2 -> a 5 x 5 patch


def test_targets_overlap_keeps_max_filters_and_caps():
    boxes = torch.tensor(
        [
            [0.1, 0.1, 0, 4.0, 2.0, 1.5, 0, 0, 0],
            [1.1, 0.1, 0, 4.0, 2.0, 1.5, 0, 0, 0],  # two cells to the right, overlapping gaussians
            [20.0, 0.0, 0, 4.0, 2.0, 1.5, 0, 0, 0],  # outside the map
            [-7.9, -7.9, 0, 4.0, 2.0, 1.5, 0, 0, 0],  # corner: the gaussian is clipped
            [3.0, 3.0, 0, 4.0, 2.0, 1.5, 0, 0, 0],  # frame 0's fourth valid box: over max_objects 3
        ]
    )
    tgt = _targets(boxes, torch.zeros(5, dtype=torch.long), torch.zeros(5, dtype=torch.long), max_objects=3)
    assert tgt.num_objects == 3
    assert tgt.cell_index.tolist() == [16 * 32 + 16, 16 * 32 + 18, 0]
    heat = tgt.heatmap[0, 0]
    assert heat[16, 16] == 1 and heat[16, 18] == 1 and heat[0, 0] == 1 and heat[22, 22] == 0
    # Cell 17 is one cell from both centres: the max, not the sum.
    assert 0 < heat[16, 17] < 1


def test_targets_batch_with_empty_frame_and_labels_of_other_tasks():
    boxes = torch.tensor([[0.1, 0.1, 0, 4.0, 2.0, 1.5, 0, 0, 0], [2.1, 2.1, 0, 1, 1, 1, 0, 0, 0]])
    # The second box belongs to another task (-1): not assigned.
    tgt = _targets(boxes, torch.tensor([2, -1]), torch.tensor([1, 0]), batch_size=2)
    assert tgt.batch_index.tolist() == [1]
    assert tgt.heatmap[0].sum() == 0 and tgt.heatmap[1, 2].max() == 1


def test_gaussian_focal_loss_formula():
    torch.manual_seed(0)
    prob = torch.rand(2, 3, 5, 5).clamp(1e-4, 1 - 1e-4)
    target = torch.rand(2, 3, 5, 5) * 0.9
    target[0, 1, 2, 2] = 1.0
    target[1, 0, 4, 0] = 1.0
    expected = 0.0
    for p, t in zip(prob.flatten().tolist(), target.flatten().tolist(), strict=True):
        if t == 1.0:
            expected += -math.log(p) * (1 - p) ** 2
        else:
            expected += -math.log(1 - p) * p**2 * (1 - t) ** 4
    loss = gaussian_focal_loss(prob, target, normalizer=2.0)
    assert loss.item() == pytest.approx(expected / 2, rel=1e-5)


def test_paired_iou_matches_pairwise_diagonal():
    torch.manual_seed(0)
    a = torch.cat([torch.randn(20, 3), torch.rand(20, 3) * 3 + 0.5, torch.randn(20, 1) * 3], dim=1)
    b = a + torch.cat([torch.randn(20, 3) * 0.5, torch.randn(20, 3) * 0.2, torch.randn(20, 1) * 0.3], dim=1)
    b[:, 3:6] = b[:, 3:6].abs() + 0.1
    expected = torch.diagonal(boxes_iou_3d(a, b))
    torch.testing.assert_close(paired_iou_3d(a, b), expected, atol=1e-5, rtol=1e-4)
    assert expected.min() < 0.5 < expected.max()  # the pairs overlap partially, not trivially


def perfect_outputs(head: CenterHead, boxes, labels, batch_index, batch_size, peak_logits=None) -> CenterHeadOutputs:
    """Dense outputs that predict ``boxes`` exactly: logit +8 at each centre (or ``peak_logits``), -12
    elsewhere, the encoded regression values at the centre cells, IoU 1."""
    _, gy, gx = head.grid.shape
    h, w = gy // head.out_size_factor, gx // head.out_size_factor
    tasks = []
    for t, names in enumerate(head.tasks):
        heat = torch.full((batch_size, len(names), h, w), -12.0)
        code = torch.zeros(batch_size, head.code_size, h, w)
        for i in range(boxes.shape[0]):
            local = int(labels[i]) - head.class_offsets[t]
            if not 0 <= local < len(names):
                continue
            cx, cy = head.coder.cell_coords(boxes[i : i + 1, :2])[0].floor().long().tolist()
            b = int(batch_index[i])
            enc = head.coder.encode(boxes[i : i + 1], torch.tensor([cx]), torch.tensor([cy]), head.with_velocity)
            code[b, :, cy, cx] = enc[0]
            heat[b, local, cy, cx] = 8.0 if peak_logits is None else peak_logits[i]
        c = code.split([2, 1, 3, 2, 2] if head.with_velocity else [2, 1, 3, 2], dim=1)
        tasks.append(
            TaskOutputs(
                heatmap=heat,
                center=c[0],
                height=c[1],
                dim=c[2],
                rot=c[3],
                vel=c[4] if head.with_velocity else None,
                iou=torch.ones(batch_size, 1, h, w) if head.with_iou else None,
            )
        )
    return CenterHeadOutputs(tuple(tasks))


def test_decode_round_trip_with_nms():
    head = small_head().eval()
    boxes = torch.tensor(
        [
            [1.45, 2.3, 0.4, 4.5, 2.0, 1.6, 0.3, 1.5, -0.5],  # x: cell 18, offset 0.9
            [-5.2, 3.7, -0.3, 0.8, 0.7, 1.8, -2.0, 0.0, 0.5],
            [4.0, -6.0, 0.1, 1.9, 0.6, 1.7, 3.0, 0.0, 0.0],
            [1.55, 2.3, 0.4, 4.5, 2.0, 1.6, 0.3, 1.5, -0.5],  # box 0 moved 0.1 m: cell 19, IoU ~0.93
            [0.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0],  # frame 1
        ]
    )
    labels = torch.tensor([0, 1, 2, 0, 0])
    batch_index = torch.tensor([0, 0, 0, 0, 1])
    logits = [8.0, 6.0, 7.0, 3.0, 5.0]
    dets = head.decode(perfect_outputs(head, boxes, labels, batch_index, 2, logits))
    assert len(dets) == 2
    d0 = dets[0]
    assert d0.labels.tolist() == [0, 1, 2]  # the duplicate (IoU ~0.9 > 0.8) was suppressed
    torch.testing.assert_close(d0.boxes, boxes[:3], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(d0.scores, torch.sigmoid(torch.tensor(logits[:3])))  # IoU 1: score = prob
    torch.testing.assert_close(dets[1].boxes, boxes[4:], atol=1e-5, rtol=1e-5)
    assert dets[1].labels.tolist() == [0]

    # With NMS loose enough, the duplicate survives (so it was NMS that removed it).
    loose = small_head(nms_iou_thresholds=0.99).eval()
    loose.load_state_dict(head.state_dict())
    d = loose.decode(perfect_outputs(head, boxes, labels, batch_index, 2, logits))[0]
    assert d.labels.tolist() == [0, 0, 1, 2]


def test_decode_iou_rectification_threshold_and_range():
    head = small_head(iou_power=(2.0, 1.0, 1.0), post_center_range=(-8, -8, -1, 8, 8, 1)).eval()
    boxes = torch.tensor(
        [
            [1.1, 2.3, 0.4, 4.5, 2.0, 1.6, 0.3, 0.0, 0.0],
            [-5.2, 3.7, 2.5, 0.8, 0.7, 1.8, -2.0, 0.0, 0.0],  # z = 2.5 outside post_center_range
            [4.0, -6.0, 0.1, 1.9, 0.6, 1.7, 3.0, 0.0, 0.0],  # probability 0.05 < score threshold
        ]
    )
    out = perfect_outputs(head, boxes, torch.tensor([0, 1, 2]), torch.zeros(3, dtype=torch.long), 1, [2.0, 2.0, -3.0])
    out.tasks[0].iou.fill_(0.5)
    d = head.decode(out)[0]
    assert d.labels.tolist() == [0]
    torch.testing.assert_close(d.scores, torch.sigmoid(torch.tensor([2.0])) * 0.25)


def test_rectified_scores_dsvt_form():
    torch.manual_seed(0)
    logits, iou = torch.randn(1, 3, 4, 4), torch.rand(1, 1, 4, 4) * 2 - 1
    alpha = torch.tensor([0.68, 0.71, 0.65])
    prob, score = rectified_scores(logits, iou, 1 - alpha, alpha, iou_signed=True)
    q = ((iou + 1) / 2).clamp(0, 1)
    expected = prob ** (1 - alpha.view(1, 3, 1, 1)) * q ** alpha.view(1, 3, 1, 1)
    torch.testing.assert_close(score, expected)


def test_loss_values_at_perfect_prediction():
    head = small_head()
    boxes = torch.tensor([[1.1, 2.3, 0.4, 4.5, 2.0, 1.6, 0.3, 1.5, -0.5], [-5.2, 3.7, -0.3, 0.8, 0.7, 1.8, -2, 0, 0]])
    labels, bidx = torch.tensor([0, 1]), torch.tensor([0, 1])
    out = perfect_outputs(head, boxes, labels, bidx, 2)
    losses = head.loss(out, boxes, labels, bidx, 2)
    assert losses["loss_bbox"].item() == pytest.approx(0.0, abs=1e-4)
    assert losses["loss_iou"].item() == pytest.approx(0.0, abs=1e-4)  # decoded box == target: IoU 1
    # One regression column off by 0.5 on one object: 2 (bbox weight) * 1 (code weight) * 0.5 / 2 objects.
    out.tasks[0].height[0, 0, 20, 18] += 0.5
    losses = head.loss(out, boxes, labels, bidx, 2)
    assert losses["loss_bbox"].item() == pytest.approx(2 * 0.5 / 2, rel=1e-3)
    # Velocity has code weight 0 in FlatFormer.
    out.tasks[0].height[0, 0, 20, 18] -= 0.5
    out.tasks[0].vel[0, :, 20, 18] += 3.0
    assert head.loss(out, boxes, labels, bidx, 2)["loss_bbox"].item() == pytest.approx(0.0, abs=1e-4)


def test_empty_ground_truth_gives_finite_losses_and_gradients():
    torch.manual_seed(0)
    head = small_head()
    feats = torch.randn(2, 8, 32, 32)
    losses = head.loss(
        head(feats), torch.zeros(0, 9), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), 2
    )
    assert set(losses) == {"loss_heatmap", "loss_bbox", "loss_iou"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_heatmap"] > 0 and losses["loss_bbox"] == 0
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)


def test_batch_with_one_empty_frame():
    torch.manual_seed(0)
    head = small_head()
    feats = torch.randn(2, 8, 32, 32)
    boxes = torch.tensor([[1.1, 2.3, 0.4, 4.5, 2.0, 1.6, 0.3, 1.5, -0.5]])
    labels, bidx = torch.tensor([0]), torch.tensor([1])  # frame 0 empty
    losses = head.loss(head(feats), boxes, labels, bidx, 2)
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_bbox"] > 0
    head.eval()
    dets = head.decode(head(feats))
    assert len(dets) == 2 and all(d.boxes.shape[1] == 9 for d in dets)


def test_multi_task_labels_and_loss_names():
    tasks = [["car"], ["truck", "bus"], ["pedestrian"]]
    head = small_head(tasks=tasks, nms_iou_thresholds=0.5, pre_max_sizes=100, post_max_sizes=50).eval()
    assert head.class_names == ("car", "truck", "bus", "pedestrian")
    boxes = torch.tensor(
        [
            [1.1, 2.3, 0.4, 4.5, 2.0, 1.6, 0.3, 0, 0],
            [-5.2, 3.7, -0.3, 10.0, 2.5, 3.0, -2.0, 0, 0],
            [4.0, -6.0, 0.1, 0.6, 0.6, 1.7, 3.0, 0, 0],
        ]
    )
    labels, bidx = torch.tensor([0, 2, 3]), torch.zeros(3, dtype=torch.long)
    out = perfect_outputs(head, boxes, labels, bidx, 1)
    assert [t.heatmap.shape[1] for t in out.tasks] == [1, 2, 1]
    assert out.tasks[1].heatmap[0, 1].max() == 8.0  # "bus" is class 1 of task 1
    d = head.decode(out)[0]
    assert d.labels.tolist() == [0, 2, 3]
    torch.testing.assert_close(d.boxes, boxes, atol=1e-5, rtol=1e-5)
    head.train()
    losses = head.loss(head(torch.randn(1, 8, 32, 32)), boxes, labels, bidx, 1)
    assert set(losses) == {f"loss_{n}_task{t}" for n in ("heatmap", "bbox", "iou") for t in range(3)}
    assert all(torch.isfinite(v) for v in losses.values())


def test_bad_arguments():
    with pytest.raises(ValueError, match="one value per class"):
        small_head(tasks=[["a", "b"]])  # default thresholds are for 3 classes
    head = small_head()
    with pytest.raises(ValueError, match="head map"):
        head.loss(head(torch.randn(1, 8, 16, 16)), torch.zeros(0, 9), torch.zeros(0), torch.zeros(0), 1)


def test_loss_decreases_when_optimising_the_head():
    torch.manual_seed(0)
    grid = VoxelGrid((-4, -4, -2, 4, 4, 4), (0.5, 0.5, 6))  # 16 x 16
    # Narrow towers: the test is about the losses and targets, not capacity (and CPU time matters).
    head = CenterHead(8, [CLASSES], grid, shared_channels=16, head_channels=16, post_center_range=None)
    feats = torch.randn(2, 8, 16, 16)
    boxes = torch.tensor(
        [[1.1, 1.3, 0.4, 3.0, 1.5, 1.6, 0.3, 0, 0], [-2.2, 1.7, -0.3, 0.8, 0.7, 1.8, -2.0, 0, 0],
         [0.5, -2.5, 0.1, 1.8, 0.6, 1.7, 2.0, 0, 0]]
    )  # fmt: skip
    labels, bidx = torch.tensor([0, 1, 2]), torch.tensor([0, 0, 1])
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    history = []
    for _ in range(40):
        losses = head.loss(head(feats), boxes, labels, bidx, 2)
        total = sum(losses.values())
        opt.zero_grad()
        total.backward()
        opt.step()
        history.append({k: v.item() for k, v in losses.items()})
    first, last = history[0], history[-1]
    assert sum(last.values()) < 0.3 * sum(first.values())
    assert last["loss_heatmap"] < first["loss_heatmap"] and last["loss_bbox"] < 0.3 * first["loss_bbox"]
