"""Waymo Open Dataset v2: Apache Parquet components, read and written with pyarrow (no TensorFlow).

Layout (reference §C.3): ``<root>/<split>/<tag>/<context_name>.parquet``, one file per component
and segment, e.g. ``training/lidar/1005081002024129653_5313_150_5333_150.parquet``. The components
used here:

=================== ==================================== =======================================
tag                 key                                  what
=================== ==================================== =======================================
lidar               segment, frame timestamp, laser      range images of both returns
lidar_pose          segment, frame timestamp, laser      TOP per-pixel vehicle -> global poses
lidar_calibration   segment, laser                       extrinsic, beam inclinations
vehicle_pose        segment, frame timestamp             frame pose (one row per frame)
lidar_box           segment, frame timestamp, object id  3D labels
camera_calibration  segment, camera                      optional: read when present
stats               segment, frame timestamp             optional: time of day, location, weather
=================== ==================================== =======================================

Reading::

    for frame in read_frames("/data/waymo_v2", "validation", context_name):   # WaymoFrame
        frame.points, frame.labels.boxes

``read_range_image_frames`` yields the stored range images instead (``WaymoRangeImageFrame``, the
same objects the v1 reader yields); ``read_frames`` is that followed by ``to_frame``. Frames come in
timestamp order. The frames of a segment are those of ``vehicle_pose``; a frame without ``lidar``
rows (or ``lidar_box`` rows) has no points (or labels). A timestamp that ``lidar``, ``lidar_pose``
or ``lidar_box`` has and ``vehicle_pose`` lacks is a ``DataFormatError`` (its points could not be
placed in any frame). Range images are read one parquet row group at a time, so a segment streams
when its files are written a frame per row group (as ``write_segment`` does).

Range images in v2 are not compressed: ``values`` is a flat ``list<float32>`` and ``shape`` a
``fixed_size_list<int32>[3]`` (``[H, W, 4]``; ``[H, W, 6]`` for pixel poses). Labels are boxes
``[x, y, z, length, width, height, heading]`` as ``WaymoLabels`` (heading wrapped to [-pi, pi) after
the float32 cast, as the v1 reader does); null speeds and accelerations read as NaN.

Writing (the synthetic-data generator): ``write_segment(root, split, frames)`` writes the lidar,
lidar_pose, lidar_calibration, vehicle_pose, lidar_box, camera_calibration and stats components of
one segment, with the official column names and arrow types, one row group per frame, each file
atomically. As the v1 writer does, it fills in what real data always has: both returns of every
laser (an empty second return when none is given), TOP pixel poses (constant, from the frame pose,
when none are given) and five default camera calibrations when a frame has none.

Column names and arrow types follow ``waymo_open_dataset/v2/perception/{lidar,box,context,pose,
base}.py`` and ``v2/column_types.py`` (checked there). Not checked against released files: the
parquet-level details of the official files (row-group layout, compression, list field names).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pointformer.data.formats.errors import DataFormatError
from pointformer.data.formats.range_image import matrix_to_pose6
from pointformer.data.formats.waymo_frame import (
    WaymoCameraCalibration,
    WaymoFrame,
    WaymoLabels,
    WaymoLaserCalibration,
    WaymoLaserRangeImages,
    WaymoRangeImageFrame,
    wrap_heading,
)
from pointformer.data.formats.waymo_proto import LaserName
from pointformer.data.formats.waymo_v1 import default_camera_calibrations
from pointformer.utils.atomic import atomic_file

__all__ = [
    "SCHEMAS",
    "component_path",
    "context_names",
    "read_frames",
    "read_range_image_frames",
    "write_segment",
]

# ---------------------------------------------------------------------------------------------
# Schemas
# ---------------------------------------------------------------------------------------------

SEGMENT = "key.segment_context_name"
TIMESTAMP = "key.frame_timestamp_micros"
LASER = "key.laser_name"
OBJECT_ID = "key.laser_object_id"
CAMERA = "key.camera_name"

_LIDAR = "[LiDARComponent]"
_POSE = "[LiDARPoseComponent]"
_CALIB = "[LiDARCalibrationComponent]"
_VPOSE = "[VehiclePoseComponent]"
_BOX = "[LiDARBoxComponent]"
_CAM = "[CameraCalibrationComponent]"
_STATS = "[StatsComponent]"

_TRANSFORM = pa.list_(pa.float64(), 16)  # row-major 4x4
_IMAGE_VALUES = pa.list_(pa.float32())
_IMAGE_SHAPE = pa.list_(pa.int32(), 3)
_XYZ = ("x", "y", "z")


def _schema(*fields: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema([pa.field(name, dtype) for name, dtype in fields])


SCHEMAS: dict[str, pa.Schema] = {
    "lidar": _schema(
        (SEGMENT, pa.string()),
        (TIMESTAMP, pa.int64()),
        (LASER, pa.int8()),
        (f"{_LIDAR}.range_image_return1.values", _IMAGE_VALUES),
        (f"{_LIDAR}.range_image_return1.shape", _IMAGE_SHAPE),
        (f"{_LIDAR}.range_image_return2.values", _IMAGE_VALUES),
        (f"{_LIDAR}.range_image_return2.shape", _IMAGE_SHAPE),
    ),
    "lidar_pose": _schema(
        (SEGMENT, pa.string()),
        (TIMESTAMP, pa.int64()),
        (LASER, pa.int8()),
        (f"{_POSE}.range_image_return1.values", _IMAGE_VALUES),
        (f"{_POSE}.range_image_return1.shape", _IMAGE_SHAPE),
    ),
    "lidar_calibration": _schema(
        (SEGMENT, pa.string()),
        (LASER, pa.int8()),
        (f"{_CALIB}.extrinsic.transform", _TRANSFORM),
        (f"{_CALIB}.beam_inclination.min", pa.float64()),
        (f"{_CALIB}.beam_inclination.max", pa.float64()),
        (f"{_CALIB}.beam_inclination.values", pa.list_(pa.float64())),
    ),
    "vehicle_pose": _schema(
        (SEGMENT, pa.string()),
        (TIMESTAMP, pa.int64()),
        (f"{_VPOSE}.world_from_vehicle.transform", _TRANSFORM),
    ),
    "lidar_box": _schema(
        (SEGMENT, pa.string()),
        (TIMESTAMP, pa.int64()),
        (OBJECT_ID, pa.string()),
        *((f"{_BOX}.box.center.{a}", pa.float64()) for a in _XYZ),
        *((f"{_BOX}.box.size.{a}", pa.float64()) for a in _XYZ),
        (f"{_BOX}.box.heading", pa.float64()),
        (f"{_BOX}.type", pa.int8()),
        *((f"{_BOX}.speed.{a}", pa.float64()) for a in _XYZ),
        *((f"{_BOX}.acceleration.{a}", pa.float64()) for a in _XYZ),
        (f"{_BOX}.num_lidar_points_in_box", pa.int64()),
        (f"{_BOX}.num_top_lidar_points_in_box", pa.int64()),
        (f"{_BOX}.difficulty_level.detection", pa.int8()),
        (f"{_BOX}.difficulty_level.tracking", pa.int8()),
    ),
    "camera_calibration": _schema(
        (SEGMENT, pa.string()),
        (CAMERA, pa.int8()),
        *((f"{_CAM}.intrinsic.{k}", pa.float64()) for k in ("f_u", "f_v", "c_u", "c_v", "k1", "k2", "p1", "p2", "k3")),
        (f"{_CAM}.extrinsic.transform", _TRANSFORM),
        (f"{_CAM}.width", pa.int32()),
        (f"{_CAM}.height", pa.int32()),
        (f"{_CAM}.rolling_shutter_direction", pa.int8()),
    ),
    "stats": _schema(
        (SEGMENT, pa.string()),
        (TIMESTAMP, pa.int64()),
        (f"{_STATS}.time_of_day", pa.string()),
        (f"{_STATS}.location", pa.string()),
        (f"{_STATS}.weather", pa.string()),
    ),
}
"""The columns this module reads and writes, per component tag (official names and arrow types;
the official files may have more columns, e.g. object counts in ``stats``)."""

_REQUIRED = ("lidar", "lidar_pose", "lidar_calibration", "vehicle_pose", "lidar_box")


def component_path(root: str | os.PathLike, split: str, tag: str, context_name: str) -> Path:
    """``<root>/<split>/<tag>/<context_name>.parquet``."""
    return Path(root) / split / tag / f"{context_name}.parquet"


def context_names(root: str | os.PathLike, split: str) -> list[str]:
    """The segments of a split (file stems of its ``vehicle_pose`` component), sorted."""
    return sorted(p.stem for p in (Path(root) / split / "vehicle_pose").glob("*.parquet"))


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def _open(path: Path, columns: Iterable[str]) -> pq.ParquetFile:
    """The parquet file, checked to have ``columns`` (errors name the file and the column)."""
    if not path.is_file():
        raise DataFormatError(f"{path}: missing component file")
    try:
        pf = pq.ParquetFile(path, memory_map=True)
        pf.schema_arrow  # noqa: B018 - decodes the footer's column paths (a damaged name raises UnicodeDecodeError)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise DataFormatError(f"{path}: not a parquet file: {e}") from None
    names = set(pf.schema_arrow.names)
    missing = [c for c in columns if c not in names]
    if missing:
        raise DataFormatError(
            f"{path}: missing column {missing[0]!r}" + (f" (and {missing[1:]})" if missing[1:] else "")
        )
    return pf


def _read(path: Path, columns: list[str]) -> pa.Table:
    pf = _open(path, columns)
    try:
        return pf.read(columns=columns)
    except (pa.ArrowException, OSError) as e:  # pyarrow raises OSError for undecodable pages (fuzzing found it)
        raise DataFormatError(f"{path}: {e}") from None


def _numpy(table: pa.Table, column: str, path: Path, dtype, nullable: bool = False) -> np.ndarray:
    """A primitive column as numpy ``dtype``; nulls are NaN where ``nullable``, else an error."""
    col = table.column(column)
    if not nullable and col.null_count:
        raise DataFormatError(f"{path}: column {column!r} has {col.null_count} null values")
    if pa.types.is_nested(col.type) or pa.types.is_binary(col.type):
        raise DataFormatError(f"{path}: column {column!r} has type {col.type}, expected a number")
    if np.issubdtype(np.dtype(dtype), np.integer) and not (
        pa.types.is_integer(col.type) or pa.types.is_boolean(col.type)
    ):
        # A float (NaN) or string column cast to integers would give silent garbage (fuzzing found it).
        raise DataFormatError(f"{path}: column {column!r} has type {col.type}, expected an integer")
    try:
        return np.asarray(col.to_numpy(), dtype=dtype)
    except (TypeError, ValueError, pa.ArrowException) as e:
        raise DataFormatError(f"{path}: column {column!r} ({col.type}): {e}") from None


def _strings(table: pa.Table, column: str, path: Path) -> list[str]:
    col = table.column(column)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise DataFormatError(f"{path}: column {column!r} has type {col.type}, expected string")
    return col.to_pylist()


def _lists(table: pa.Table, column: str, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A list column without Python objects: ``(offsets (R + 1,), values, is_null (R,))``.

    Row ``i`` is ``values[offsets[i]:offsets[i + 1]]``. Works for list, large_list and
    fixed_size_list columns; the values buffer is used as is (zero-copy where arrow allows).
    """
    col = table.column(column)
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type)):
        raise DataFormatError(f"{path}: column {column!r} has type {col.type}, expected a list")
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    is_null = arr.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_fixed_size_list(arr.type):
        size = arr.type.list_size
        offsets = (np.arange(len(arr) + 1, dtype=np.int64) + arr.offset) * size
    else:
        offsets = arr.offsets.to_numpy().astype(np.int64)
    values = arr.values
    if values.null_count:
        raise DataFormatError(f"{path}: column {column!r} has null list elements")
    return offsets, values.to_numpy(zero_copy_only=False), is_null


def _matrices(table: pa.Table, column: str, path: Path) -> list[np.ndarray | None]:
    """``(4, 4)`` float64 transforms of a ``fixed_size_list<float64>[16]`` column (None: null)."""
    offsets, values, is_null = _lists(table, column, path)
    out: list[np.ndarray | None] = []
    for i in range(len(is_null)):
        if is_null[i]:
            out.append(None)
            continue
        v = values[offsets[i] : offsets[i + 1]]
        if v.size != 16:
            raise DataFormatError(f"{path}: column {column!r} row {i}: a 4x4 transform needs 16 values, got {v.size}")
        out.append(v.astype(np.float64).reshape(4, 4))
    return out


class _Images:
    """The ``values``/``shape`` column pair of one range image of a table, decoded per row."""

    def __init__(self, table: pa.Table, prefix: str, path: Path, channels: int):
        self.name = f"{prefix}.values"
        self.offsets, self.values, self.null = _lists(table, self.name, path)
        shape_offsets, shapes, shape_null = _lists(table, f"{prefix}.shape", path)
        if np.any(np.diff(shape_offsets)[~shape_null] != 3):
            raise DataFormatError(f"{path}: column {prefix + '.shape'!r} must hold 3 values per row")
        self.shape_offsets, self.shape_values, self.shape_null = shape_offsets, shapes, shape_null
        self.prefix, self.path, self.channels = prefix, path, channels

    def get(self, row: int, where: str) -> np.ndarray | None:
        if self.null[row] and self.shape_null[row]:
            return None
        if self.null[row] or self.shape_null[row]:
            raise DataFormatError(f"{self.path}: {where}: {self.prefix}: values and shape must both be null or not")
        s = self.shape_offsets[row]
        shape = tuple(int(d) for d in self.shape_values[s : s + 3])
        if shape[2] != self.channels or min(shape) < 0:
            raise DataFormatError(
                f"{self.path}: {where}: {self.prefix}.shape is {list(shape)}, expected [H, W, {self.channels}]"
            )
        values = self.values[self.offsets[row] : self.offsets[row + 1]]
        if values.size != shape[0] * shape[1] * shape[2]:
            raise DataFormatError(
                f"{self.path}: {where}: {self.prefix}: shape {list(shape)} needs "
                f"{shape[0] * shape[1] * shape[2]} values, {self.name} has {values.size}"
            )
        return values.astype(np.float32, copy=False).reshape(shape)


class _RowGroups:
    """Row-group-wise access to the range-image rows of a lidar or lidar_pose file.

    The keys are read for the whole file up front (small); value columns are read one row group
    at a time, when a frame needs it, and dropped once no later frame needs it.
    """

    def __init__(self, path: Path, prefixes: tuple[str, ...], channels: int):
        self.columns = [c for p in prefixes for c in (f"{p}.values", f"{p}.shape")]
        self.pf = _open(path, [SEGMENT, TIMESTAMP, LASER, *self.columns])
        self.path, self.prefixes, self.channels = path, prefixes, channels
        self.keys = _read(path, [SEGMENT, TIMESTAMP, LASER])
        keys = self.keys
        self.timestamps = _numpy(keys, TIMESTAMP, path, np.int64)
        self.lasers = _numpy(keys, LASER, path, np.int64)
        sizes = [self.pf.metadata.row_group(i).num_rows for i in range(self.pf.num_row_groups)]
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._cache: dict[int, list[_Images]] = {}

    def rows_by_frame(self) -> dict[int, list[int]]:
        """Row indices of each frame timestamp, in file order; duplicate (frame, laser) rows are an error."""
        order = np.lexsort((self.lasers, self.timestamps))
        ts, lasers = self.timestamps[order], self.lasers[order]
        dup = np.flatnonzero((np.diff(ts) == 0) & (np.diff(lasers) == 0))
        if dup.size:
            raise DataFormatError(f"{self.path}: two rows for frame {ts[dup[0]]}, laser {lasers[dup[0]]}")
        out: dict[int, list[int]] = {}
        for row in order.tolist():
            out.setdefault(int(self.timestamps[row]), []).append(row)
        return out

    def images(self, row: int, where: str, keep: set[int]) -> list[np.ndarray | None]:
        group = int(np.searchsorted(self.starts, row, side="right")) - 1
        for g in [g for g in self._cache if g not in keep and g != group]:
            del self._cache[g]
        if group not in self._cache:
            try:
                table = self.pf.read_row_group(group, columns=self.columns)
            except (pa.ArrowException, OSError) as e:  # OSError: an undecodable page
                raise DataFormatError(f"{self.path}: row group {group}: {e}") from None
            self._cache[group] = [_Images(table, p, self.path, self.channels) for p in self.prefixes]
        local = row - int(self.starts[group])
        return [images.get(local, where) for images in self._cache[group]]

    def group_of(self, row: int) -> int:
        return int(np.searchsorted(self.starts, row, side="right")) - 1


def _calibrations(path: Path, context_name: str) -> tuple[WaymoLaserCalibration, ...]:
    incl = f"{_CALIB}.beam_inclination"
    table = _read(
        path, [SEGMENT, LASER, f"{_CALIB}.extrinsic.transform", f"{incl}.min", f"{incl}.max", f"{incl}.values"]
    )
    _check_segment(table, path, context_name)
    names = _numpy(table, LASER, path, np.int64)
    if len(set(names.tolist())) != len(names):
        raise DataFormatError(f"{path}: more than one calibration for a laser: {sorted(names.tolist())}")
    extrinsics = _matrices(table, f"{_CALIB}.extrinsic.transform", path)
    lo = _numpy(table, f"{incl}.min", path, np.float64)
    hi = _numpy(table, f"{incl}.max", path, np.float64)
    offsets, values, is_null = _lists(table, f"{incl}.values", path)
    calibs = []
    for i, name in enumerate(names.tolist()):
        if extrinsics[i] is None:
            raise DataFormatError(f"{path}: laser {name}: null extrinsic")
        beams = None if is_null[i] else values[offsets[i] : offsets[i + 1]]
        calibs.append(WaymoLaserCalibration(name, extrinsics[i], float(lo[i]), float(hi[i]), beams))
    return tuple(sorted(calibs, key=lambda c: c.name))


def _camera_calibrations(path: Path, context_name: str) -> tuple[WaymoCameraCalibration, ...]:
    if not path.is_file():
        return ()
    schema = SCHEMAS["camera_calibration"]
    table = _read(path, schema.names)
    _check_segment(table, path, context_name)
    intrinsic = np.stack([_numpy(table, n, path, np.float64) for n in schema.names[2:11]], axis=1)
    extrinsics = _matrices(table, f"{_CAM}.extrinsic.transform", path)
    names = _numpy(table, CAMERA, path, np.int64)
    width = _numpy(table, f"{_CAM}.width", path, np.int64)
    height = _numpy(table, f"{_CAM}.height", path, np.int64)
    shutter = _numpy(table, f"{_CAM}.rolling_shutter_direction", path, np.int64)
    cams = []
    for i in range(len(names)):
        if extrinsics[i] is None:
            raise DataFormatError(f"{path}: camera {names[i]}: null extrinsic")
        cams.append(
            WaymoCameraCalibration(
                int(names[i]), intrinsic[i], extrinsics[i], int(width[i]), int(height[i]), int(shutter[i])
            )
        )
    return tuple(sorted(cams, key=lambda c: c.name))


def _check_segment(table: pa.Table, path: Path, context_name: str) -> None:
    """Every row's ``key.segment_context_name`` is ``context_name``."""
    col = table.column(SEGMENT)
    # Type and nulls first: comparing a column of another type raises, and nulls compare as null.
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise DataFormatError(f"{path}: column {SEGMENT!r} has type {col.type}, expected string")
    if col.null_count:
        raise DataFormatError(f"{path}: column {SEGMENT!r} has {col.null_count} null values")
    if len(col) and not pc.all(pc.equal(col, context_name)).as_py():
        other = pc.filter(col, pc.not_equal(col, context_name))[0].as_py()
        raise DataFormatError(f"{path}: rows of segment {other!r} in the file of {context_name!r}")


def _labels_by_frame(path: Path, context_name: str) -> dict[int, WaymoLabels]:
    schema = SCHEMAS["lidar_box"]
    table = _read(path, schema.names)
    _check_segment(table, path, context_name)
    ts = _numpy(table, TIMESTAMP, path, np.int64)
    floats = [f"{_BOX}.box.center.{a}" for a in _XYZ] + [f"{_BOX}.box.size.{a}" for a in _XYZ] + [f"{_BOX}.box.heading"]
    boxes64 = np.stack([_numpy(table, c, path, np.float64) for c in floats], axis=1)
    # A NaN, infinite or float32-overflowing box field would reach training as a NaN target (fuzzing
    # found the silent overflow to inf).
    bad = ~np.isfinite(boxes64) | (np.abs(boxes64) > np.finfo(np.float32).max)
    if bad.any():
        column = floats[int(np.flatnonzero(bad.any(axis=0))[0])]
        raise DataFormatError(
            f"{path}: {int(bad.any(axis=1).sum())} boxes with NaN, infinite or out-of-range values "
            f"(first column {column!r}); expected finite metres and radians"
        )
    boxes = boxes64.astype(np.float32)
    boxes[:, 6] = wrap_heading(boxes[:, 6])
    motion = np.stack(
        [
            _numpy(table, f"{_BOX}.{k}.{a}", path, np.float64, nullable=True)
            for k in ("speed", "acceleration")
            for a in _XYZ
        ],
        axis=1,
    )
    ints = {
        k: _numpy(table, f"{_BOX}.{k}", path, np.int64)
        for k in (
            "type",
            "difficulty_level.detection",
            "difficulty_level.tracking",
            "num_lidar_points_in_box",
            "num_top_lidar_points_in_box",
        )
    }
    ids = np.asarray(_strings(table, OBJECT_ID, path), dtype=np.str_).reshape(-1)
    order = np.argsort(ts, kind="stable")  # frames by timestamp, labels in file order
    bounds = np.flatnonzero(np.diff(ts[order])) + 1
    out = {}
    for rows in np.split(order, bounds) if len(order) else []:
        out[int(ts[rows[0]])] = WaymoLabels(
            boxes=boxes[rows],
            types=ints["type"][rows],
            detection_difficulty=ints["difficulty_level.detection"][rows],
            tracking_difficulty=ints["difficulty_level.tracking"][rows],
            num_lidar_points_in_box=ints["num_lidar_points_in_box"][rows],
            num_top_lidar_points_in_box=ints["num_top_lidar_points_in_box"][rows],
            ids=ids[rows],
            speed=motion[rows, :3],
            acceleration=motion[rows, 3:],
        )
    return out


def _stats_by_frame(path: Path, context_name: str) -> dict[int, tuple[str, str, str]]:
    if not path.is_file():
        return {}
    table = _read(path, SCHEMAS["stats"].names)
    _check_segment(table, path, context_name)
    ts = _numpy(table, TIMESTAMP, path, np.int64).tolist()
    cols = [
        [s or "" for s in table.column(f"{_STATS}.{k}").to_pylist()] for k in ("time_of_day", "location", "weather")
    ]
    return {t: (cols[0][i], cols[1][i], cols[2][i]) for i, t in enumerate(ts)}


def _laser_name(name: int) -> str:
    try:
        return LaserName(name).name
    except ValueError:
        return str(name)


def _unknown_timestamps(path: Path, timestamps: Iterable[int], frames: set[int]) -> None:
    extra = sorted(set(timestamps) - frames)
    if extra:
        more = f" (and {len(extra) - 3} more)" if len(extra) > 3 else ""
        raise DataFormatError(f"{path}: frame timestamps {extra[:3]}{more} are not in the vehicle_pose component")


def read_range_image_frames(
    root: str | os.PathLike,
    split: str,
    context_name: str,
    labels: bool = True,
    warn: bool = True,
) -> Iterator[WaymoRangeImageFrame]:
    """Streams the frames of one v2 segment as stored (``WaymoRangeImageFrame``), by timestamp.

    Args:
        root, split, context_name: the files are ``<root>/<split>/<tag>/<context_name>.parquet``.
        labels: read ``lidar_box`` (False: empty labels, for splits without labels).
        warn: a ``UserWarning`` for frames without range images of every calibrated laser.

    Raises ``DataFormatError`` naming the file (and frame, laser and column where known) for a
    missing component file or column, a wrong column type, ``values`` whose length disagrees with
    ``shape``, duplicate rows, and timestamps absent from ``vehicle_pose`` (see the module
    docstring).
    """
    path = {tag: component_path(root, split, tag, context_name) for tag in SCHEMAS}
    required = [t for t in _REQUIRED if labels or t != "lidar_box"]
    for tag in required:  # fail before reading anything
        if not path[tag].is_file():
            raise DataFormatError(f"{path[tag]}: missing component file ({tag} of segment {context_name!r})")

    calibs = _calibrations(path["lidar_calibration"], context_name)
    cameras = _camera_calibrations(path["camera_calibration"], context_name)
    poses_table = _read(path["vehicle_pose"], [SEGMENT, TIMESTAMP, f"{_VPOSE}.world_from_vehicle.transform"])
    _check_segment(poses_table, path["vehicle_pose"], context_name)
    pose_ts = _numpy(poses_table, TIMESTAMP, path["vehicle_pose"], np.int64).tolist()
    pose_list = _matrices(poses_table, f"{_VPOSE}.world_from_vehicle.transform", path["vehicle_pose"])
    poses: dict[int, np.ndarray] = {}
    for t, m in zip(pose_ts, pose_list, strict=True):
        if t in poses:
            raise DataFormatError(f"{path['vehicle_pose']}: two rows for frame {t}")
        if m is None:
            raise DataFormatError(f"{path['vehicle_pose']}: frame {t}: null world_from_vehicle.transform")
        poses[t] = m
    frames = set(poses)

    lidar = _RowGroups(path["lidar"], (f"{_LIDAR}.range_image_return1", f"{_LIDAR}.range_image_return2"), 4)
    _check_segment(lidar.keys, lidar.path, context_name)
    pixel = _RowGroups(path["lidar_pose"], (f"{_POSE}.range_image_return1",), 6)
    _check_segment(pixel.keys, pixel.path, context_name)
    lidar_rows, pose_rows = lidar.rows_by_frame(), pixel.rows_by_frame()
    _unknown_timestamps(path["lidar"], lidar_rows, frames)
    _unknown_timestamps(path["lidar_pose"], pose_rows, frames)
    label_map = _labels_by_frame(path["lidar_box"], context_name) if labels else {}
    _unknown_timestamps(path["lidar_box"], label_map, frames)
    stats = _stats_by_frame(path["stats"], context_name)

    order = sorted(frames)
    for k, t in enumerate(order):
        rows = lidar_rows.get(t, [])
        # Row groups this frame and the next need stay cached (frames may straddle row groups).
        near = order[k : k + 2]
        keep_lidar = {lidar.group_of(r) for ts in near for r in lidar_rows.get(ts, [])}
        keep_pose = {pixel.group_of(r) for ts in near for r in pose_rows.get(ts, [])}
        pose_by_laser = {int(pixel.lasers[r]): r for r in pose_rows.get(t, [])}
        lasers = []
        for row in rows:
            name = int(lidar.lasers[row])
            where = f"frame {t}, laser {_laser_name(name)}"
            first, second = lidar.images(row, where, keep_lidar)
            pixel_pose = None
            if name in pose_by_laser:
                (pixel_pose,) = pixel.images(pose_by_laser.pop(name), where, keep_pose)
            if first is None:
                if second is not None:
                    raise DataFormatError(f"{path['lidar']}: {where}: second return without a first return")
                continue
            try:
                lasers.append(WaymoLaserRangeImages(name, first, second, pixel_pose))
            except ValueError as e:  # shapes of the returns / pixel pose disagree
                raise DataFormatError(f"{path['lidar']}: {where}: {e}") from None
        if pose_by_laser:
            names = [_laser_name(n) for n in sorted(pose_by_laser)]
            raise DataFormatError(f"{path['lidar_pose']}: frame {t}: pixel poses for lasers {names} without lidar rows")
        time_of_day, location, weather = stats.get(t, ("", "", ""))
        try:
            frame = WaymoRangeImageFrame(
                context_name=context_name,
                timestamp_micros=t,
                pose=poses[t],
                laser_calibrations=calibs,
                camera_calibrations=cameras,
                lasers=tuple(lasers),
                labels=label_map.get(t) or WaymoLabels.empty(),
                time_of_day=time_of_day,
                location=location,
                weather=weather,
            )
        except ValueError as e:  # e.g. a laser without calibration
            raise DataFormatError(f"{path['lidar']}: frame {t}: {e}") from None
        if warn:
            present = {laser.name for laser in lasers}
            missing = [_laser_name(c.name) for c in calibs if c.name not in present]
            if not lasers:
                warnings.warn(
                    f"{path['lidar']}: frame {t} (context {context_name!r}): no range images; "
                    f"yielding its {len(frame.labels)} labels with zero points",
                    stacklevel=2,
                )
            elif missing:
                warnings.warn(
                    f"{path['lidar']}: frame {t} (context {context_name!r}): no range images for lasers {missing}",
                    stacklevel=2,
                )
        yield frame


def read_frames(
    root: str | os.PathLike,
    split: str,
    context_name: str,
    returns: tuple[int, ...] = (0, 1),
    labels: bool = True,
) -> Iterator[WaymoFrame]:
    """Streams the frames of one v2 segment with their points (``WaymoFrame``), by timestamp.

    Same frames, points and order as the v1 reader (``WaymoRangeImageFrame.to_frame``): all lasers
    with range images, the selected ``returns`` (0: first, 1: second), TOP pixel poses applied.
    A frame without range images yields its labels with zero points and a ``UserWarning`` naming
    the file and frame. See ``read_range_image_frames`` for the arguments and errors.
    """
    lidar = component_path(root, split, "lidar", context_name)
    for raw in read_range_image_frames(root, split, context_name, labels=labels):
        try:
            yield raw.to_frame(returns)
        except DataFormatError as e:
            raise DataFormatError(f"{lidar}: frame {raw.timestamp_micros}: {e}") from None


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def _transform_column(matrices: list[np.ndarray]) -> pa.Array:
    flat = np.asarray(matrices, dtype=np.float64).reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float64()), 16)


def _image_columns(images: list[np.ndarray | None]) -> tuple[pa.Array, pa.Array]:
    """``values`` (list<float32>) and ``shape`` (fixed_size_list<int32>[3]) columns; None -> null."""
    mask = np.array([im is None for im in images])
    sizes = np.array([0 if im is None else im.size for im in images], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
    data = [im.reshape(-1) for im in images if im is not None]
    flat = np.concatenate(data).astype(np.float32, copy=False) if data else np.zeros(0, np.float32)
    null = pa.array(mask) if mask.any() else None
    values = pa.ListArray.from_arrays(
        pa.array(offsets, pa.int32()), pa.array(flat, pa.float32()), _IMAGE_VALUES, mask=null
    )
    shapes = np.array([(0, 0, 0) if im is None else im.shape for im in images], dtype=np.int32).reshape(-1)
    shape = pa.FixedSizeListArray.from_arrays(pa.array(shapes, pa.int32()), 3, mask=null)
    return values, shape


def _nullable(values: np.ndarray) -> pa.Array:
    """float64 column with NaN -> null (the official nullable speeds/accelerations)."""
    values = np.asarray(values, dtype=np.float64)
    return pa.array(values, pa.float64(), mask=np.isnan(values))


def _same_calibrations(a: WaymoRangeImageFrame, b: WaymoRangeImageFrame) -> bool:
    def key(frame):
        lasers = [
            (
                c.name,
                c.extrinsic.tobytes(),
                c.beam_inclination_min,
                c.beam_inclination_max,
                None if c.beam_inclinations is None else c.beam_inclinations.tobytes(),
            )
            for c in frame.laser_calibrations
        ]
        cams = [
            (c.name, c.intrinsic.tobytes(), c.extrinsic.tobytes(), c.width, c.height, c.rolling_shutter_direction)
            for c in frame.camera_calibrations
        ]
        return lasers, cams

    return key(a) == key(b)


def _frame_tables(frame: WaymoRangeImageFrame) -> dict[str, pa.Table]:
    ctx, t = frame.context_name, int(frame.timestamp_micros)
    lasers = frame.lasers
    n = len(lasers)
    tables = {}
    cols = {
        SEGMENT: pa.array([ctx] * n, pa.string()),
        TIMESTAMP: pa.array([t] * n, pa.int64()),
        LASER: pa.array([laser.name for laser in lasers], pa.int8()),
    }
    for r, images in enumerate(
        (
            [laser.return1 for laser in lasers],
            [laser.return2 if laser.return2 is not None else np.zeros_like(laser.return1) for laser in lasers],
        ),
        start=1,
    ):
        cols[f"{_LIDAR}.range_image_return{r}.values"], cols[f"{_LIDAR}.range_image_return{r}.shape"] = _image_columns(
            images
        )
    tables["lidar"] = pa.table(cols, schema=SCHEMAS["lidar"])

    poses = []
    for laser in lasers:
        pixel_pose = laser.pixel_pose
        if pixel_pose is None and laser.name == LaserName.TOP:
            # Readers of raw data expect TOP pixel poses; a static frame's are the frame pose.
            pixel_pose = np.broadcast_to(matrix_to_pose6(frame.pose).astype(np.float32), (*laser.return1.shape[:2], 6))
        if pixel_pose is not None:
            poses.append((laser.name, pixel_pose))
    values, shape = _image_columns([p for _, p in poses])
    tables["lidar_pose"] = pa.table(
        [
            pa.array([ctx] * len(poses), pa.string()),
            pa.array([t] * len(poses), pa.int64()),
            pa.array([name for name, _ in poses], pa.int8()),
            values,
            shape,
        ],
        schema=SCHEMAS["lidar_pose"],
    )

    tables["vehicle_pose"] = pa.table(
        [pa.array([ctx], pa.string()), pa.array([t], pa.int64()), _transform_column([frame.pose])],
        schema=SCHEMAS["vehicle_pose"],
    )

    labels = frame.labels
    m = len(labels)
    boxes = labels.boxes.astype(np.float64)
    box_cols = [
        pa.array([ctx] * m, pa.string()),
        pa.array([t] * m, pa.int64()),
        pa.array([str(i) for i in labels.ids], pa.string()),
    ]
    box_cols += [pa.array(boxes[:, j], pa.float64()) for j in range(7)]
    box_cols.append(pa.array(labels.types, pa.int8()))
    box_cols += [_nullable(labels.speed[:, j]) for j in range(3)]
    box_cols += [_nullable(labels.acceleration[:, j]) for j in range(3)]
    box_cols += [
        pa.array(labels.num_lidar_points_in_box, pa.int64()),
        pa.array(labels.num_top_lidar_points_in_box, pa.int64()),
        pa.array(labels.detection_difficulty, pa.int8()),
        pa.array(labels.tracking_difficulty, pa.int8()),
    ]
    tables["lidar_box"] = pa.table(box_cols, schema=SCHEMAS["lidar_box"])

    tables["stats"] = pa.table(
        [
            pa.array([ctx]),
            pa.array([t], pa.int64()),
            pa.array([frame.time_of_day]),
            pa.array([frame.location]),
            pa.array([frame.weather]),
        ],
        schema=SCHEMAS["stats"],
    )
    return tables


def _segment_tables(frame: WaymoRangeImageFrame) -> dict[str, pa.Table]:
    ctx = frame.context_name
    calibs = frame.laser_calibrations
    k = len(calibs)
    beams = [c.beam_inclinations for c in calibs]
    beam_values = pa.array([None if b is None else b.tolist() for b in beams], pa.list_(pa.float64()))
    lidar_calibration = pa.table(
        [
            pa.array([ctx] * k, pa.string()),
            pa.array([c.name for c in calibs], pa.int8()),
            _transform_column([c.extrinsic for c in calibs]),
            pa.array([c.beam_inclination_min for c in calibs], pa.float64()),
            pa.array([c.beam_inclination_max for c in calibs], pa.float64()),
            beam_values,
        ],
        schema=SCHEMAS["lidar_calibration"],
    )
    cams = frame.camera_calibrations or default_camera_calibrations()
    intrinsic = np.array([c.intrinsic for c in cams], dtype=np.float64).reshape(len(cams), 9)
    camera_calibration = pa.table(
        [
            pa.array([ctx] * len(cams), pa.string()),
            pa.array([c.name for c in cams], pa.int8()),
            *(pa.array(intrinsic[:, j], pa.float64()) for j in range(9)),
            _transform_column([c.extrinsic for c in cams]),
            pa.array([c.width for c in cams], pa.int32()),
            pa.array([c.height for c in cams], pa.int32()),
            pa.array([c.rolling_shutter_direction for c in cams], pa.int8()),
        ],
        schema=SCHEMAS["camera_calibration"],
    )
    return {"lidar_calibration": lidar_calibration, "camera_calibration": camera_calibration}


def write_segment(
    root: str | os.PathLike, split: str, frames: Iterable[WaymoRangeImageFrame], compression: str = "snappy"
) -> dict[str, Path]:
    """Writes the frames of one segment as v2 components and returns ``{tag: path}``.

    All frames must share their ``context_name`` and calibrations (v2 stores calibrations once per
    segment). Each component is written as one row group per frame (calibrations: one), streaming
    ``frames``; every file is written to a temporary file and moved into place only when all
    frames are written, so a failure leaves no partial file behind. See the module docstring for
    what is filled in.
    """
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError("write_segment needs at least one frame")
    ctx = first.context_name
    paths = {tag: component_path(root, split, tag, ctx) for tag in SCHEMAS}
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        writers = {}
        for tag, p in paths.items():
            sink = stack.enter_context(atomic_file(p))
            writers[tag] = stack.enter_context(pq.ParquetWriter(sink, SCHEMAS[tag], compression=compression))
        for tag, table in _segment_tables(first).items():
            writers[tag].write_table(table)
        seen: set[int] = set()
        frame: WaymoRangeImageFrame | None = first
        while frame is not None:
            if frame.context_name != ctx:
                raise ValueError(f"frames of segments {ctx!r} and {frame.context_name!r} in one write_segment call")
            if frame is not first and not _same_calibrations(first, frame):
                raise ValueError(f"frame {frame.timestamp_micros}: calibrations differ from the segment's first frame")
            if frame.timestamp_micros in seen:
                raise ValueError(f"two frames with timestamp {frame.timestamp_micros}")
            seen.add(frame.timestamp_micros)
            for tag, table in _frame_tables(frame).items():
                writers[tag].write_table(table)
            frame = next(frames, None)
    return paths
