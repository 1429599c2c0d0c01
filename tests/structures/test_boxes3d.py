"""Boxes3D: corners, heading normalization, rigid motions."""

import math

import pytest
import torch

from pointformer.structures import Boxes3D, rotation_z, wrap_angle


def test_corners_of_an_axis_aligned_box():
    boxes = Boxes3D(torch.tensor([[1.0, 2.0, 3.0, 4.0, 2.0, 1.0, 0.0]]))
    corners = boxes.corners()[0]
    assert corners.shape == (8, 3)
    # Bottom face first, counter-clockwise from rear-right; then the top face.
    expected = [
        [-1, 1, 2.5],
        [3, 1, 2.5],
        [3, 3, 2.5],
        [-1, 3, 2.5],
        [-1, 1, 3.5],
        [3, 1, 3.5],
        [3, 3, 3.5],
        [-1, 3, 3.5],
    ]
    torch.testing.assert_close(corners, torch.tensor(expected))
    torch.testing.assert_close(boxes.bev_corners()[0], torch.tensor(expected)[:4, :2])


def test_corners_follow_heading():
    # Heading pi/2: the box's front (+x) points along the frame's +y.
    corners = Boxes3D(torch.tensor([[0.0, 0.0, 0.0, 4.0, 2.0, 2.0, math.pi / 2]])).bev_corners()[0]
    torch.testing.assert_close(
        corners, torch.tensor([[1.0, -2.0], [1.0, 2.0], [-1.0, 2.0], [-1.0, -2.0]]), atol=1e-6, rtol=0
    )


def test_wrap_angle_is_half_open():
    angles = torch.tensor([-math.pi, math.pi, 3 * math.pi, -3 * math.pi, 0.5, 7.0, -7.0], dtype=torch.float64)
    wrapped = wrap_angle(angles)
    assert torch.all(wrapped >= -math.pi) and torch.all(wrapped < math.pi)
    torch.testing.assert_close(torch.cos(wrapped), torch.cos(angles))
    torch.testing.assert_close(torch.sin(wrapped), torch.sin(angles))
    assert wrapped[1].item() == pytest.approx(-math.pi)


def test_normalize_heading_keeps_the_box():
    t = torch.tensor([[1.0, 2.0, 0.5, 4.0, 2.0, 1.5, 5.0], [0, 0, 0, 1, 1, 1, -4.0]], dtype=torch.float64)
    boxes = Boxes3D(t)
    normalized = boxes.normalize_heading()
    assert torch.all(normalized.heading.abs() <= math.pi)
    torch.testing.assert_close(normalized.corners(), boxes.corners())
    assert boxes.tensor[0, 6] == 5.0, "never in place"


def test_rotate_moves_corners_and_velocity_rigidly():
    t = torch.tensor([[10.0, -3.0, 1.0, 4.5, 2.0, 1.6, 0.4, 2.0, -1.0]], dtype=torch.float64)
    boxes = Boxes3D(t)
    angle = 0.7
    rotated = boxes.rotate(angle)
    rot = rotation_z(torch.tensor(angle, dtype=torch.float64))
    torch.testing.assert_close(rotated.corners(), boxes.corners() @ rot.T)
    torch.testing.assert_close(rotated.velocity, boxes.velocity @ rot[:2, :2].T)
    torch.testing.assert_close(
        rotated.translate([1.0, 2.0, 3.0]).center, rotated.center + torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    )


def test_validation_and_container_behaviour():
    with pytest.raises(ValueError, match=r"Boxes3D.tensor must have shape \(N, 7\)"):
        Boxes3D(torch.zeros(3, 8))
    with pytest.raises(ValueError, match="floating"):
        Boxes3D(torch.zeros(3, 7, dtype=torch.long))
    boxes = Boxes3D(torch.arange(21, dtype=torch.float32).reshape(3, 7))
    assert len(boxes) == 3 and len(boxes[1]) == 1 and len(boxes[torch.tensor([True, False, True])]) == 2
    assert len(Boxes3D.cat([boxes, Boxes3D.empty()])) == 3
    assert boxes.velocity is None and not boxes.has_velocity
    torch.testing.assert_close(boxes.volume(), boxes.dims.prod(1))


def test_box_ops_take_boxes3d():
    # The overlap ops live in pointformer.ops (structures import no ops) and accept a Boxes3D.
    from pointformer.ops import boxes_iou_3d, boxes_iou_bev, points_in_boxes

    a = Boxes3D(torch.tensor([[0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 0.0]]))
    b = Boxes3D(torch.tensor([[1.0, 0.0, 0.0, 2.0, 2.0, 2.0, 0.0]]))
    assert boxes_iou_bev(a, b).item() == pytest.approx(1 / 3)
    assert boxes_iou_3d(a, b).item() == pytest.approx(1 / 3)
    assert points_in_boxes(torch.tensor([[0.5, 0.5, 0.5], [3.0, 0.0, 0.0]]), a).flatten().tolist() == [True, False]
