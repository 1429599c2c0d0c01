"""Whole frames: determinism, point counts, points on surfaces, labels and their point counts."""

import math

import numpy as np
import pytest
import torch

from pointformer.data.synthetic.classes import CLASSES, WAYMO_TYPES
from pointformer.data.synthetic.labels import LEVEL_1, LEVEL_2
from pointformer.data.synthetic.raycast import SURFACE_GROUND, SURFACE_OBJECT
from pointformer.data.synthetic.scene import bev_overlaps
from pointformer.data.synthetic.sequence import generate_sequence
from pointformer.ops.boxes import boxes_iou_bev, points_in_boxes_reference

SEED = 0


@pytest.fixture(scope="module")
def sequence():
    return generate_sequence(SEED, 3)


@pytest.fixture(scope="module")
def frame(sequence):
    return sequence[0]


def test_determinism(sequence, frame):
    again = generate_sequence(SEED, 3)[0]
    for a, b in zip(frame.scans, again.scans, strict=True):
        np.testing.assert_array_equal(a.range_image, b.range_image)
        np.testing.assert_array_equal(a.range_image_return2, b.range_image_return2)
        np.testing.assert_array_equal(a.hit_object, b.hit_object)
    np.testing.assert_array_equal(frame.labels.boxes, again.labels.boxes)
    np.testing.assert_array_equal(frame.labels.ids, again.labels.ids)
    np.testing.assert_array_equal(frame.pose, again.pose)
    other = generate_sequence(SEED + 1, 1)[0]
    assert not np.array_equal(other.labels.boxes[:5], frame.labels.boxes[:5])


def test_frame_structure(sequence, frame):
    assert [s.spec.name for s in frame.scans] == ["TOP", "FRONT", "SIDE_LEFT", "SIDE_RIGHT", "REAR"]
    top = frame.scan("TOP")
    assert top.range_image.shape == (64, 2650, 4) and top.range_image.dtype == np.float32
    assert frame.scan("REAR").range_image.shape == (200, 600, 4)
    assert top.hit_object.dtype == np.int32
    no_return = top.range_image[..., 0] <= 0
    assert np.all(top.range_image[no_return] == -1.0)
    assert np.all(top.range_image[~no_return, 3] == -1.0)  # not in a no-label zone
    assert np.all(top.hit_object[no_return] == -1)
    assert frame.pose.shape == (4, 4) and frame.pose.dtype == np.float64
    f1 = sequence[1]
    assert f1.timestamp_micros - frame.timestamp_micros == 100_000
    assert frame.is_keyframe and f1.is_keyframe
    # The ego moves along the road at its speed.
    step = np.linalg.norm(f1.pose[:3, 3] - frame.pose[:3, 3])
    assert step == pytest.approx(sequence.scene.ego.speed * 0.1, rel=0.02)


def test_waymo_point_count(frame):
    points = frame.points()
    assert points.shape[1] == 6 and points.dtype == np.float32
    n_top = len(frame.points(("TOP",)))
    n_r2 = len(frame.points(returns=(1,)))
    print(f"\nWaymo frame: {len(points)} points (TOP {n_top}, second returns {n_r2}), {len(frame.labels)} labels")
    assert 150_000 <= len(points) <= 190_000
    assert 0 < n_r2 < 0.1 * len(points)
    assert len(points) - n_top > 5_000  # the short-range lasers contribute


def test_nuscenes_keyframe_point_count():
    seq = generate_sequence(SEED, 11, "nuscenes")
    assert seq.frame_rate == 20.0
    f = seq[10]
    assert f.is_keyframe and not seq[1].is_keyframe
    assert seq[1].timestamp_micros - seq[0].timestamp_micros == 50_000
    points = f.points()
    print(f"\nnuScenes keyframe: {len(points)} points")
    assert 30_000 <= len(points) <= 35_000
    assert f.scans[0].range_image.shape == (32, 1084, 4)
    assert np.all(f.scans[0].range_image_return2[..., 0] == -1.0)  # single return


def test_points_on_surfaces(sequence, frame):
    points = frame.points()
    hit, surface = frame.point_info()
    world = points[:, :3].astype(np.float64) @ frame.pose[:3, :3].T + frame.pose[:3, 3]
    ground = surface == SURFACE_GROUND
    assert ground.sum() > 10_000
    dz = world[ground, 2] - sequence.scene.ground.height(world[ground, 0], world[ground, 1])
    assert np.abs(dz).max() < 0.08  # range noise (1 cm sigma) along the ray
    obj = surface == SURFACE_OBJECT
    assert obj.sum() > 10_000
    boxes = frame.labels.boxes[hit[obj]].astype(np.float64)
    q = points[obj, :3].astype(np.float64) - boxes[:, :3]
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    local = np.stack([q[:, 0] * c + q[:, 1] * s, -q[:, 0] * s + q[:, 1] * c, q[:, 2]], 1)
    excess = np.abs(local) - boxes[:, 3:6] / 2
    assert excess.max() < 0.05  # on the (slightly shrunk) box surface, with noise
    # On the surface, not deep inside: at least one coordinate is near a face.
    assert np.all(excess.max(1) > -0.1)


def test_point_counts_in_boxes(frame):
    labels = frame.labels
    boxes = torch.from_numpy(labels.boxes.astype(np.float64))
    total = np.zeros(len(labels), dtype=np.int64)
    for scan in frame.scans:
        mask = points_in_boxes_reference(torch.from_numpy(scan.points().astype(np.float64)), boxes)
        counts = mask.sum(0).numpy()
        total += counts
        if scan.spec.name == "TOP":
            np.testing.assert_array_equal(labels.num_top_lidar_points_in_box, counts)
    np.testing.assert_array_equal(labels.num_lidar_points_in_box, total)
    assert np.all(labels.difficulty[total <= 5] == LEVEL_2)
    assert np.all(labels.difficulty[total > 5] == LEVEL_1)
    assert (total == 0).any() and (total > 100).any()  # empty (occluded / far) boxes are kept


def test_labels(sequence, frame):
    labels = frame.labels
    assert labels.boxes.dtype == np.float32 and labels.boxes.shape == (len(labels), 7)
    assert np.all(labels.boxes[:, 6] >= -math.pi) and np.all(labels.boxes[:, 6] < math.pi)
    assert 100 <= len(labels) <= 250
    names = set(labels.class_names)
    assert {"car", "pedestrian", "cyclist", "sign"} <= names
    assert set(labels.waymo_types.tolist()) <= {0, 1, 2, 3, 4}
    np.testing.assert_array_equal(labels.waymo_types, WAYMO_TYPES[labels.class_index])
    # Sizes within the documented ranges.
    for k, cls in enumerate(CLASSES):
        dims = labels.boxes[labels.class_index == k, 3:6]
        assert np.all(dims >= np.array(cls.low, np.float32) - 1e-5), cls.name
        assert np.all(dims <= np.array(cls.high, np.float32) + 1e-5), cls.name
    # Ego-frame velocity is the world velocity rotated; parked cars and signs are static.
    np.testing.assert_allclose(labels.velocity, labels.velocity_world @ frame.pose[:3, :3], atol=1e-5)
    static = np.isin(np.array(labels.class_names), ["sign", "barrier", "traffic_cone"])
    assert np.all(labels.velocity_world[static] == 0)
    # Persistent ids: an object's world position advances by its velocity.
    later = sequence[2]
    common, i0, i2 = np.intersect1d(labels.ids, later.labels.ids, return_indices=True)
    assert len(common) > 50
    np.testing.assert_array_equal(labels.class_index[i0], later.labels.class_index[i2])
    moved = later.labels.boxes_world[i2, :3] - labels.boxes_world[i0, :3]
    np.testing.assert_allclose(moved[:, :2], 0.2 * labels.velocity_world[i0, :2], atol=0.05)


def test_no_overlaps(sequence):
    for index in (0, len(sequence) - 1):
        boxes = sequence[index].labels.boxes
        assert len(bev_overlaps(boxes)) == 0
        iou = boxes_iou_bev(torch.from_numpy(boxes), torch.from_numpy(boxes))
        iou.fill_diagonal_(0)
        assert iou.max().item() < 1e-6
    # The ego is not inside any object.
    boxes = sequence[0].labels.boxes
    assert len(bev_overlaps(np.concatenate([boxes, [[1.4, 0, 0.8, 5.0, 2.1, 1.6, 0]]]))) == 0
