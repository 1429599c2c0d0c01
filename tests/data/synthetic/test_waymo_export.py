"""Synthetic sequences written as Waymo v1 and v2 and read back with the format readers: the points
are the generator's, the labels Waymo's subset of its labels, and both formats read back equal."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pointformer.data.formats import waymo_v1, waymo_v2
from pointformer.data.synthetic.classes import CLASS_INDEX, WAYMO_TYPES
from pointformer.data.synthetic.lidar import nuscenes_lidars, waymo_lidars
from pointformer.data.synthetic.sequence import generate_sequence
from pointformer.data.synthetic.waymo_export import (
    SYNTHETIC_STATS,
    laser_calibration,
    segment_filename,
    to_waymo_frame,
    write_waymo_v1,
    write_waymo_v2,
)

SEED = 0
LASERS = ("TOP", "FRONT", "SIDE_LEFT", "SIDE_RIGHT", "REAR")
# Points read back go through float32 on both sides (range images, output xyz) and, for TOP,
# through float32 pixel poses [roll, pitch, yaw, x, y, z] to the global frame and back: about
# 1e-5 m here (the ego stays within ~100 m of the world origin).
XYZ_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """(sequence, synthetic frames, v1 path, v2 root): a 2-frame sequence written both ways."""
    sequence = generate_sequence(SEED, 2)
    out = tmp_path_factory.mktemp("waymo")
    frames = []
    v1 = write_waymo_v1(sequence, out / "v1", on_frame=lambda frame, waymo: frames.append(frame))
    paths = write_waymo_v2(sequence, out / "v2", "validation")
    assert set(paths) == set(waymo_v2.SCHEMAS)
    assert all(p.parent.parent == out / "v2" / "validation" and p.stem == sequence.name for p in paths.values())
    return sequence, frames, v1, out / "v2"


def _read(written, fmt: str):
    sequence, _, v1, v2 = written
    if fmt == "v1":
        return list(waymo_v1.read_frames(v1))
    return list(waymo_v2.read_frames(v2, "validation", sequence.name))


def test_files(written):
    sequence, frames, v1, _ = written
    assert v1.name == f"segment-{sequence.name}_with_camera_labels.tfrecord" == segment_filename(sequence.name)
    assert [f.index for f in frames] == [0, 1]


@pytest.mark.parametrize("fmt", ["v1", "v2"])
def test_points_round_trip(written, fmt):
    sequence, frames, _, _ = written
    read = _read(written, fmt)
    assert len(read) == len(frames)
    for frame, got in zip(frames, read, strict=True):
        assert got.context_name == sequence.name
        assert got.timestamp_micros == frame.timestamp_micros
        np.testing.assert_array_equal(got.pose, frame.pose)
        assert (got.time_of_day, got.location, got.weather) == SYNTHETIC_STATS
        # Same lasers, returns and order: lasers TOP..REAR, each laser's first then second return.
        assert got.laser_names == (1, 2, 3, 4, 5)
        expected_counts = [[(frame.scan(n).returns(r)[0][..., 0] > 0).sum() for r in (0, 1)] for n in LASERS]
        np.testing.assert_array_equal(got.point_counts, expected_counts)
        assert got.point_counts[:, 1].sum() > 0  # second returns are exercised
        expected = frame.points(LASERS, (0, 1))
        assert got.points.shape == expected.shape
        np.testing.assert_allclose(got.points[:, :3], expected[:, :3], rtol=0, atol=XYZ_TOLERANCE)
        np.testing.assert_array_equal(got.points[:, 3:], expected[:, 3:])  # intensity, elongation, nlz
        assert np.all(got.points[:, 5] == -1.0)


def test_first_returns_only(written):
    sequence, frames, v1, v2 = written
    for got in (
        next(waymo_v1.read_frames(v1, returns=(0,))),
        next(waymo_v2.read_frames(v2, "validation", sequence.name, returns=(0,))),
    ):
        expected = frames[0].points(LASERS, (0,))
        np.testing.assert_allclose(got.points[:, :3], expected[:, :3], rtol=0, atol=XYZ_TOLERANCE)
        np.testing.assert_array_equal(got.points[:, 3:], expected[:, 3:])


@pytest.mark.parametrize("fmt", ["v1", "v2"])
def test_labels_round_trip(written, fmt):
    _, frames, _, _ = written
    dropped = 0
    for frame, got in zip(frames, _read(written, fmt), strict=True):
        labels = frame.labels
        keep = WAYMO_TYPES[labels.class_index] != 0
        # Barriers and traffic cones are not Waymo classes; everything else is kept in order.
        assert np.all(np.isin(labels.class_index[~keep], [CLASS_INDEX["barrier"], CLASS_INDEX["traffic_cone"]]))
        dropped += int((~keep).sum())
        out = got.labels
        assert len(out) == keep.sum() > 0
        np.testing.assert_array_equal(out.boxes, labels.boxes[keep])
        np.testing.assert_array_equal(out.types, WAYMO_TYPES[labels.class_index[keep]])
        assert set(out.types.tolist()) <= {1, 2, 3, 4}
        np.testing.assert_array_equal(out.ids, labels.ids[keep])
        np.testing.assert_array_equal(out.detection_difficulty, labels.difficulty[keep])
        np.testing.assert_array_equal(out.tracking_difficulty, labels.difficulty[keep])
        np.testing.assert_array_equal(out.num_lidar_points_in_box, labels.num_lidar_points_in_box[keep])
        np.testing.assert_array_equal(out.num_top_lidar_points_in_box, labels.num_top_lidar_points_in_box[keep])
        np.testing.assert_array_equal(out.speed, labels.velocity_world[keep].astype(np.float32))
        np.testing.assert_array_equal(out.acceleration, labels.acceleration_world[keep].astype(np.float32))
        assert set(out.detection_difficulty.tolist()) == {1, 2}
    assert dropped > 0, "the test sequence should contain barriers or cones"


def test_v1_and_v2_read_back_equal(written):
    sequence, _, v1, v2 = written
    a = list(waymo_v1.read_range_image_frames(v1))
    b = list(waymo_v2.read_range_image_frames(v2, "validation", sequence.name))
    assert len(a) == len(b) == 2
    for x, y in zip(a, b, strict=True):
        assert (x.context_name, x.timestamp_micros) == (y.context_name, y.timestamp_micros)
        np.testing.assert_array_equal(x.pose, y.pose)
        assert [laser.name for laser in x.lasers] == [laser.name for laser in y.lasers] == [1, 2, 3, 4, 5]
        for p, q in zip(x.lasers, y.lasers, strict=True):
            np.testing.assert_array_equal(p.return1, q.return1)
            np.testing.assert_array_equal(p.return2, q.return2)
            assert (p.pixel_pose is None) == (q.pixel_pose is None) == (p.name != 1)
            if p.pixel_pose is not None:
                np.testing.assert_array_equal(p.pixel_pose, q.pixel_pose)
        for c, d in zip(x.laser_calibrations, y.laser_calibrations, strict=True):
            assert (c.name, c.beam_inclination_min, c.beam_inclination_max) == (
                d.name, d.beam_inclination_min, d.beam_inclination_max
            )  # fmt: skip
            np.testing.assert_array_equal(c.extrinsic, d.extrinsic)
            assert (c.beam_inclinations is None) == (d.beam_inclinations is None)
            if c.beam_inclinations is not None:
                np.testing.assert_array_equal(c.beam_inclinations, d.beam_inclinations)
        assert [c.name for c in x.camera_calibrations] == [c.name for c in y.camera_calibrations]
        for field in dataclasses.fields(x.labels):
            np.testing.assert_array_equal(getattr(x.labels, field.name), getattr(y.labels, field.name))
        np.testing.assert_array_equal(x.to_frame().points, y.to_frame().points)


def test_frame_in_memory_matches_files(written):
    """``to_waymo_frame`` itself: pixel poses are the frame pose, points as read back."""
    sequence, frames, v1, _ = written
    frame = to_waymo_frame(frames[0], sequence.name)
    stored = next(waymo_v1.read_range_image_frames(v1))
    top = frame.lasers[0]
    assert top.name == 1 and top.pixel_pose.shape == (64, 2650, 6)
    np.testing.assert_array_equal(top.pixel_pose, stored.lasers[0].pixel_pose)
    np.testing.assert_array_equal(frame.to_frame().points, stored.to_frame().points)


def test_calibrations_in_waymo_storage():
    top, front = waymo_lidars()[:2]
    calib = laser_calibration(top)
    # Waymo stores TOP's beams ascending (the spec is top-down).
    np.testing.assert_array_equal(calib.beam_inclinations, top.inclinations[::-1])
    assert np.all(np.diff(calib.beam_inclinations) > 0)
    np.testing.assert_array_equal(calib.row_inclinations(top.height), top.inclinations)
    np.testing.assert_array_equal(calib.extrinsic, top.extrinsic)
    # Short-range lasers: min/max only (edges of the field of view), rows as the spec's.
    short = laser_calibration(front)
    assert short.name == 2 and short.beam_inclinations is None
    assert short.beam_inclination_min == pytest.approx(-np.pi / 2) and short.beam_inclination_max == pytest.approx(
        np.pi / 6
    )
    np.testing.assert_allclose(short.row_inclinations(front.height), front.inclinations, rtol=0, atol=1e-12)


def test_rejects_lasers_waymo_cannot_store():
    with pytest.raises(ValueError, match="not a Waymo laser"):
        laser_calibration(nuscenes_lidars()[0])
    top = waymo_lidars()[0]
    with pytest.raises(ValueError, match="not uniform"):
        laser_calibration(dataclasses.replace(top, uniform_inclinations=True))
