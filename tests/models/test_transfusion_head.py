"""TransFusionHead's parts on small hand-made inputs: the query selection (local maxima, the
single-cell classes, the map border, the (X, Y) layout), the box encoding against the decode, the
Hungarian matching against brute force, the losses' names and the decode's NMS classes, config errors."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from pointformer.models.heads.hungarian import focal_cost, hungarian_assign
from pointformer.models.heads.query_decode import query_boxes
from pointformer.models.heads.transfusion_head import TransFusionHead
from pointformer.models.heads.transfusion_loss import encode_boxes
from pointformer.structures import VoxelGrid

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ("car", "pedestrian", "traffic_cone")
GRID = VoxelGrid.from_config([-6.0, -4.0, -3.0, 6.0, 4.0, 3.0], [0.5, 0.5, 6.0])  # 24 x 16 cells: map 12 x 8


def _head(**kw) -> TransFusionHead:
    torch.manual_seed(0)
    args = dict(hidden_channels=16, num_heads=2, ffn_channels=32, head_channels=8, num_proposals=4,
                single_cell_classes=("pedestrian",), with_iou=True, iou_weight=0.5, iou_rectifier=0.5,
                nms_iou_thresholds={"pedestrian": 0.1}, post_center_range=None)  # fmt: skip
    args.update(kw)
    return TransFusionHead(8, NAMES, GRID, **args).eval()


class _Fixed(nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits


@pytest.mark.parametrize("xy_layout", [False, True])
def test_query_selection(xy_layout):
    head = _head(xy_layout=xy_layout)
    h, w = head.map_size()
    assert (h, w) == (8, 12)
    logits = torch.full((1, 3, h, w), -8.0)
    logits[0, 0, 3, 5] = 3.0  # car peak at (ix 5, iy 3)
    logits[0, 0, 3, 6] = 2.0  # its neighbour: not a local maximum
    logits[0, 0, 0, 2] = 4.0  # on the border: never a local maximum (the official's unpadded max-pool)
    logits[0, 1, 5, 9] = 1.0  # pedestrian: every cell counts, so both
    logits[0, 1, 5, 10] = 0.5
    logits[0, 2, 6, 1] = 0.0  # traffic cone (filtered here: not a single-cell class)
    head.heatmap_head = _Fixed(logits.transpose(2, 3) if xy_layout else logits)
    out = head(torch.randn(1, 8, h, w))
    cells = [(int(c) % w, int(c) // w) for c in out.query_cells[0]]
    assert out.query_labels[0].tolist() == [0, 1, 1, 2]
    assert cells == [(5, 3), (9, 5), (10, 5), (1, 6)]
    torch.testing.assert_close(out.dense_heatmap, logits)
    prob = logits.sigmoid()
    # Each query's heatmap scores: every class's filtered probability at its cell.
    assert torch.allclose(out.query_score[0, :, 0], prob[0, :, 3, 5])
    assert torch.allclose(out.query_score[0, 1, 2], prob[0, 1, 5, 10])  # beside a higher one: single-cell class


def test_box_encoding_round_trip():
    head = _head()
    s = head.decode_settings()
    boxes = torch.tensor([[1.3, -2.1, 0.4, 4.2, 1.9, 1.6, 0.7, 1.5, -0.5],
                          [-5.0, 3.0, -1.0, 0.6, 0.7, 1.8, -2.9, 0.0, 0.0]])  # fmt: skip
    code = encode_boxes(boxes, s.range_min, s.cell_size, True)
    # Centre in map cells of 1 m from the low corner, z the box top (the official encoding).
    assert torch.allclose(code[:, 0], boxes[:, 0] + 6.0) and torch.allclose(code[:, 2], boxes[:, 2] + boxes[:, 5] / 2)
    torch.testing.assert_close(query_boxes(code.t()[None], s)[0], boxes, rtol=1e-5, atol=1e-5)


def test_hungarian_equals_brute_force(generator):
    logits = torch.randn(5, 3, generator=generator)
    boxes = torch.cat([torch.rand(5, 3, generator=generator) * 8 - 4, torch.rand(5, 3, generator=generator) + 1,
                       torch.zeros(5, 1)], 1)  # fmt: skip
    gt = boxes[[3, 0, 4]] + 0.2
    labels = torch.tensor([0, 2, 1])
    pcr = GRID.point_cloud_range
    a = hungarian_assign(logits, boxes, gt, labels, pcr, (0.15, 0.25, 0.25))
    from pointformer.ops import boxes_iou_3d

    lo, size = torch.tensor(pcr[:2]), torch.tensor(pcr[3:5]) - torch.tensor(pcr[:2])
    cost = (0.15 * focal_cost(logits, labels, 0.25, 2.0) + 0.25 * torch.cdist((boxes[:, :2] - lo) / size,
            (gt[:, :2] - lo) / size, p=1) - 0.25 * boxes_iou_3d(boxes, gt))  # fmt: skip
    best = min(itertools.permutations(range(5), 3), key=lambda q: sum(float(cost[q[j], j]) for j in range(3)))
    assert sorted(zip(a.gt.tolist(), a.query.tolist(), strict=True)) == [(j, best[j]) for j in range(3)]
    empty = hungarian_assign(logits, boxes, gt[:0], labels[:0], pcr, (0.15, 0.25, 0.25))
    assert empty.query.numel() == 0


def test_losses_and_decode():
    head = _head(num_proposals=10, iou_reg_weight=0.5).train()
    x = torch.randn(2, 8, 8, 12)
    out = head(x)
    boxes = torch.tensor([[0.5, 0.5, 0.0, 4.0, 2.0, 1.5, 0.3, 1.0, 0.0], [3.0, -2.0, 0.0, 0.6, 0.6, 1.7, 0.0, 0.0, 0.0],
                          [-3.0, 1.0, 0.0, 4.0, 2.0, 1.5, 0.0, float("nan"), float("nan")]])  # fmt: skip
    losses = head.loss(out, boxes, torch.tensor([0, 1, 0]), torch.tensor([0, 0, 1]), 2)
    assert set(losses) == {"loss_cls", "loss_bbox", "loss_heatmap", "loss_iou", "loss_iou_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert head.shared_conv.weight.grad.abs().sum() > 0 and head.class_encoding.weight.grad.abs().sum() > 0
    # A frame without boxes: every query a negative, no box loss.
    none = head.loss(head(x[:1]), boxes[:0], torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), 1)
    assert float(none["loss_bbox"].detach()) == 0.0 and float(none["loss_cls"].detach()) > 0
    head.eval()
    with torch.no_grad():
        dets = head.decode(head(x))
    assert len(dets) == 2 and all(d.boxes.shape[1] == 9 for d in dets)
    assert head.decode_settings().nms_iou_thresholds == (-1.0, 0.1, -1.0)


def test_config_errors():
    with pytest.raises(ValueError, match="single_cell_classes"):
        _head(single_cell_classes=("bus",))
    with pytest.raises(ValueError, match="nms_iou_thresholds"):
        _head(nms_iou_thresholds={"truck": 0.2})
    with pytest.raises(ValueError, match="nms_kernel_size"):
        _head(nms_kernel_size=2)
    with pytest.raises(ValueError, match="iou_weight"):
        _head(with_iou=False)
    with pytest.raises(ValueError, match="map is"):
        _head()(torch.randn(1, 8, 8, 8))
