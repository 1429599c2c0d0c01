"""Box geometry: IoU (BEV and 3D), rotated and circle NMS, points in boxes."""

from __future__ import annotations

import math

import pytest
import torch

from pointformer.ops import boxes_iou_3d, boxes_iou_bev, circle_nms, nms_bev, points_in_boxes
from pointformer.ops.boxes import (
    boxes_iou_reference,
    circle_nms_sorted_reference,
    nms_bev_sorted_reference,
    points_in_boxes_reference,
)
from pointformer.structures import Boxes3D


def random_boxes(n: int, generator: torch.Generator, spread: float = 6.0, dtype=torch.float64) -> torch.Tensor:
    """Boxes clustered in a small area so that many pairs overlap."""
    b = torch.rand(n, 7, generator=generator, dtype=torch.float64)
    b[:, :2] = (b[:, :2] * 2 - 1) * spread
    b[:, 2] = b[:, 2] * 2 - 1
    b[:, 3:6] = b[:, 3:6] * 4 + 0.3
    b[:, 6] = (b[:, 6] * 2 - 1) * 4  # beyond [-pi, pi) on purpose
    return b.to(dtype)


def box(x, y, z, dx, dy, dz, heading):
    return torch.tensor([[x, y, z, dx, dy, dz, heading]], dtype=torch.float64)


# --- IoU -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("is_3d", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_iou_matches_reference(device, generator, is_3d, dtype):
    a, b = random_boxes(60, generator, 4.0, dtype), random_boxes(45, generator, 4.0, dtype)
    fn = boxes_iou_3d if is_3d else boxes_iou_bev
    got = fn(a.to(device), b.to(device)).cpu()
    want = boxes_iou_reference(a, b, is_3d)
    assert (want > 0.05).float().mean() > 0.1, "the case should have many overlapping pairs"
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got, want, **tol)


def test_iou_against_rasterization(generator):
    """An independent check of the clipping: count grid samples inside both rectangles."""
    a, b = random_boxes(6, generator, spread=1.5), random_boxes(6, generator, spread=1.5)
    step = 0.01
    xs = torch.arange(-9, 9, step, dtype=torch.float64) + step / 2
    grid = torch.stack(torch.meshgrid(xs, xs, indexing="xy"), dim=-1).reshape(-1, 2)
    pts = torch.cat([grid, torch.zeros(grid.shape[0], 1, dtype=torch.float64)], dim=1)

    def flat(t):  # the same rectangles, all at z = 0 and 10 m tall, so that only x, y matter
        return torch.cat([t[:, :2], torch.zeros_like(t[:, :1]), t[:, 3:5], torch.full_like(t[:, :1], 10), t[:, 6:7]], 1)

    in_a = points_in_boxes_reference(pts, flat(a)).double()
    in_b = points_in_boxes_reference(pts, flat(b)).double()
    inter = (in_a.T @ in_b) * step**2
    area_a, area_b = a[:, 3] * a[:, 4], b[:, 3] * b[:, 4]
    raster_iou = inter / (area_a[:, None] + area_b[None] - inter)
    assert (raster_iou > 0.05).sum() >= 6
    torch.testing.assert_close(boxes_iou_bev(a, b), raster_iou, rtol=0, atol=0.01)


def test_iou_known_values(device):
    unit = box(0, 0, 0, 1, 1, 1, 0)
    cases = [
        (unit, unit, 1.0),  # identical
        (unit, box(0, 0, 0, 1, 1, 1, math.pi), 1.0),  # rotated by pi
        (box(0, 0, 0, 2, 1, 1, 0), box(0, 0, 0, 1, 2, 1, math.pi / 2), 1.0),  # rotated by pi/2, swapped dims
        (unit, box(0.5, 0, 0, 1, 1, 1, 0), 0.5 / 1.5),  # half overlap
        (unit, box(0.5, 0.5, 0, 1, 1, 1, 0), 0.25 / 1.75),  # corner overlap
        (unit, box(1.0, 0, 0, 1, 1, 1, 0), 0.0),  # touching edges
        (unit, box(5, 5, 0, 1, 1, 1, 0.3), 0.0),  # far apart
        (unit, box(0, 0, 0, 2, 2, 1, 0.7), 0.25),  # nested (rotated container)
        # Same centre, rotated by 45 degrees: the overlap is a regular octagon, 2 (sqrt 2 - 1).
        (unit, box(0, 0, 0, 1, 1, 1, math.pi / 4), 2 * (math.sqrt(2) - 1) / (2 - 2 * (math.sqrt(2) - 1))),
        (unit, box(0, 0, 0, 0, 1, 1, 0), 0.0),  # degenerate: zero length
        (box(0, 0, 0, 0, 0, 0, 0), box(0, 0, 0, 0, 0, 0, 0), 0.0),  # both degenerate
    ]
    for a, b, expected in cases:
        got = boxes_iou_bev(a.to(device), b.to(device)).item()
        assert got == pytest.approx(expected, abs=1e-12), (a.tolist(), b.tolist())
        assert boxes_iou_bev(b.to(device), a.to(device)).item() == pytest.approx(expected, abs=1e-12)
    # 3D: same BEV footprint, z overlap of half the height.
    got = boxes_iou_3d(box(0, 0, 0, 1, 1, 2, 0).to(device), box(0, 0, 1, 1, 1, 2, 0).to(device)).item()
    assert got == pytest.approx(1 / 3, abs=1e-12)
    # Far from the origin in float32: coordinates are taken relative to the first box.
    far = torch.tensor([[70.0, -70.0, 0.0, 4.5, 2.0, 1.6, 0.3]], device=device)
    assert boxes_iou_3d(far, far).item() == pytest.approx(1.0, abs=1e-5)


def test_iou_empty(device):
    a = torch.zeros(0, 7, device=device)
    assert boxes_iou_bev(a, torch.zeros(3, 7, device=device)).shape == (0, 3)
    assert boxes_iou_3d(torch.zeros(2, 9, device=device), a).shape == (2, 0)


# --- NMS -----------------------------------------------------------------------------------------


def test_nms_known_case(device):
    boxes = torch.cat([
        box(0, 0, 0, 4, 2, 1.5, 0),  # A
        box(0.2, 0, 0, 4, 2, 1.5, 0.05),  # overlaps A strongly
        box(10, 0, 0, 4, 2, 1.5, 0),  # alone
        box(0.0, 0.0, 0, 4, 2, 1.5, math.pi),  # A turned around: IoU 1 with A
        box(2.0, 0, 0, 4, 2, 1.5, 0),  # IoU(A) = 1/3: kept at 0.5
    ]).to(device)  # fmt: skip
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95, 0.6], device=device)
    assert nms_bev(boxes, scores, 0.5).cpu().tolist() == [3, 2, 4]
    # Suppression is strict: IoU equal to the threshold keeps the box.
    assert nms_bev(boxes[[0, 4]], scores[[0, 4]], 1 / 3 + 1e-9).cpu().tolist() == [0, 1]
    # Equal scores keep input order.
    assert nms_bev(boxes[[1, 0]], torch.ones(2, device=device), 0.5).cpu().tolist() == [0]


@pytest.mark.parametrize("threshold", [0.1, 0.5, 0.7])
def test_nms_matches_reference(device, generator, threshold):
    boxes = random_boxes(300, generator, spread=10.0, dtype=torch.float32)
    scores = torch.rand(300, generator=generator)
    got = nms_bev(boxes.to(device), scores.to(device), threshold).cpu()
    order = torch.sort(scores, descending=True, stable=True).indices
    want = order[nms_bev_sorted_reference(boxes[order], threshold)]
    assert torch.equal(got, want)
    assert 10 < got.numel() < 300


def test_circle_nms(device, generator):
    centres = torch.tensor([[0.0, 0.0], [0.5, 0.0], [3.0, 0.0], [3.0, 1.0], [0.0, 1.0]], device=device)
    scores = torch.tensor([0.9, 0.95, 0.5, 0.6, 0.1], device=device)
    # Distance 1.0 is inclusive (3 removes 2); 0 is removed by 1 and so cannot remove 4.
    assert circle_nms(centres, scores, 1.0).cpu().tolist() == [1, 3, 4]
    assert circle_nms(centres, scores, 0.4).cpu().tolist() == [1, 0, 3, 2, 4]
    boxes = random_boxes(400, generator, spread=20.0, dtype=torch.float32)
    s = torch.rand(400, generator=generator)
    order = torch.sort(s, descending=True, stable=True).indices
    want = order[circle_nms_sorted_reference(boxes[order], 1.5)]
    assert torch.equal(circle_nms(boxes.to(device), s.to(device), 1.5).cpu(), want)


def test_nms_empty_and_single(device):
    empty = torch.zeros(0, 7, device=device)
    assert nms_bev(empty, torch.zeros(0, device=device), 0.5).numel() == 0
    assert circle_nms(empty, torch.zeros(0, device=device), 1.0).numel() == 0
    one = box(0, 0, 0, 1, 1, 1, 0).float().to(device)
    assert nms_bev(one, torch.ones(1, device=device), 0.5).cpu().tolist() == [0]


# --- points in boxes -----------------------------------------------------------------------------


def test_points_in_boxes_known(device):
    boxes = torch.cat([box(0, 0, 0, 4, 2, 2, 0), box(10, 0, 0, 4, 2, 2, math.pi / 2)]).to(device)
    points = torch.tensor([
        [0.0, 0.0, 0.0],  # centre of box 0
        [2.0, 1.0, 1.0],  # corner of box 0: on the faces counts as inside
        [2.01, 0.0, 0.0],  # just outside box 0 in x
        [10.0, 1.9, 0.0],  # box 1 is turned: its length runs along y
        [11.5, 0.0, 0.0],  # outside box 1 (its width is 2 along x)
        [0.0, 0.0, 1.01],  # above box 0
    ], dtype=torch.float64, device=device)  # fmt: skip
    mask = points_in_boxes(points, boxes).cpu()
    assert mask.tolist() == [
        [True, False],
        [True, False],
        [False, False],
        [False, True],
        [False, False],
        [False, False],
    ]


def test_points_in_boxes_matches_reference(device, generator):
    boxes = random_boxes(30, generator)
    points = torch.randn(4000, 4, generator=generator, dtype=torch.float64) * 5
    got = points_in_boxes(points.to(device), Boxes3D(boxes).to(device)).cpu()
    assert torch.equal(got, points_in_boxes_reference(points, boxes))
    assert got.any(dim=1).float().mean() > 0.05
    assert points_in_boxes(torch.zeros(0, 3, device=device), boxes.to(device)).shape == (0, 30)
    assert points_in_boxes(points.to(device), torch.zeros(0, 7, device=device)).shape == (4000, 0)


def test_bad_boxes_are_rejected():
    with pytest.raises(ValueError, match=r"boxes_a must have shape \(N, >=7\)"):
        boxes_iou_bev(torch.zeros(3, 5), torch.zeros(2, 7))
    with pytest.raises(ValueError, match="scores must have shape"):
        nms_bev(torch.zeros(3, 7), torch.zeros(2), 0.5)
    with pytest.raises(ValueError, match="float32 or float64"):
        points_in_boxes(torch.zeros(3, 3), torch.zeros(2, 7, dtype=torch.float16))


def test_opcheck(device, generator):
    a = random_boxes(12, generator, dtype=torch.float32).to(device)
    b = random_boxes(7, generator, dtype=torch.float32).to(device)
    points = torch.randn(50, 3, generator=generator).to(device) * 4
    torch.library.opcheck(torch.ops.pointformer.boxes_iou, (a, b, True))
    torch.library.opcheck(torch.ops.pointformer.boxes_iou, (a, b, False))
    torch.library.opcheck(torch.ops.pointformer.nms_bev_sorted, (a, 0.3))
    torch.library.opcheck(torch.ops.pointformer.circle_nms_sorted, (a, 1.0))
    torch.library.opcheck(torch.ops.pointformer.points_in_boxes, (points, a))
