"""The converted-dataset layout every model reads, and its readers (no pickle anywhere).

``tools/create_data.py`` (``pointformer.data.convert``) writes, under one output root::

    <out>/
      meta.json                         {"layout_version", "dataset", "source_format",
                                         "point_features", "class_names", "box_fields",
                                         "created_by", "splits": {split: {"sequences",
                                         "frames", "sweeps", "gt_database", "boxes",
                                         "gt_objects"}}}
      points/<sequence>/<frame:04d>.npy (N, F) float32 points in the frame of that frame (Waymo:
                                        the vehicle frame; nuScenes: the LIDAR_TOP sensor frame);
                                        features as meta["point_features"]. Waymo:
                                        [x, y, z, intensity, elongation], metres, raw intensity
                                        (no tanh), all lasers and both returns; points inside a
                                        no-label zone (NLZ flag != -1) are dropped. nuScenes:
                                        [x, y, z, intensity] (0-255), every point of the .pcd.bin
                                        (no min-distance filter; the ring index is dropped).
      points/<sequence>/sweeps/<key>.npy
                                        nuScenes: the non-keyframe LIDAR_TOP sweeps (key = their
                                        sample_data token), in their own sensor frame, same
                                        features; listed in the frames' ``sweeps`` column
      frames_<split>.parquet            one row per frame (columns below)
      gt_database/<split>/<sequence>_<frame:04d>_<class>_<k>.npy
                                        (P, F) float32 points of box k of that frame, translated so
                                        the box centre is the origin (axes stay the ego frame's:
                                        not rotated), as OpenPCDet's gt database; paste an
                                        object by adding a new centre
      gt_database_<split>.parquet       one row per gt-database object (columns below)
      parts/<split>/<sequence>.frames.parquet, <sequence>.gt.parquet
                                        per-sequence tables a (resumable) conversion merges into
                                        the two split tables; a sequence whose parts exist is
                                        complete (the frames part is written last)

Boxes are ``[x, y, z, dx, dy, dz, heading, vx, vy]`` float32 in the frame's own frame (Waymo:
vehicle; nuScenes: LIDAR_TOP, as OpenPCDet) (the ``Boxes3D`` convention: centre, full extents
length/width/height, heading counter-clockwise from +x in [-pi, pi), velocity m/s rotated from the
labelled global-frame speed into that frame; nuScenes: NaN where the devkit has no velocity).
Poses map that frame to global (Waymo: vehicle -> global; nuScenes: LIDAR_TOP -> global =
ego_pose @ calibrated_sensor), 4x4 float64, stored row-major as 16 numbers.

Sweeps: a sweep's points move into its frame's by ``inv(frame pose) @ sweep pose``; its time lag
is ``1e-6 * (frame timestamp - sweep timestamp)`` seconds. Waymo lists the previous rows of the
sequence; nuScenes lists the LIDAR_TOP sample_data before the keyframe along ``prev`` (as
``LidarPointCloud.from_file_multisweep``: non-keyframe sweeps, and earlier keyframes where the
chain reaches them, whose sweep entry then names that keyframe's row and points file), fewer at
the start of a scene; meta["splits"][split]["sweeps"] is the most listed per frame (nuScenes:
OpenPCDet's MAX_SWEEPS = 10 is 9 here, the keyframe not counted).

nuScenes frames (dataset "nuscenes"): one sequence per scene (named by the scene name), one row per
keyframe sample in time order; ``frame_id`` is ``<scene name>_<index:04d>`` like every dataset's,
the sample token is in the ``sample_token`` column (map predictions back with it); boxes are the
annotations with a detection class (``names``: the 10 detection classes), ``num_points_in_box`` is
``num_lidar_pts``, ``object_ids`` the instance tokens, ``difficulty`` and
``tracking_difficulty`` 0, ``speed_global`` the devkit's box velocity (NaN where unknown),
``accel_global`` NaN, ``location`` the log's. Extra columns (``EXTRA_COLUMNS``): ``sample_token``,
``scene_token``, ``lidar_token`` (the keyframe's LIDAR_TOP sample_data), and per box
``category_names``, ``attribute_names`` ("" for none), ``num_radar_pts``, ``visibility``
(the visibility token), ``annotation_tokens``.

``frames_<split>.parquet`` columns:

=====================  ===========================================  ============================
column                 type                                         meaning
=====================  ===========================================  ============================
frame_id               string                                       ``<sequence>_<frame:04d>``
sequence               string                                       sequence (segment) name
frame_index            int32                                        index in the sequence
timestamp_micros       int64                                        frame time (microseconds)
pose                   fixed_size_list<float64>[16]                 vehicle -> global
points_path            string                                       relative to the root (posix)
num_points             int64                                        rows of the points file
boxes                  list<fixed_size_list<float32>[9]>            see above
names                  list<string>                                 class name of each box
difficulty             list<int8>                                   detection difficulty (0-2)
tracking_difficulty    list<int8>                                   tracking difficulty (0-2)
num_points_in_box      list<int32>                                  as labelled
object_ids             list<string>                                 tracking ids
speed_global           list<fixed_size_list<float32>[3]>            m/s, global axes
accel_global           list<fixed_size_list<float32>[3]>            m/s^2, global axes
time_of_day, location,
weather                string                                       segment stats ("" if none)
sweeps                 list<struct<frame_id, points_path,           the previous ``meta["sweeps"]``
                       timestamp_micros, pose>>                     frames of the same sequence,
                                                                    most recent first
=====================  ===========================================  ============================

``gt_database_<split>.parquet`` columns: ``path`` (relative), ``name``, ``box`` (fixed_size_list
<float32>[9], ego frame), ``difficulty`` (int8), ``num_points`` (int32, points in the file),
``frame_id``, ``sequence``, ``frame_index`` (int32), ``box_index`` (int32: row k of the frame's
boxes), ``object_id``.

Reading::

    frames = read_frame_table(root, "training")      # FrameRecords, columnar numpy arrays
    rec = frames[0]                                  # FrameRecord: one frame's view
    points = load_points(root, rec)                  # (N, F) float32, path checked to stay in root
    sweep_points = [load_points(root, s) for s in rec.sweeps]
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pointformer.data.formats.errors import DataFormatError

LAYOUT_VERSION = 1
BOX_FIELDS = ("x", "y", "z", "dx", "dy", "dz", "heading", "vx", "vy")
BOX_DIM = len(BOX_FIELDS)

_POSE = pa.list_(pa.float64(), 16)
_BOX = pa.list_(pa.float32(), BOX_DIM)
_VEC3 = pa.list_(pa.float32(), 3)
SWEEP_TYPE = pa.struct(
    [("frame_id", pa.string()), ("points_path", pa.string()), ("timestamp_micros", pa.int64()), ("pose", _POSE)]
)
# Dataset-specific frame-table columns (after ``FRAME_SCHEMA``'s, only in the datasets that give
# them; see the module docstring): name -> type.
EXTRA_COLUMNS: dict[str, pa.DataType] = {
    "sample_token": pa.string(),
    "scene_token": pa.string(),
    "lidar_token": pa.string(),
    "category_names": pa.list_(pa.string()),
    "attribute_names": pa.list_(pa.string()),
    "num_radar_pts": pa.list_(pa.int32()),
    "visibility": pa.list_(pa.string()),
    "annotation_tokens": pa.list_(pa.string()),
}
# The per-sequence part: every frame-table column but ``sweeps`` (added when parts are merged,
# unless the dataset lists its own) and the extra columns.
FRAME_PART_SCHEMA = pa.schema(
    [
        ("frame_id", pa.string()),
        ("sequence", pa.string()),
        ("frame_index", pa.int32()),
        ("timestamp_micros", pa.int64()),
        ("pose", _POSE),
        ("points_path", pa.string()),
        ("num_points", pa.int64()),
        ("boxes", pa.list_(_BOX)),
        ("names", pa.list_(pa.string())),
        ("difficulty", pa.list_(pa.int8())),
        ("tracking_difficulty", pa.list_(pa.int8())),
        ("num_points_in_box", pa.list_(pa.int32())),
        ("object_ids", pa.list_(pa.string())),
        ("speed_global", pa.list_(_VEC3)),
        ("accel_global", pa.list_(_VEC3)),
        ("time_of_day", pa.string()),
        ("location", pa.string()),
        ("weather", pa.string()),
    ]
)
FRAME_SCHEMA = FRAME_PART_SCHEMA.append(pa.field("sweeps", pa.list_(SWEEP_TYPE)))
GT_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("name", pa.string()),
        ("box", _BOX),
        ("difficulty", pa.int8()),
        ("num_points", pa.int32()),
        ("frame_id", pa.string()),
        ("sequence", pa.string()),
        ("frame_index", pa.int32()),
        ("box_index", pa.int32()),
        ("object_id", pa.string()),
    ]
)


def frame_id(sequence: str, index: int) -> str:
    return f"{sequence}_{index:04d}"


def points_relpath(sequence: str, index: int) -> str:
    """``points/<sequence>/<index:04d>.npy`` (posix, relative to the root)."""
    return f"points/{sequence}/{index:04d}.npy"


def sweep_relpath(sequence: str, key: str) -> str:
    """``points/<sequence>/sweeps/<key>.npy``: a sweep that is not a row (nuScenes non-keyframes)."""
    return f"points/{sequence}/sweeps/{key}.npy"


def gt_relpath(split: str, sequence: str, index: int, name: str, k: int) -> str:
    return f"gt_database/{split}/{sequence}_{index:04d}_{name}_{k}.npy"


def frame_table_path(root: str | os.PathLike, split: str) -> Path:
    return Path(root) / f"frames_{split}.parquet"


def gt_table_path(root: str | os.PathLike, split: str) -> Path:
    return Path(root) / f"gt_database_{split}.parquet"


def read_meta(root: str | os.PathLike) -> dict:
    """``meta.json`` of a converted root."""
    path = Path(root) / "meta.json"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no meta.json: not a converted dataset root (tools/create_data.py)") from None
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{path}: invalid JSON: {e}") from None
    if meta.get("layout_version") != LAYOUT_VERSION:
        raise DataFormatError(
            f"{path}: layout version {meta.get('layout_version')!r}, this pointformer reads {LAYOUT_VERSION}; "
            "convert the dataset again"
        )
    return meta


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SweepRecord:
    """A previous frame of the same sequence: its points file and pose (vehicle -> global,
    ``(4, 4)`` float64). ``table`` and ``row`` name the frame-table row that lists it."""

    frame_id: str
    points_path: str
    timestamp_micros: int
    pose: np.ndarray
    table: Path
    row: int


@dataclass(frozen=True, eq=False)
class FrameRecord:
    """One frame-table row. Box arrays have ``M`` rows (see the module docstring for units)."""

    table: Path
    row: int
    frame_id: str
    sequence: str
    frame_index: int
    timestamp_micros: int
    pose: np.ndarray  # (4, 4) float64 vehicle -> global
    points_path: str
    num_points: int
    boxes: np.ndarray  # (M, 9) float32
    names: np.ndarray  # (M,) str
    difficulty: np.ndarray  # (M,) int8
    tracking_difficulty: np.ndarray  # (M,) int8
    num_points_in_box: np.ndarray  # (M,) int32
    object_ids: np.ndarray  # (M,) str
    speed_global: np.ndarray  # (M, 3) float32
    accel_global: np.ndarray  # (M, 3) float32
    sweeps: tuple[SweepRecord, ...]


@dataclass(frozen=True, eq=False)
class FrameRecords:
    """A split's frame table, columnar. Per-frame columns have ``F`` rows; per-box columns are
    concatenated over frames (``B`` rows), frame ``i`` owning rows ``box_offsets[i]:box_offsets[i
    + 1]``; sweeps likewise with ``sweep_offsets``. ``records[i]`` is frame ``i``'s ``FrameRecord``.
    """

    table: Path
    frame_id: list[str]
    sequence: list[str]
    frame_index: np.ndarray  # (F,) int32
    timestamp_micros: np.ndarray  # (F,) int64
    pose: np.ndarray  # (F, 4, 4) float64
    points_path: list[str]
    num_points: np.ndarray  # (F,) int64
    box_offsets: np.ndarray  # (F + 1,) int64
    boxes: np.ndarray  # (B, 9) float32
    names: np.ndarray  # (B,) str
    difficulty: np.ndarray  # (B,) int8
    tracking_difficulty: np.ndarray  # (B,) int8
    num_points_in_box: np.ndarray  # (B,) int32
    object_ids: np.ndarray  # (B,) str
    speed_global: np.ndarray  # (B, 3) float32
    accel_global: np.ndarray  # (B, 3) float32
    time_of_day: list[str]
    location: list[str]
    weather: list[str]
    sweep_offsets: np.ndarray  # (F + 1,) int64
    sweep_frame_id: list[str]
    sweep_points_path: list[str]
    sweep_timestamp_micros: np.ndarray  # (S,) int64
    sweep_pose: np.ndarray  # (S, 4, 4) float64

    def __len__(self) -> int:
        return len(self.frame_id)

    def __getitem__(self, i: int) -> FrameRecord:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"frame {i} out of range for {n} frames")
        i %= n
        b = slice(self.box_offsets[i], self.box_offsets[i + 1])
        sweeps = tuple(
            SweepRecord(
                self.sweep_frame_id[s],
                self.sweep_points_path[s],
                int(self.sweep_timestamp_micros[s]),
                self.sweep_pose[s],
                self.table,
                i,
            )
            for s in range(self.sweep_offsets[i], self.sweep_offsets[i + 1])
        )
        return FrameRecord(
            table=self.table,
            row=i,
            frame_id=self.frame_id[i],
            sequence=self.sequence[i],
            frame_index=int(self.frame_index[i]),
            timestamp_micros=int(self.timestamp_micros[i]),
            pose=self.pose[i],
            points_path=self.points_path[i],
            num_points=int(self.num_points[i]),
            boxes=self.boxes[b],
            names=self.names[b],
            difficulty=self.difficulty[b],
            tracking_difficulty=self.tracking_difficulty[b],
            num_points_in_box=self.num_points_in_box[b],
            object_ids=self.object_ids[b],
            speed_global=self.speed_global[b],
            accel_global=self.accel_global[b],
            sweeps=sweeps,
        )


@dataclass(frozen=True, eq=False)
class GTDatabaseRecords:
    """A split's gt-database table, columnar (``K`` objects)."""

    table: Path
    path: list[str]
    name: np.ndarray  # (K,) str
    box: np.ndarray  # (K, 9) float32, ego frame of the source frame
    difficulty: np.ndarray  # (K,) int8
    num_points: np.ndarray  # (K,) int32
    frame_id: list[str]
    sequence: list[str]
    frame_index: np.ndarray  # (K,) int32
    box_index: np.ndarray  # (K,) int32
    object_id: list[str]

    def __len__(self) -> int:
        return len(self.path)


# ---------------------------------------------------------------------------------------------
# Column helpers
# ---------------------------------------------------------------------------------------------


def _offsets(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    lengths = pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False)
    return np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)


def _flat(column: pa.ChunkedArray, dtype, width: int | None = None) -> np.ndarray:
    """The values of a ``list<T>`` (or ``list<fixed_size_list<T>[width]>``) column, flattened."""
    values = pc.list_flatten(column)
    if width is not None:
        values = pc.list_flatten(values)
    arr = np.asarray(values.to_numpy(zero_copy_only=False), dtype=dtype)
    return arr.reshape(-1, width) if width is not None else arr


def _fixed(column: pa.ChunkedArray, dtype, width: int) -> np.ndarray:
    return np.asarray(pc.list_flatten(column).to_numpy(zero_copy_only=False), dtype=dtype).reshape(-1, width)


def _read_table(path: Path, schema: pa.Schema, what: str) -> pa.Table:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {what} table (convert the dataset with tools/create_data.py)")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise DataFormatError(f"{path}: cannot read the {what} table: {e}") from None
    missing = [name for name in schema.names if name not in table.column_names]
    if missing:
        raise DataFormatError(f"{path}: {what} table lacks columns {missing}")
    for field in schema:
        if not table.schema.field(field.name).type.equals(field.type):
            raise DataFormatError(
                f"{path}: column {field.name!r} has type {table.schema.field(field.name).type}, expected {field.type}"
            )
    return table


def read_frame_table(root: str | os.PathLike, split: str) -> FrameRecords:
    """Reads ``<root>/frames_<split>.parquet`` into ``FrameRecords``."""
    path = frame_table_path(root, split)
    t = _read_table(path, FRAME_SCHEMA, "frame")
    sweeps = t.column("sweeps")
    flat_sweeps = pc.list_flatten(sweeps)
    sweep_struct = flat_sweeps.combine_chunks() if isinstance(flat_sweeps, pa.ChunkedArray) else flat_sweeps
    if len(sweep_struct):
        s_frame_id = sweep_struct.field("frame_id").to_pylist()
        s_path = sweep_struct.field("points_path").to_pylist()
        s_time = np.asarray(sweep_struct.field("timestamp_micros").to_numpy(zero_copy_only=False), np.int64)
        s_pose = _fixed(sweep_struct.field("pose"), np.float64, 16).reshape(-1, 4, 4)
    else:
        s_frame_id, s_path, s_time, s_pose = [], [], np.zeros(0, np.int64), np.zeros((0, 4, 4))
    return FrameRecords(
        table=path,
        frame_id=t.column("frame_id").to_pylist(),
        sequence=t.column("sequence").to_pylist(),
        frame_index=t.column("frame_index").to_numpy().astype(np.int32),
        timestamp_micros=t.column("timestamp_micros").to_numpy().astype(np.int64),
        pose=_fixed(t.column("pose"), np.float64, 16).reshape(-1, 4, 4),
        points_path=t.column("points_path").to_pylist(),
        num_points=t.column("num_points").to_numpy().astype(np.int64),
        box_offsets=_offsets(t.column("boxes")),
        boxes=_flat(t.column("boxes"), np.float32, BOX_DIM),
        names=np.asarray(_flat(t.column("names"), object), dtype=np.str_),
        difficulty=_flat(t.column("difficulty"), np.int8),
        tracking_difficulty=_flat(t.column("tracking_difficulty"), np.int8),
        num_points_in_box=_flat(t.column("num_points_in_box"), np.int32),
        object_ids=np.asarray(_flat(t.column("object_ids"), object), dtype=np.str_),
        speed_global=_flat(t.column("speed_global"), np.float32, 3),
        accel_global=_flat(t.column("accel_global"), np.float32, 3),
        time_of_day=t.column("time_of_day").to_pylist(),
        location=t.column("location").to_pylist(),
        weather=t.column("weather").to_pylist(),
        sweep_offsets=_offsets(sweeps),
        sweep_frame_id=s_frame_id,
        sweep_points_path=s_path,
        sweep_timestamp_micros=s_time,
        sweep_pose=s_pose,
    )


def read_frame_columns(root: str | os.PathLike, split: str, names: list[str]) -> dict[str, list]:
    """Columns of ``<root>/frames_<split>.parquet`` as Python lists (e.g. nuScenes'
    ``["frame_id", "sample_token"]``). Raises ``DataFormatError`` for a column it lacks."""
    path = frame_table_path(root, split)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no frame table (convert the dataset with tools/create_data.py)")
    have = pq.read_schema(path).names
    missing = [n for n in names if n not in have]
    if missing:
        raise DataFormatError(f"{path}: frame table lacks columns {missing}")
    t = pq.read_table(path, columns=list(names))
    return {n: t.column(n).to_pylist() for n in names}


def read_gt_database(root: str | os.PathLike, split: str) -> GTDatabaseRecords:
    """Reads ``<root>/gt_database_<split>.parquet``."""
    path = gt_table_path(root, split)
    t = _read_table(path, GT_SCHEMA, "gt database")
    return GTDatabaseRecords(
        table=path,
        path=t.column("path").to_pylist(),
        name=np.asarray(t.column("name").to_pylist(), dtype=np.str_),
        box=_fixed(t.column("box"), np.float32, BOX_DIM),
        difficulty=t.column("difficulty").to_numpy().astype(np.int8),
        num_points=t.column("num_points").to_numpy().astype(np.int32),
        frame_id=t.column("frame_id").to_pylist(),
        sequence=t.column("sequence").to_pylist(),
        frame_index=t.column("frame_index").to_numpy().astype(np.int32),
        box_index=t.column("box_index").to_numpy().astype(np.int32),
        object_id=t.column("object_id").to_pylist(),
    )


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _resolved_root(root: str) -> Path:
    # Resolved once per root: the gt sampler resolves a path per pasted object, every frame.
    return Path(root).resolve()


def resolve_path(root: str | os.PathLike, relpath: str, where: str) -> Path:
    """``root / relpath``, refusing a path that leaves ``root`` (absolute paths, ``..``, symlinks
    pointing outside). ``where`` names the table and row for the error."""
    base = _resolved_root(os.fspath(root))
    path = (base / relpath).resolve()
    if not path.is_relative_to(base):
        raise DataFormatError(f"{where}: path {relpath!r} escapes the dataset root {str(base)!r}")
    return path


def load_array(root: str | os.PathLike, relpath: str, where: str, num_features: int | None = None) -> np.ndarray:
    """Loads a ``(N, F)`` float32 ``.npy`` file of the layout (never with pickle)."""
    path = resolve_path(root, relpath, where)
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{where}: points file {str(path)!r} does not exist") from None
    except ValueError as e:
        raise DataFormatError(f"{where}: {str(path)!r}: {e}") from None
    if arr.dtype != np.float32 or arr.ndim != 2 or (num_features is not None and arr.shape[1] != num_features):
        raise DataFormatError(
            f"{where}: {str(path)!r} holds {arr.dtype} {arr.shape}, expected float32 (N, "
            f"{num_features if num_features is not None else 'F'})"
        )
    return arr


def load_points(
    root: str | os.PathLike, record: FrameRecord | SweepRecord, num_features: int | None = None
) -> np.ndarray:
    """The ``(N, F)`` float32 points of a frame or sweep record (vehicle frame of that frame).

    The record's relative path must stay inside ``root``: a table naming ``../x.npy`` or an
    absolute path raises ``DataFormatError`` naming the table, the row and the path.
    """
    where = f"{record.table}: row {record.row}"
    if isinstance(record, SweepRecord):
        where += f" (sweep {record.frame_id})"
    return load_array(root, record.points_path, where, num_features)


def load_gt_points(root: str | os.PathLike, records: GTDatabaseRecords, k: int) -> np.ndarray:
    """The ``(P, F)`` float32 points of gt-database object ``k``, relative to its box centre."""
    return load_array(root, records.path[k], f"{records.table}: row {k}")
