"""Waymo v1 TFRecords and metrics Objects files: round trips through the writers and readers."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from pointformer.data.formats import DataFormatError
from pointformer.data.formats import waymo_proto as pb
from pointformer.data.formats.range_image import matrix_to_pose6, range_image_to_points
from pointformer.data.formats.tfrecord import iter_records, write_records
from pointformer.data.formats.waymo_frame import (
    WaymoLabels,
    WaymoLaserCalibration,
    WaymoLaserRangeImages,
    WaymoRangeImageFrame,
)
from pointformer.data.formats.waymo_objects import WaymoObjects, read_objects, write_objects
from pointformer.data.formats.waymo_v1 import (
    decode_frame,
    encode_frame,
    read_frames,
    read_range_image_frames,
    write_frames,
)

SIZES = {1: (8, 40), 2: (6, 20), 3: (6, 20), 4: (6, 20), 5: (6, 20)}


def _transform(yaw: float, t) -> np.ndarray:
    m = np.eye(4)
    c, s = np.cos(yaw), np.sin(yaw)
    m[:2, :2] = [[c, -s], [s, c]]
    m[:3, 3] = t
    return m


def _image(rng, height, width):
    image = np.zeros((height, width, 4), np.float32)
    image[..., 0] = np.where(rng.random((height, width)) < 0.7, rng.uniform(1, 70, (height, width)), -1)
    image[..., 1:3] = rng.uniform(0, 1, (height, width, 2))
    image[..., 3] = rng.choice([-1.0, 1.0], (height, width))
    return image


def _labels(rng, m=6) -> WaymoLabels:
    boxes = np.concatenate([rng.normal(0, 10, (m, 3)), rng.uniform(0.5, 5, (m, 3)), rng.uniform(-3, 3, (m, 1))], 1)
    return WaymoLabels.from_arrays(
        boxes.astype(np.float32),
        rng.integers(0, 5, m),
        detection_difficulty=rng.integers(0, 3, m),
        tracking_difficulty=rng.integers(0, 3, m),
        num_lidar_points_in_box=rng.integers(0, 1000, m),
        num_top_lidar_points_in_box=rng.integers(0, 1000, m),
        ids=[f"obj{i}" for i in range(m)],
        speed=rng.normal(size=(m, 3)),
        acceleration=rng.normal(size=(m, 3)),
    )


def _frame(seed=0, with_pixel_pose=True, lasers=True) -> WaymoRangeImageFrame:
    rng = np.random.default_rng(seed)
    pose = _transform(0.7, (120.0, -40.0, 2.0))
    calibs, images = [], []
    # Written in reverse order: readers sort lasers by name.
    for name in (5, 4, 3, 2, 1):
        h, w = SIZES[name]
        beams = np.sort(rng.uniform(-0.3, 0.05, h)) if name == 1 else None
        calibs.append(WaymoLaserCalibration(name, _transform(0.5 * name, (1.0, 0.2 * name, 2.0)), -0.6, 0.3, beams))
        pixel_pose = None
        if name == 1 and with_pixel_pose:
            pixel_pose = matrix_to_pose6(pose) + rng.normal(0, [0.001, 0.001, 0.01, 0.1, 0.1, 0.01], (h, w, 6))
        images.append(WaymoLaserRangeImages(name, _image(rng, h, w), _image(rng, h, w), pixel_pose))
    return WaymoRangeImageFrame(
        context_name="1234_5678_000_1234_000",
        timestamp_micros=1_557_000_000_000_000 + seed,
        pose=pose,
        laser_calibrations=tuple(calibs),
        camera_calibrations=(),
        lasers=tuple(images) if lasers else (),
        labels=_labels(rng),
        time_of_day="Day",
        location="location_sf",
        weather="sunny",
    )


def _assert_labels_equal(a: WaymoLabels, b: WaymoLabels):
    for name in ("boxes", "types", "detection_difficulty", "tracking_difficulty", "num_lidar_points_in_box",
                 "num_top_lidar_points_in_box", "ids", "speed", "acceleration"):  # fmt: skip
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_frame_round_trip(tmp_path):
    frames = [_frame(0), _frame(1, with_pixel_pose=False)]
    path = tmp_path / "segment-1234_with_camera_labels.tfrecord"
    assert write_frames(path, frames) == 2
    read = list(read_frames(path))
    assert len(read) == 2
    for src, got in zip(frames, read, strict=True):
        assert got.context_name == src.context_name and got.timestamp_micros == src.timestamp_micros
        assert (got.time_of_day, got.location, got.weather) == ("Day", "location_sf", "sunny")
        np.testing.assert_array_equal(got.pose, src.pose)
        assert got.laser_names == (1, 2, 3, 4, 5)
        assert [c.name for c in got.camera_calibrations] == [1, 2, 3, 4, 5]
        assert all(c.width > 0 and c.height > 0 for c in got.camera_calibrations)
        _assert_labels_equal(got.labels, src.labels)
        # Expected points: lasers by name, return 1 then 2, each row-major.
        expected, counts = [], []
        for calib, laser in zip(src.laser_calibrations, src.lasers, strict=True):
            assert calib.name == laser.name
            incl = calib.row_inclinations(laser.return1.shape[0])
            pixel_pose = laser.pixel_pose
            if laser.name == 1 and pixel_pose is None:  # the writer stores the frame pose per pixel
                pixel_pose = np.broadcast_to(
                    matrix_to_pose6(src.pose).astype(np.float32), (*laser.return1.shape[:2], 6)
                )
            row = []
            for image in (laser.return1, laser.return2):
                pts = range_image_to_points(image, calib.extrinsic, incl, pixel_pose, src.pose)
                expected.append(pts)
                row.append(len(pts))
            counts.append(row)
        np.testing.assert_array_equal(got.point_counts, counts)
        np.testing.assert_array_equal(got.points, np.concatenate(expected))
        assert got.points.shape[1] == 6 and got.points.dtype == np.float32
        laser_of_point = got.point_laser_names()
        assert np.array_equal(np.unique(laser_of_point), [1, 2, 3, 4, 5])
        assert np.all(np.diff(laser_of_point) >= 0)
        assert got.point_return_indices().sum() == got.point_counts[:, 1].sum()
    # static TOP without pixel poses: the constant pose gives back the vehicle-frame points
    no_pose = frames[1].lasers[0]
    plain = range_image_to_points(no_pose.return1, frames[1].laser_calibrations[0].extrinsic,
                                  frames[1].laser_calibrations[0].row_inclinations(8))  # fmt: skip
    np.testing.assert_allclose(read[1].points[: len(plain), :3], plain[:, :3], atol=2e-3)


def test_range_images_round_trip_exactly(tmp_path):
    src = _frame(3)
    raw = decode_frame(encode_frame(src), camera_projections=True)
    for a, b in zip(src.lasers, raw.lasers, strict=True):
        np.testing.assert_array_equal(a.return1, b.return1)
        np.testing.assert_array_equal(a.return2, b.return2)
        assert b.camera_projection1.shape == a.return1.shape[:2] + (6,) and not b.camera_projection1.any()
        assert b.camera_projection2 is not None
        if a.name == 1:
            np.testing.assert_array_equal(a.pixel_pose, b.pixel_pose)
        else:
            assert b.pixel_pose is None
    for a, b in zip(src.laser_calibrations, raw.laser_calibrations, strict=True):
        np.testing.assert_array_equal(a.extrinsic, b.extrinsic)
        assert (a.beam_inclinations is None) == (b.beam_inclinations is None)
    # What OpenPCDet's converter reads is present on the wire.
    proto = pb.Frame.decode(encode_frame(src))
    assert len(proto.context.camera_calibrations) == 5
    for laser in proto.lasers:
        for ri in (laser.ri_return1, laser.ri_return2):
            assert ri.range_image_compressed and ri.camera_projection_compressed
    top = next(laser for laser in proto.lasers if laser.name == pb.LaserName.TOP)
    assert top.ri_return1.range_image_pose_compressed


def test_label_heading_is_wrapped():
    src = _frame(4)
    boxes = src.labels.boxes.copy()
    boxes[:3, 6] = [np.pi, 3 * np.pi / 2, -np.pi]
    labels = WaymoLabels.from_arrays(boxes, src.labels.types)
    frame = WaymoRangeImageFrame(src.context_name, 0, src.pose, src.laser_calibrations, (), (), labels)
    got = decode_frame(encode_frame(frame)).labels.boxes[:3, 6]
    np.testing.assert_allclose(got, [-np.pi, -np.pi / 2, -np.pi], atol=1e-6)
    assert np.all(got >= -np.pi) and np.all(got < np.pi)


def test_label_only_frame_warns(tmp_path):
    path = tmp_path / "labels_only.tfrecord"
    write_frames(path, [_frame(5, lasers=False)])
    with pytest.warns(
        UserWarning, match=r"labels_only\.tfrecord: record 0 at byte 0 .*no range images; yielding its 6"
    ):
        (frame,) = list(read_frames(path))
    assert frame.points.shape == (0, 6) and len(frame.labels) == 6
    assert frame.point_counts.shape == (5, 2) and frame.point_counts.sum() == 0


def test_first_return_only(tmp_path):
    path = tmp_path / "a.tfrecord"
    write_frames(path, [_frame(6)])
    (both,) = read_frames(path)
    (first,) = read_frames(path, returns=(0,))
    assert np.array_equal(first.point_counts[:, 0], both.point_counts[:, 0]) and not first.point_counts[:, 1].any()


def _corrupt_top(frame_bytes: bytes, **fields) -> bytes:
    proto = pb.Frame.decode(frame_bytes)
    top = next(laser for laser in proto.lasers if laser.name == 1)
    for k, v in fields.items():
        setattr(top.ri_return1, k, v)
    return proto.encode()


def test_bad_payloads_name_file_record_and_field(tmp_path):
    good = encode_frame(_frame(7))
    path = tmp_path / "bad.tfrecord"
    cases = [
        (_corrupt_top(good, range_image_compressed=b"not zlib"), r"ri_return1\.range_image_compressed: zlib"),
        (
            _corrupt_top(
                good,
                range_image_compressed=zlib.compress(
                    pb.MatrixFloat(
                        data=np.zeros(10, np.float32), shape=pb.MatrixShape(dims=np.array([8, 40, 4]))
                    ).encode()
                ),
            ),
            r"range_image_compressed: shape \[8, 40, 4\] needs 1280 values, data has 10",
        ),  # fmt: skip
        (
            _corrupt_top(
                good,
                range_image_pose_compressed=zlib.compress(
                    pb.MatrixFloat(
                        data=np.zeros(60, np.float32), shape=pb.MatrixShape(dims=np.array([2, 5, 6]))
                    ).encode()
                ),
            ),
            r"Frame\.lasers\[\d\] \(TOP\): pixel_pose must have shape \(8, 40, 6\)",
        ),  # fmt: skip
        (_corrupt_top(good, range_image_compressed=zlib.compress(b"\x0a\x05ab")), r"MatrixFloat\.data \(field 1\)"),
        (good[:-7] + b"\x08", r"malformed waymo\.open_dataset\.Frame"),
    ]
    for payload, match in cases:
        write_records(path, [good, payload])
        with pytest.raises(DataFormatError, match=r"bad\.tfrecord: record 1 at byte \d+: .*" + match):
            list(read_frames(path))
    # a record that is not a Frame at all: wrong wire type for Frame.context
    write_records(path, [b"\x08\x01"])
    with pytest.raises(DataFormatError, match=r"record 0 .*Frame\.context \(field 1\): wire type varint"):
        list(read_range_image_frames(path))


def test_laser_without_calibration_is_an_error():
    src = _frame(8)
    proto = pb.Frame.decode(encode_frame(src))
    proto.context.laser_calibrations = proto.context.laser_calibrations[1:]
    with pytest.raises(DataFormatError, match="no calibration"):
        decode_frame(proto.encode())


def test_objects_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    m = 9
    objects = WaymoObjects.from_arrays(
        context_names=[f"ctx{i % 3}" for i in range(m)],
        frame_timestamps_micros=rng.integers(0, 2**60, m),
        boxes=rng.normal(size=(m, 7)),
        types=rng.integers(1, 5, m),
        scores=rng.uniform(0, 1, m).astype(np.float32),
        detection_difficulty=rng.integers(0, 3, m),
        tracking_difficulty=rng.integers(0, 3, m),
        num_lidar_points_in_box=rng.integers(0, 100, m),
        num_top_lidar_points_in_box=rng.integers(0, 100, m),
        ids=[f"id{i}" for i in range(m)],
        speed=np.where(np.arange(m)[:, None] % 2 == 0, rng.normal(size=(m, 3)), 0.0),
        overlap_with_nlz=np.arange(m) % 4 == 0,
        camera_names=np.zeros(m, np.int8),
    )
    path = tmp_path / "preds.bin"
    write_objects(path, objects)
    back = read_objects(path)
    assert len(back) == m
    for name in ("context_names", "frame_timestamps_micros", "boxes", "types", "scores", "detection_difficulty",
                 "tracking_difficulty", "num_lidar_points_in_box", "num_top_lidar_points_in_box", "ids", "speed",
                 "acceleration", "overlap_with_nlz", "camera_names"):  # fmt: skip
        np.testing.assert_array_equal(getattr(back, name), getattr(objects, name), err_msg=name)
    assert back.boxes.dtype == np.float64
    # ground truth without scores reads back the proto default 1.0
    gt = WaymoObjects.from_arrays("ctx", 5, np.zeros((2, 7)), [1, 2])
    write_objects(path, gt)
    assert np.array_equal(read_objects(path).scores, [1.0, 1.0])
    path.write_bytes(b"\x0a\x10\x0a")
    with pytest.raises(DataFormatError, match=r"preds\.bin: malformed waymo\.open_dataset\.Objects"):
        read_objects(path)
    empty = tmp_path / "empty.bin"
    write_objects(empty, WaymoObjects.from_arrays([], [], np.zeros((0, 7)), []))
    assert empty.read_bytes() == b"" and len(read_objects(empty)) == 0


def test_records_are_tfrecord_frames(tmp_path):
    path = tmp_path / "a.tfrecord"
    write_frames(path, [_frame(9)])
    (data,) = iter_records(path)
    assert pb.Frame.decode(data).context.name == "1234_5678_000_1234_000"
