"""Waymo v2 parquet components: round trips through write_segment/read_frames, agreement with the
v1 path, the official column names and arrow types, and bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from test_waymo_v1 import _assert_labels_equal, _frame  # same directory (rootdir-relative imports)

from pointformer.data.formats import DataFormatError
from pointformer.data.formats.range_image import matrix_to_pose6
from pointformer.data.formats.waymo_frame import WaymoLabels, WaymoRangeImageFrame
from pointformer.data.formats.waymo_v1 import read_frames as read_v1
from pointformer.data.formats.waymo_v1 import write_frames as write_v1
from pointformer.data.formats.waymo_v2 import (
    component_path,
    context_names,
    read_frames,
    read_range_image_frames,
    write_segment,
)

CTX = "1234_5678_000_1234_000"


def _segment(n=3, label_only=None) -> list[WaymoRangeImageFrame]:
    """``n`` frames sharing the calibrations of the first (v2 stores them once per segment), with
    TOP pixel poses, two returns of 5 lasers, and labels of which some speeds are null (NaN)."""
    frames = []
    for i in range(n):
        f = _frame(10 + i, lasers=i != label_only)
        speed = f.labels.speed.copy()
        speed[::2, :] = np.nan
        speed[1, 2] = np.nan
        accel = f.labels.acceleration.copy()
        accel[3] = np.nan
        labels = dataclasses.replace(f.labels, speed=speed, acceleration=accel)
        calibs = frames[0].laser_calibrations if frames else f.laser_calibrations
        frames.append(dataclasses.replace(f, laser_calibrations=calibs, labels=labels))
    return frames[::-1]  # written newest first: readers order by timestamp


def _assert_frames_equal(a, b):
    assert (a.context_name, a.timestamp_micros) == (b.context_name, b.timestamp_micros)
    assert (a.time_of_day, a.location, a.weather) == (b.time_of_day, b.location, b.weather)
    np.testing.assert_array_equal(a.pose, b.pose)
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.point_counts, b.point_counts)
    _assert_labels_equal(a.labels, b.labels)
    assert a.laser_names == b.laser_names
    for x, y in zip(a.laser_calibrations, b.laser_calibrations, strict=True):
        np.testing.assert_array_equal(x.extrinsic, y.extrinsic)
        assert (x.beam_inclination_min, x.beam_inclination_max) == (y.beam_inclination_min, y.beam_inclination_max)
        assert (x.beam_inclinations is None) == (y.beam_inclinations is None)
        if x.beam_inclinations is not None:
            np.testing.assert_array_equal(x.beam_inclinations, y.beam_inclinations)
    assert len(a.camera_calibrations) == len(b.camera_calibrations)
    for x, y in zip(a.camera_calibrations, b.camera_calibrations, strict=True):
        assert (x.name, x.width, x.height, x.rolling_shutter_direction) == (
            y.name, y.width, y.height, y.rolling_shutter_direction)  # fmt: skip
        np.testing.assert_array_equal(x.intrinsic, y.intrinsic)
        np.testing.assert_array_equal(x.extrinsic, y.extrinsic)


def test_round_trip_matches_range_image_conversion(tmp_path):
    frames = _segment(3)
    paths = write_segment(tmp_path, "training", frames)
    assert set(paths) >= {"lidar", "lidar_box", "lidar_calibration", "lidar_pose", "vehicle_pose"}
    assert paths["lidar"] == tmp_path / "training" / "lidar" / f"{CTX}.parquet"
    assert context_names(tmp_path, "training") == [CTX]
    got = list(read_frames(tmp_path, "training", CTX))
    src = sorted(frames, key=lambda f: f.timestamp_micros)
    assert [f.timestamp_micros for f in got] == [f.timestamp_micros for f in src]
    for s, g in zip(src, got, strict=True):
        expected = s.to_frame()
        np.testing.assert_array_equal(g.points, expected.points)
        np.testing.assert_array_equal(g.point_counts, expected.point_counts)
        assert g.point_counts.all()  # every laser, both returns
        np.testing.assert_array_equal(g.pose, s.pose)
        _assert_labels_equal(g.labels, s.labels)
        assert np.isnan(g.labels.speed[0]).all() and np.isnan(g.labels.acceleration[3]).all()
        assert not np.isnan(g.labels.speed[1, :2]).any()
    # the stored range images come back bit for bit
    raw = list(read_range_image_frames(tmp_path, "training", CTX))
    for s, r in zip(src, raw, strict=True):
        for a, b in zip(s.lasers, r.lasers, strict=True):
            assert a.name == b.name
            np.testing.assert_array_equal(a.return1, b.return1)
            np.testing.assert_array_equal(a.return2, b.return2)
            if a.name == 1:
                np.testing.assert_array_equal(a.pixel_pose, b.pixel_pose)
            else:
                assert b.pixel_pose is None
    (first,) = list(read_frames(tmp_path, "training", CTX, returns=(0,)))[:1]
    assert not first.point_counts[:, 1].any() and np.array_equal(first.point_counts[:, 0], got[0].point_counts[:, 0])


def test_v1_and_v2_read_back_equal(tmp_path):
    frames = _segment(3)
    # a frame without pixel poses: both writers store the constant frame pose for TOP
    frames[1] = dataclasses.replace(
        frames[1], lasers=tuple(dataclasses.replace(laser, pixel_pose=None) for laser in frames[1].lasers)
    )
    write_v1(tmp_path / "seg.tfrecord", sorted(frames, key=lambda f: f.timestamp_micros))
    write_segment(tmp_path, "validation", frames)
    v1 = list(read_v1(tmp_path / "seg.tfrecord"))
    v2 = list(read_frames(tmp_path, "validation", CTX))
    assert len(v1) == len(v2) == 3
    for a, b in zip(v1, v2, strict=True):
        _assert_frames_equal(a, b)


# Reference §C.3 and waymo_open_dataset/v2/perception/{lidar,box,context,pose,base}.py.
_F64, _I8, _I64, _STR = pa.float64(), pa.int8(), pa.int64(), pa.string()
_TRANSFORM = pa.list_(pa.float64(), 16)
_VALUES, _SHAPE = pa.list_(pa.float32()), pa.list_(pa.int32(), 3)
_LASER_KEY = {"key.segment_context_name": _STR, "key.frame_timestamp_micros": _I64, "key.laser_name": _I8}
_EXPECTED = {
    "lidar": {
        **_LASER_KEY,
        "[LiDARComponent].range_image_return1.values": _VALUES,
        "[LiDARComponent].range_image_return1.shape": _SHAPE,
        "[LiDARComponent].range_image_return2.values": _VALUES,
        "[LiDARComponent].range_image_return2.shape": _SHAPE,
    },
    "lidar_pose": {
        **_LASER_KEY,
        "[LiDARPoseComponent].range_image_return1.values": _VALUES,
        "[LiDARPoseComponent].range_image_return1.shape": _SHAPE,
    },
    "lidar_calibration": {
        "key.segment_context_name": _STR,
        "key.laser_name": _I8,
        "[LiDARCalibrationComponent].extrinsic.transform": _TRANSFORM,
        "[LiDARCalibrationComponent].beam_inclination.min": _F64,
        "[LiDARCalibrationComponent].beam_inclination.max": _F64,
        "[LiDARCalibrationComponent].beam_inclination.values": pa.list_(pa.float64()),
    },
    "vehicle_pose": {
        "key.segment_context_name": _STR,
        "key.frame_timestamp_micros": _I64,
        "[VehiclePoseComponent].world_from_vehicle.transform": _TRANSFORM,
    },
    "lidar_box": {
        "key.segment_context_name": _STR,
        "key.frame_timestamp_micros": _I64,
        "key.laser_object_id": _STR,
        **{f"[LiDARBoxComponent].box.{p}.{a}": _F64 for p in ("center", "size") for a in "xyz"},
        "[LiDARBoxComponent].box.heading": _F64,
        "[LiDARBoxComponent].type": _I8,
        **{f"[LiDARBoxComponent].{p}.{a}": _F64 for p in ("speed", "acceleration") for a in "xyz"},
        "[LiDARBoxComponent].num_lidar_points_in_box": _I64,
        "[LiDARBoxComponent].num_top_lidar_points_in_box": _I64,
        "[LiDARBoxComponent].difficulty_level.detection": _I8,
        "[LiDARBoxComponent].difficulty_level.tracking": _I8,
    },
}


def test_written_columns_and_types_are_official(tmp_path):
    frames = _segment(2)
    write_segment(tmp_path, "training", frames)
    for tag, expected in _EXPECTED.items():
        schema = pq.read_schema(component_path(tmp_path, "training", tag, CTX))
        got = {name: schema.field(name).type for name in schema.names}
        assert set(got) == set(expected), tag
        for name, dtype in expected.items():
            # (arrow type equality ignores list child names: "item" in arrow, "element" in parquet)
            assert got[name] == dtype, (tag, name, got[name])
    lidar = pq.read_table(component_path(tmp_path, "training", "lidar", CTX))
    assert lidar.num_rows == 2 * 5
    assert sorted(set(lidar.column("key.laser_name").to_pylist())) == [1, 2, 3, 4, 5]
    shape = lidar.column("[LiDARComponent].range_image_return1.shape").to_pylist()
    assert [8, 40, 4] in shape and [6, 20, 4] in shape
    pose = pq.read_table(component_path(tmp_path, "training", "lidar_pose", CTX))
    assert pose.column("key.laser_name").to_pylist() == [1, 1]
    calib = pq.read_table(component_path(tmp_path, "training", "lidar_calibration", CTX))
    values = calib.column("[LiDARCalibrationComponent].beam_inclination.values").to_pylist()
    beams = dict(zip(calib.column("key.laser_name").to_pylist(), values, strict=True))
    assert len(beams[1]) == 8 and beams[2] is None  # non-uniform TOP, uniform others: null
    box = pq.read_table(component_path(tmp_path, "training", "lidar_box", CTX))
    assert box.column("[LiDARBoxComponent].speed.x").null_count == 2 * 3  # NaN speeds stored as null
    # one row group per frame (calibrations: one), so readers can stream
    assert pq.ParquetFile(component_path(tmp_path, "training", "lidar", CTX)).num_row_groups == 2


def test_label_only_frame_warns(tmp_path):
    frames = _segment(3, label_only=1)
    write_segment(tmp_path, "training", frames)
    ts = frames[1].timestamp_micros
    with pytest.warns(UserWarning, match=rf"lidar/{CTX}\.parquet: frame {ts} .*no range images; yielding its 6 labels"):
        got = list(read_frames(tmp_path, "training", CTX))
    assert got[1].points.shape == (0, 6) and got[1].point_counts.shape == (5, 2) and len(got[1].labels) == 6
    assert got[0].points.shape[0] > 0


def test_frames_without_boxes_and_splits_without_labels(tmp_path):
    frames = _segment(2)
    frames[0] = dataclasses.replace(frames[0], labels=WaymoLabels.empty())
    write_segment(tmp_path, "training", frames)
    got = list(read_frames(tmp_path, "training", CTX))
    assert len(got[1].labels) == 0 and len(got[0].labels) == 6
    component_path(tmp_path, "training", "lidar_box", CTX).unlink()
    with pytest.raises(DataFormatError, match=rf"lidar_box/{CTX}\.parquet: missing component file"):
        list(read_frames(tmp_path, "training", CTX))
    got = list(read_frames(tmp_path, "training", CTX, labels=False))
    assert all(len(f.labels) == 0 and f.points.shape[0] > 0 for f in got)


def _rewrite(path, fn):
    table = pq.read_table(path)
    pq.write_table(fn(table), path)


def _drop(column):
    return lambda t: t.drop_columns([column])


def _set(column, values):
    def fn(t):
        i = t.schema.get_field_index(column)
        return t.set_column(i, t.schema.field(i), pa.array(values, t.schema.field(i).type))

    return fn


@pytest.mark.parametrize(
    "tag, edit, match",
    [
        ("lidar_pose", None, r"lidar_pose/{ctx}\.parquet: missing component file"),
        ("lidar_calibration", None, r"lidar_calibration/{ctx}\.parquet: missing component file"),
        ("lidar_box", _drop("[LiDARBoxComponent].speed.x"),
         r"lidar_box/{ctx}\.parquet: missing column '\[LiDARBoxComponent\]\.speed\.x'"),
        ("lidar", _drop("[LiDARComponent].range_image_return2.shape"),
         r"lidar/{ctx}\.parquet: missing column '\[LiDARComponent\]\.range_image_return2\.shape'"),
        ("vehicle_pose", _drop("[VehiclePoseComponent].world_from_vehicle.transform"),
         r"vehicle_pose/{ctx}\.parquet: missing column '\[VehiclePoseComponent\]\.world_from_vehicle\.transform'"),
        ("lidar", lambda t: _set("[LiDARComponent].range_image_return1.shape",
                                 [[8, 41, 4] if n == 1 else [6, 20, 4] for n in t.column(2).to_pylist()])(t),
         r"lidar/{ctx}\.parquet: frame \d+, laser TOP: \[LiDARComponent\]\.range_image_return1: shape \[8, 41, 4\] "
         r"needs 1312 values, \[LiDARComponent\]\.range_image_return1\.values has 1280"),
        ("lidar_pose", _set("[LiDARPoseComponent].range_image_return1.shape", [[8, 40, 4], [8, 40, 6]]),
         r"lidar_pose/{ctx}\.parquet: frame \d+, laser TOP: .*shape is \[8, 40, 4\], expected \[H, W, 6\]"),
        ("lidar_box", lambda t: t.set_column(1, "key.frame_timestamp_micros", pc.add(t.column(1), 7)),
         r"lidar_box/{ctx}\.parquet: frame timestamps \[\d+, \d+\] are not in the vehicle_pose component"),
        ("vehicle_pose", lambda t: t.slice(0, 1),
         r"lidar/{ctx}\.parquet: frame timestamps \[\d+\] are not in the vehicle_pose component"),
        ("lidar_calibration", lambda t: t.slice(1),
         r"lidar/{ctx}\.parquet: frame \d+: lasers \[1\] have range images but no calibration"),
        ("lidar_box", lambda t: _drop("[LiDARBoxComponent].type")(t).append_column(
            "[LiDARBoxComponent].type", pa.array([[1]] * t.num_rows)),
         r"lidar_box/{ctx}\.parquet: column '\[LiDARBoxComponent\]\.type' has type list<.*int64>, expected a number"),
        ("lidar", lambda t: pa.concat_tables([t, t.slice(0, 1)]),
         r"lidar/{ctx}\.parquet: two rows for frame \d+, laser 1"),
    ],
)  # fmt: skip
def test_bad_input_names_file_and_column(tmp_path, tag, edit, match):
    write_segment(tmp_path, "training", _segment(2))
    path = component_path(tmp_path, "training", tag, CTX)
    if edit is None:
        path.unlink()
    else:
        _rewrite(path, edit)
    with pytest.raises(DataFormatError, match=match.format(ctx=CTX)):
        list(read_frames(tmp_path, "training", CTX))


def test_write_is_atomic_and_checks_the_segment(tmp_path):
    frames = _segment(2)
    write_segment(tmp_path, "training", frames)
    before = {p: p.read_bytes() for p in (tmp_path / "training").rglob("*.parquet")}

    def failing():
        yield frames[0]
        raise RuntimeError("generator failed")

    with pytest.raises(RuntimeError, match="generator failed"):
        write_segment(tmp_path, "training", failing())
    after = {p: p.read_bytes() for p in (tmp_path / "training").rglob("*")  if p.is_file()}  # fmt: skip
    assert after == before  # old files untouched, no temporary files left
    other = dataclasses.replace(frames[1], context_name="other")
    with pytest.raises(ValueError, match="frames of segments"):
        write_segment(tmp_path, "training", [frames[0], other])
    moved = dataclasses.replace(frames[1], laser_calibrations=_frame(99).laser_calibrations)
    with pytest.raises(ValueError, match="calibrations differ"):
        write_segment(tmp_path, "training", [frames[0], moved])
    with pytest.raises(ValueError, match="two frames with timestamp"):
        write_segment(tmp_path, "training", [frames[0], frames[0]])


def test_static_top_without_pixel_poses_uses_frame_pose(tmp_path):
    (frame,) = _segment(1)
    frame = dataclasses.replace(frame, lasers=tuple(dataclasses.replace(x, pixel_pose=None) for x in frame.lasers))
    write_segment(tmp_path, "training", [frame])
    (raw,) = read_range_image_frames(tmp_path, "training", CTX)
    top = raw.lasers[0]
    np.testing.assert_array_equal(top.pixel_pose[3, 5], matrix_to_pose6(frame.pose).astype(np.float32))


@pytest.mark.parametrize("row_group_size", [3, 1000])
def test_any_row_group_layout_reads_the_same(tmp_path, row_group_size):
    frames = _segment(3)
    write_segment(tmp_path, "training", frames)
    expected = list(read_frames(tmp_path, "training", CTX))
    for tag in ("lidar", "lidar_pose"):
        path = component_path(tmp_path, "training", tag, CTX)
        table = pq.read_table(path)
        # frames straddling row groups (3 rows each), or all frames in one, rows shuffled
        order = np.random.default_rng(0).permutation(table.num_rows)
        pq.write_table(table.take(order), path, row_group_size=row_group_size)
    for a, b in zip(expected, read_frames(tmp_path, "training", CTX), strict=True):
        _assert_frames_equal(a, b)
