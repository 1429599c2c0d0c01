"""The conversion machinery every dataset shares: format-neutral frames (``LabelledFrame``) read
per sequence (``SequenceSource``) and written into the layout of ``pointformer.data.layout`` by
``convert_sequences`` (workers, resume, gt database, merged tables, ``meta.json``, summary).

How it runs:

* Sequences are converted in ``workers`` processes (``forkserver``/``spawn``; ``workers=0`` runs
  in-process). Each writes its frames' points, its gt-database objects, then its part tables
  (``parts/<split>/<sequence>.gt.parquet`` and, last, ``.frames.parquet``); the parts of a split
  are then merged into ``frames_<split>.parquet`` (with the ``sweeps`` column) and
  ``gt_database_<split>.parquet``, and ``meta.json`` is written last.
* Every file is written atomically (temporary file, rename): an interrupted run leaves no
  half-written file. A tool killed outright can leave ``.<name>.*.tmp`` files, removed when their
  sequence is converted again. Points files, part tables, merged tables and ``meta.json`` are
  fsynced before their rename. The gt-database object files (about a hundred small files per
  frame) are not fsynced one by one: a sequence's are fsynced together, with their folder, after
  its last frame and before its part tables are written, so once a part marks its sequence
  complete every file it lists is on disk (the same guarantee as per-file fsync, for ~25 % less
  time per gt file on ext4). A crash before that leaves the sequence incomplete: it is converted
  again.
* Resumable: a sequence whose parts exist, were made from a source file (v1: the TFRecord; v2: the
  ``lidar`` component) of the same name and size with the
  same gt-database settings, and whose listed points and gt files all exist is skipped. Merged
  tables and ``meta.json`` are rewritten only when their bytes change, so a second run over a
  finished conversion touches no file.
* Empty frames: a frame with zero points (a Waymo label-only frame: the v1 reader warns) is kept,
  with a ``(0, F)`` points file, ``num_points`` 0, its boxes, and no gt-database objects; it counts
  in the summary's frames like any other. ``LayoutDataset`` and ``collate_frames`` accept it.
* Bad input: the readers raise ``DataFormatError`` naming the file (record, frame, column). The
  failing sequence's files are removed (it leaves no partial output). With ``on_error="raise"``
  (default) the conversion then stops with that error, after the sequences already running finish
  (their parts are kept, so a rerun resumes); with ``on_error="skip"`` the sequence is left out
  with a warning and listed in the summary. Any other exception always stops the run, after the
  same cleanup.

Adding a dataset: write an adapter that yields ``LabelledFrame``s per sequence, reuse
``convert_sequences`` (workers, resume, gt database, merge, meta, summary) with a ``SequenceSource``
whose ``reader`` names a module-level function ``(source) -> Iterator[LabelledFrame]``, and register
a command-line entry in ``cli.DATASETS``. Waymo (``waymo``) and nuScenes (``nuscenes``) do so; nuScenes
also uses the two extension points: a frame may list its own sweeps (``LabelledFrame.sweeps``, sensor
frames that are not rows of the table; written under ``points/<sequence>/sweeps/``) instead of the
previous rows, and may carry dataset-specific columns (``LabelledFrame.extra``, typed by
``layout.EXTRA_COLUMNS``). A ``SequenceSource.fingerprint`` replaces the source file's name and size
in the resume check.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import importlib
import io
import json
import multiprocessing
import os
import queue as queue_module
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

from pointformer.data import layout as L
from pointformer.data.convert.checks import (
    drop_non_finite,
    file_record,
    records_from_json,
    records_to_json,
    verify_file,
)
from pointformer.data.formats.errors import DataFormatError
from pointformer.utils.atomic import atomic_file, fsync_files, remove_stale_temporaries, write_atomic
from pointformer.utils.process import die_with

_META_SOURCE = b"pointformer.source"
_META_GT = b"pointformer.gt_database"
# {relative path: size in bytes} of every .npy file a sequence wrote (convert.checks), checked on resume.
_META_FILES = b"pointformer.files"


# ---------------------------------------------------------------------------------------------
# Format-neutral frames and sources
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LabelledSweep:
    """A sweep a frame lists itself (not a previous row): ``pose`` ``(4, 4)`` float64 maps its
    points' frame to global, so ``inv(frame.pose) @ pose`` moves them into the frame's.

    Either ``frame_index`` names an earlier frame of the same sequence whose points file it reuses
    (``points`` None), or ``key`` (a file-name-safe id, unique in the sequence) names the file
    ``points/<sequence>/sweeps/<key>.npy`` holding ``points`` ``(N, F)`` float32. ``points`` may be
    None for a ``key`` an earlier frame of the sequence already gave with its points.
    """

    key: str
    timestamp_micros: int
    pose: np.ndarray
    points: np.ndarray | None = None
    frame_index: int | None = None
    source: str = ""  # the input file of ``points``, for messages ("" : the sequence's)


@dataclass(frozen=True, eq=False)
class LabelledFrame:
    """One frame in the layout's terms, what a dataset adapter yields to the writer.

    ``points``: ``(N, F)`` float32 in the frame's own frame (Waymo: vehicle; nuScenes: LIDAR_TOP).
    ``boxes``: ``(M, 9)`` float32 ``[x, y, z, dx, dy, dz, heading, vx, vy]`` in that frame.
    ``pose``: ``(4, 4)`` float64 that frame -> global. Per-box arrays have ``M`` rows.
    ``sweeps``: None lists the previous frames of the sequence (the driver's ``sweeps`` of them);
    a tuple lists these, most recent first (every frame of a sequence must then give one).
    ``extra``: values of ``layout.EXTRA_COLUMNS`` (a scalar per frame, or an ``(M,)`` array for
    list columns); every frame of a sequence must give the same keys.
    """

    timestamp_micros: int
    pose: np.ndarray
    points: np.ndarray
    boxes: np.ndarray
    names: np.ndarray
    difficulty: np.ndarray
    tracking_difficulty: np.ndarray
    num_points_in_box: np.ndarray
    object_ids: np.ndarray
    speed_global: np.ndarray
    accel_global: np.ndarray
    time_of_day: str = ""
    location: str = ""
    weather: str = ""
    sweeps: tuple[LabelledSweep, ...] | None = None
    extra: dict = field(default_factory=dict)
    source: str = ""  # the input file of ``points``, for messages ("": the sequence's, with the frame index)


@dataclass(frozen=True)
class SequenceSource:
    """One input sequence. ``reader`` is ``"module:function"`` of a function ``(source) ->
    Iterator[LabelledFrame]`` (named, so worker processes can import it); ``path`` is the file whose
    size fingerprints the input for resuming (unless ``fingerprint`` is given: then that string
    does); ``args`` is what the reader needs."""

    split: str
    sequence: str
    reader: str
    path: str
    args: tuple = ()
    fingerprint: str = ""


# ---------------------------------------------------------------------------------------------
# Writing one sequence
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Task:
    source: SequenceSource
    out: str
    gt_database: bool
    gt_min_points: int


@dataclass
class _Result:
    split: str
    sequence: str
    frames: int = 0
    points: int = 0
    error: str | None = None
    # Messages for the parent to warn with (non-finite points dropped), and frames without points.
    warnings: list[str] = field(default_factory=list)
    empty_frames: list[str] = field(default_factory=list)
    non_finite: int = 0  # points dropped for NaN or infinite values


def _part_paths(out: Path, split: str, sequence: str) -> tuple[Path, Path]:
    d = out / "parts" / split
    return d / f"{sequence}.frames.parquet", d / f"{sequence}.gt.parquet"


def _source_tag(source: SequenceSource) -> bytes:
    if source.fingerprint:
        return json.dumps({"fingerprint": source.fingerprint}).encode()
    return json.dumps({"path": Path(source.path).name, "size": os.path.getsize(source.path)}).encode()


def _gt_tag(task: _Task) -> bytes:
    return json.dumps({"enabled": task.gt_database, "min_points": task.gt_min_points}).encode()


def _is_complete(task: _Task) -> bool:
    """Whether the sequence's parts exist, match the source and settings, and list existing files."""
    out = Path(task.out)
    frames_part, gt_part = _part_paths(out, task.source.split, task.source.sequence)
    if not (frames_part.is_file() and gt_part.is_file()):
        return False
    try:
        meta = pq.read_schema(frames_part).metadata or {}
        if meta.get(_META_SOURCE) != _source_tag(task.source) or meta.get(_META_GT) != _gt_tag(task):
            return False
        names = pq.read_schema(frames_part).names
        paths = pq.read_table(frames_part, columns=["points_path"]).column(0).to_pylist()
        if "sweeps" in names:  # sweeps the dataset lists itself (nuScenes)
            sweeps = pq.read_table(frames_part, columns=["sweeps"]).column(0)
            paths += pa.compute.list_flatten(sweeps).combine_chunks().field("points_path").to_pylist()
        gt_paths = pq.read_table(gt_part, columns=["path"]).column(0).to_pylist()
    except (pa.ArrowException, OSError):
        return False
    records = records_from_json(meta.get(_META_FILES))
    if records is None:  # a part written before sizes were recorded: existence only
        return all((out / p).is_file() for p in paths + gt_paths)
    return all(p in records and verify_file(out / p, records[p]) for p in paths) and all(
        p in records and verify_file(out / p, records[p], header=False) for p in gt_paths
    )


def _save_npy(path: Path, array: np.ndarray, durable: bool = True) -> None:
    with atomic_file(path, durable=durable) as f:
        np.save(f, array, allow_pickle=False)


def _table_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def _list_column(values: list[np.ndarray], type_: pa.DataType, width: int | None = None) -> pa.Array:
    offsets = np.concatenate([[0], np.cumsum([len(v) for v in values])]).astype(np.int32)
    value_type = type_.value_type
    if width is None:
        flat = np.concatenate(values) if values else np.zeros(0)
        if pa.types.is_string(value_type):
            child = pa.array([str(x) for x in flat], pa.string())
        else:
            child = pa.array(np.asarray(flat).astype(value_type.to_pandas_dtype()), value_type)
    else:
        inner = value_type.value_type
        flat = np.concatenate([np.asarray(v).reshape(-1) for v in values]) if values else np.zeros(0)
        child = pa.FixedSizeListArray.from_arrays(pa.array(flat.astype(inner.to_pandas_dtype()), inner), width)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), child)


def _frames_part(sequence: str, frames: list[LabelledFrame], paths: list[str], num_points: list[int]) -> pa.Table:
    schema = L.FRAME_PART_SCHEMA
    n = len(frames)
    poses = np.stack([f.pose.reshape(16) for f in frames]) if n else np.zeros((0, 16))
    columns = {
        "frame_id": pa.array([L.frame_id(sequence, i) for i in range(n)], pa.string()),
        "sequence": pa.array([sequence] * n, pa.string()),
        "frame_index": pa.array(np.arange(n, dtype=np.int32)),
        "timestamp_micros": pa.array(np.asarray([f.timestamp_micros for f in frames], np.int64)),
        "pose": pa.FixedSizeListArray.from_arrays(pa.array(poses.reshape(-1).astype(np.float64)), 16),
        "points_path": pa.array(paths, pa.string()),
        "num_points": pa.array(np.asarray(num_points, np.int64)),
    }
    for name, width in (
        ("boxes", L.BOX_DIM),
        ("names", None),
        ("difficulty", None),
        ("tracking_difficulty", None),
        ("num_points_in_box", None),
        ("object_ids", None),
        ("speed_global", 3),
        ("accel_global", 3),
    ):
        columns[name] = _list_column([getattr(f, name) for f in frames], schema.field(name).type, width)
    for name in ("time_of_day", "location", "weather"):
        columns[name] = pa.array([getattr(f, name) for f in frames], pa.string())
    listed = {f.sweeps is not None for f in frames}
    if len(listed) > 1:
        raise ValueError(f"sequence {sequence!r}: some frames list their sweeps and others do not")
    if listed == {True}:
        schema = schema.append(L.FRAME_SCHEMA.field("sweeps"))
        columns["sweeps"] = _sweeps_column(sequence, frames)
    keys = {tuple(f.extra) for f in frames}
    if len(keys) > 1:
        raise ValueError(f"sequence {sequence!r}: frames give different extra columns {sorted(keys)}")
    for name in keys.pop() if keys else ():
        if name not in L.EXTRA_COLUMNS:
            raise ValueError(f"extra column {name!r} is not declared in layout.EXTRA_COLUMNS")
        type_ = L.EXTRA_COLUMNS[name]
        values = [f.extra[name] for f in frames]
        schema = schema.append(pa.field(name, type_))
        columns[name] = _list_column(values, type_) if pa.types.is_list(type_) else pa.array(values, type_)
    return pa.Table.from_arrays([columns[n] for n in schema.names], schema=schema)


def _sweeps_column(sequence: str, frames: list[LabelledFrame]) -> pa.Array:
    """The ``sweeps`` column of frames that list their own (see ``LabelledSweep``)."""
    ids, paths, times, poses, counts = [], [], [], [], []
    for f in frames:
        counts.append(len(f.sweeps))
        for s in f.sweeps:
            if s.frame_index is not None:
                ids.append(L.frame_id(sequence, s.frame_index))
                paths.append(L.points_relpath(sequence, s.frame_index))
            else:
                ids.append(s.key)
                paths.append(L.sweep_relpath(sequence, s.key))
            times.append(int(s.timestamp_micros))
            poses.append(np.asarray(s.pose, np.float64).reshape(16))
    struct = pa.StructArray.from_arrays(
        [
            pa.array(ids, pa.string()),
            pa.array(paths, pa.string()),
            pa.array(np.asarray(times, np.int64), pa.int64()),
            pa.FixedSizeListArray.from_arrays(pa.array(np.asarray(poses, np.float64).reshape(-1)), 16),
        ],
        fields=list(L.SWEEP_TYPE),
    )
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), struct)


def _gt_objects(
    split: str, sequence: str, index: int, frame: LabelledFrame, min_points: int
) -> Iterator[tuple[str, np.ndarray, int]]:
    """``(relative path, points relative to the box centre, box index)`` of each box with at least
    ``min_points`` points."""
    if len(frame.boxes) == 0 or len(frame.points) == 0:
        return
    import torch

    from pointformer.ops import points_in_boxes

    mask = points_in_boxes(torch.from_numpy(frame.points[:, :3]), torch.from_numpy(frame.boxes[:, :7])).numpy()
    by_box = np.ascontiguousarray(mask.T)  # (M, N): each box's row is contiguous
    counts = by_box.sum(axis=1)
    for k in np.flatnonzero(counts >= max(min_points, 1)):
        obj = frame.points[by_box[k]]
        obj[:, :3] -= frame.boxes[k, :3]
        yield L.gt_relpath(split, sequence, index, str(frame.names[k]), int(k)), obj, int(k)


def _convert_one(task: _Task, progress=None) -> _Result:
    """Converts one sequence; on any error removes every file it wrote (and its parts)."""
    src = task.source
    out = Path(task.out)
    result = _Result(src.split, src.sequence)
    frames_part, gt_part = _part_paths(out, src.split, src.sequence)
    points_dir = out / "points" / src.sequence
    gt_dir = out / "gt_database" / src.split
    written: list[Path] = []
    try:
        # Old parts first: from here on the sequence counts as incomplete.
        for p in (frames_part, gt_part):
            p.unlink(missing_ok=True)
        for d in (points_dir, gt_dir, frames_part.parent):
            d.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(points_dir)
        module, func = src.reader.split(":")
        reader: Callable[[SequenceSource], Iterable[LabelledFrame]] = getattr(importlib.import_module(module), func)
        frames: list[LabelledFrame] = []
        paths: list[str] = []
        num_points: list[int] = []
        gt_rows: dict[str, list] = {name: [] for name in L.GT_SCHEMA.names}
        sweeps_written: set[str] = set()
        gt_files: list[Path] = []  # written without fsync; fsynced together before the parts
        records: dict[str, int] = {}  # relative path -> size of every .npy written
        for index, frame in enumerate(reader(src)):
            rel = L.points_relpath(src.sequence, index)
            path = out / rel
            points, message = drop_non_finite(frame.points, frame.source or f"{src.path} frame {index}")
            if message is not None:
                result.warnings.append(message)
                result.non_finite += len(frame.points) - len(points)
                frame = dataclasses.replace(frame, points=points)
            if len(frame.points) == 0:
                result.empty_frames.append(L.frame_id(src.sequence, index))
            written.append(path)
            _save_npy(path, frame.points)
            records[rel] = file_record(path)
            for sweep in frame.sweeps or ():
                if sweep.frame_index is not None:
                    if not 0 <= sweep.frame_index < index:
                        raise ValueError(f"{src.sequence} frame {index}: sweep of frame {sweep.frame_index}")
                    continue
                if sweep.key in sweeps_written:
                    continue
                if sweep.points is None:
                    raise ValueError(f"{src.sequence} frame {index}: sweep {sweep.key!r} without points")
                sweep_path = out / L.sweep_relpath(src.sequence, sweep.key)
                if not sweeps_written:
                    sweep_path.parent.mkdir(parents=True, exist_ok=True)
                    remove_stale_temporaries(sweep_path.parent)
                given = np.ascontiguousarray(sweep.points, dtype=np.float32)
                sweep_points, message = drop_non_finite(given, sweep.source or f"{src.path} sweep {sweep.key}")
                if message is not None:
                    result.warnings.append(message)
                    result.non_finite += len(given) - len(sweep_points)
                written.append(sweep_path)
                _save_npy(sweep_path, sweep_points)
                records[L.sweep_relpath(src.sequence, sweep.key)] = file_record(sweep_path)
                sweeps_written.add(sweep.key)
            if task.gt_database:
                for gt_rel, obj, k in _gt_objects(src.split, src.sequence, index, frame, task.gt_min_points):
                    written.append(out / gt_rel)
                    gt_files.append(out / gt_rel)
                    _save_npy(out / gt_rel, obj, durable=False)
                    records[gt_rel] = file_record(out / gt_rel)
                    for name, value in (
                        ("path", gt_rel),
                        ("name", str(frame.names[k])),
                        ("box", frame.boxes[k].tolist()),
                        ("difficulty", int(frame.difficulty[k])),
                        ("num_points", len(obj)),
                        ("frame_id", L.frame_id(src.sequence, index)),
                        ("sequence", src.sequence),
                        ("frame_index", index),
                        ("box_index", k),
                        ("object_id", str(frame.object_ids[k])),
                    ):
                        gt_rows[name].append(value)
            # Keep only what the table needs: drop the points.
            sweeps = None if frame.sweeps is None else tuple(dataclasses.replace(s, points=None) for s in frame.sweeps)
            frames.append(
                dataclasses.replace(frame, points=np.zeros((0, frame.points.shape[1]), np.float32), sweeps=sweeps)
            )
            paths.append(rel)
            num_points.append(len(frame.points))
            result.frames += 1
            result.points += len(frame.points)
            if progress is not None:
                progress.put(1)
        if not frames:
            raise DataFormatError(f"{src.path}: sequence {src.sequence!r} has no frames")
        meta = {_META_SOURCE: _source_tag(src), _META_GT: _gt_tag(task), _META_FILES: records_to_json(records)}
        gt_table = pa.Table.from_pydict(gt_rows, schema=L.GT_SCHEMA).replace_schema_metadata(meta)
        frames_table = _frames_part(src.sequence, frames, paths, num_points).replace_schema_metadata(meta)
        fsync_files(gt_files)  # before the parts that list them (see the module docstring)
        written += [gt_part, frames_part]
        write_atomic(gt_part, _table_bytes(gt_table))
        write_atomic(frames_part, _table_bytes(frames_table))  # last: marks the sequence complete
    except BaseException as e:
        for p in written:
            p.unlink(missing_ok=True)
        for d in (points_dir / "sweeps", points_dir):
            try:
                d.rmdir()
            except OSError:
                pass
        if isinstance(e, DataFormatError):
            result.error = str(e)
            return result
        raise
    return result


# In a worker process: the queue its frame counts go to (set by ``_init_worker``).
_WORKER_PROGRESS = None


def _init_worker(command_pid: int, progress_queue) -> None:
    # End with the command: a kill -9 of tools/create_data.py leaves no worker converting on.
    die_with(command_pid)
    global _WORKER_PROGRESS
    _WORKER_PROGRESS = progress_queue
    # One thread per worker process: the pool already uses the cores.
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


def _convert_in_worker(task: _Task) -> _Result:
    return _convert_one(task, _WORKER_PROGRESS)


# ---------------------------------------------------------------------------------------------
# Merging and the summary
# ---------------------------------------------------------------------------------------------


def _with_sweeps(table: pa.Table, num_sweeps: int) -> pa.Table:
    """Adds ``sweeps``: for each row, the previous ``num_sweeps`` rows of the same sequence (rows
    of a sequence are contiguous and in frame order), most recent first."""
    n = table.num_rows
    seq = np.asarray(table.column("sequence").to_pylist(), dtype=object)
    starts = np.flatnonzero(np.concatenate([[True], seq[1:] != seq[:-1]])) if n else np.zeros(0, np.int64)
    first = np.repeat(starts, np.diff(np.concatenate([starts, [n]])))
    count = np.minimum(np.arange(n) - first, num_sweeps)
    offsets = np.concatenate([[0], np.cumsum(count)]).astype(np.int32)
    # Row i's j-th sweep (j = 0 .. count_i - 1) is row i - 1 - j.
    j = np.arange(offsets[-1]) - np.repeat(offsets[:-1], count)
    take = pa.array(np.repeat(np.arange(n), count) - 1 - j, pa.int64())
    struct = pa.StructArray.from_arrays(
        [table.column(name).take(take).combine_chunks() for name in L.SWEEP_TYPE.names],
        fields=list(L.SWEEP_TYPE),
    )
    sweeps = pa.ListArray.from_arrays(pa.array(offsets), struct)
    # Right after the part's columns: dataset-specific extra columns come last.
    return table.add_column(len(L.FRAME_PART_SCHEMA), L.FRAME_SCHEMA.field("sweeps"), sweeps)


def _write_if_changed(path: Path, data: bytes) -> bool:
    """Writes atomically unless the file already holds ``data`` (keeps its mtime)."""
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return False
    write_atomic(path, data)
    return True


def _merge_split(
    out: Path, split: str, sequences: list[str], num_sweeps: int, gt_database: bool
) -> tuple[pa.Table, pa.Table]:
    frames, gts = [], []
    for s in sequences:
        frames_part, gt_part = _part_paths(out, split, s)
        frames.append(pq.read_table(frames_part).replace_schema_metadata(None))
        gts.append(pq.read_table(gt_part).replace_schema_metadata(None))
    frame_table = pa.concat_tables(frames).combine_chunks()
    if "sweeps" not in frame_table.column_names:  # else the dataset listed its own
        frame_table = _with_sweeps(frame_table, num_sweeps)
    gt_table = pa.concat_tables(gts).combine_chunks()
    _write_if_changed(L.frame_table_path(out, split), _table_bytes(frame_table))
    if gt_database:
        _write_if_changed(L.gt_table_path(out, split), _table_bytes(gt_table))
    else:  # an earlier conversion's table would contradict meta.json
        L.gt_table_path(out, split).unlink(missing_ok=True)
    return frame_table, gt_table


@dataclass
class ConvertSummary:
    """What a conversion did. Totals (frames, points, boxes, gt objects) cover every sequence in
    the output tables, resumed ones included; ``frames_converted`` only this run's."""

    dataset: str
    source_format: str
    out: str
    sequences: int = 0
    converted: int = 0
    resumed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    frames: int = 0
    frames_converted: int = 0
    points: int = 0
    boxes_per_class: dict[str, int] = field(default_factory=dict)
    gt_objects_per_class: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    # Frame ids of this run's frames without points (a 0-byte LiDAR file, every point non-finite).
    empty_frames: list[str] = field(default_factory=list)
    # How many points with NaN or infinite values this run dropped (one warning per input file).
    non_finite_points: int = 0

    def __str__(self) -> str:
        rate = self.frames_converted / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"{self.dataset} ({self.source_format}) -> {self.out}",
            f"  sequences: {self.sequences} ({self.converted} converted, {self.resumed} resumed, "
            f"{len(self.failed)} failed)",
            f"  frames: {self.frames} ({self.frames_converted} converted, {rate:.2f} frames/s), points: {self.points}",
            "  boxes: " + (", ".join(f"{k} {v}" for k, v in sorted(self.boxes_per_class.items())) or "none"),
            "  gt database objects: "
            + (", ".join(f"{k} {v}" for k, v in sorted(self.gt_objects_per_class.items())) or "none"),
            f"  time: {self.seconds:.1f} s",
        ]
        if self.non_finite_points:
            lines.append(f"  points with NaN or infinite values dropped: {self.non_finite_points}")
        if self.empty_frames:
            shown = ", ".join(self.empty_frames[:10]) + (" ..." if len(self.empty_frames) > 10 else "")
            lines.append(f"  empty frames (no points, kept with their boxes): {len(self.empty_frames)}: {shown}")
        lines += [f"  FAILED {seq}: {err}" for seq, err in self.failed]
        return "\n".join(lines)


class _Progress:
    """Frame progress bar (tqdm when installed), fed by ``put(n)``."""

    def __init__(self, enabled: bool, total: int | None):
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="frame", desc="converting", dynamic_ncols=True)
            except ImportError:
                pass

    def put(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _run_tasks(tasks: list[_Task], workers: int, progress: _Progress) -> Iterator[_Result]:
    if workers <= 0 or len(tasks) <= 1:
        for task in tasks:
            yield _convert_one(task, progress)
        return
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    # A plain queue handed to the workers at their start (no Manager: its server process would be
    # one more process to outlive a killed command).
    queue = ctx.Queue()
    pool = cf.ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)),
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(os.getpid(), queue),
    )

    def drain() -> None:
        with contextlib.suppress(queue_module.Empty):
            while True:
                progress.put(queue.get_nowait())

    try:
        pending = {pool.submit(_convert_in_worker, task) for task in tasks}
        while pending:
            done, pending = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
            drain()
            for fut in done:
                yield fut.result()
        drain()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        queue.close()
        queue.join_thread()


def _write_meta(out: Path, meta: dict) -> None:
    _write_if_changed(out / "meta.json", (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())


def _existing_meta(out: Path, meta: dict) -> dict:
    path = out / "meta.json"
    if not path.is_file():
        return {}
    old = json.loads(path.read_text())
    for key in ("layout_version", "dataset", "source_format", "point_features"):
        if old.get(key) != meta[key]:
            raise ValueError(
                f"{path}: {out} holds a conversion with {key}={old.get(key)!r}, this one has {meta[key]!r}; "
                "use another output folder"
            )
    return old


def _remove_stale_temporaries(out: Path) -> None:
    """Temporary files of a killed run (meta.json, tables, parts, points, gt files): no worker runs yet."""
    folders = [out, out / "parts", out / "points", out / "gt_database"]
    for parent in folders[1:]:
        if parent.is_dir():
            folders += [d for d in parent.iterdir() if d.is_dir()]
    folders += [d for d in (out / "points").glob("*/sweeps") if d.is_dir()]
    for folder in folders:
        remove_stale_temporaries(folder)


def convert_sequences(
    sources: list[SequenceSource],
    out: str | os.PathLike,
    *,
    dataset: str,
    source_format: str,
    point_features: Sequence[str],
    class_names: Sequence[str],
    workers: int = 0,
    sweeps: int = 4,
    gt_database_splits: Sequence[str] | None = None,
    gt_min_points: int = 1,
    on_error: str = "raise",
    progress: bool = True,
    total_frames: int | None = None,
    extra_meta: dict | None = None,
) -> ConvertSummary:
    """Converts ``sources`` into the layout under ``out`` (the dataset-independent driver; see the
    module docstring). ``gt_database_splits=None`` builds the gt database for splits named
    ``training`` or ``train``. ``extra_meta``: more ``meta.json`` keys (e.g. nuScenes' version)."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    import pointformer

    meta = {
        "layout_version": L.LAYOUT_VERSION,
        "dataset": dataset,
        "source_format": source_format,
        "point_features": list(point_features),
        "class_names": list(class_names),
        "box_fields": list(L.BOX_FIELDS),
        "created_by": f"pointformer {pointformer.__version__} (pointformer.data.convert)",
        **(extra_meta or {}),
    }
    old_meta = _existing_meta(out, meta)
    _remove_stale_temporaries(out)
    gt_splits = set(gt_database_splits) if gt_database_splits is not None else {"training", "train"}
    tasks = [_Task(s, str(out), s.split in gt_splits, gt_min_points) for s in sources]
    summary = ConvertSummary(dataset, source_format, str(out), sequences=len(tasks))
    todo = []
    for task in tasks:
        if _is_complete(task):
            summary.resumed += 1
        else:
            todo.append(task)
    bar = _Progress(progress, total_frames)
    failed: set[tuple[str, str]] = set()
    try:
        for result in _run_tasks(todo, workers, bar):
            if result.error is not None:
                if on_error == "raise":
                    raise DataFormatError(result.error)
                warnings.warn(f"skipping sequence {result.sequence!r}: {result.error}", stacklevel=2)
                summary.failed.append((result.sequence, result.error))
                failed.add((result.split, result.sequence))
                continue
            for message in result.warnings:
                warnings.warn(message, stacklevel=2)
            summary.non_finite_points += result.non_finite
            summary.empty_frames += result.empty_frames
            if result.empty_frames:
                warnings.warn(
                    f"sequence {result.sequence!r}: {len(result.empty_frames)} frames without points "
                    f"({', '.join(result.empty_frames[:5])}{' ...' if len(result.empty_frames) > 5 else ''})",
                    stacklevel=2,
                )
            summary.converted += 1
            summary.frames_converted += result.frames
    finally:
        bar.close()

    splits_meta = dict(old_meta.get("splits", {}))
    boxes, objects = Counter(), Counter()
    for split in dict.fromkeys(s.split for s in sources):
        seqs = [s.sequence for s in sources if s.split == split and (split, s.sequence) not in failed]
        if not seqs:
            raise DataFormatError(f"split {split!r}: every sequence failed")
        frame_table, gt_table = _merge_split(out, split, seqs, sweeps, split in gt_splits)
        summary.frames += frame_table.num_rows
        summary.points += int(np.sum(frame_table.column("num_points").to_numpy()))
        split_boxes = Counter(L._flat(frame_table.column("names"), object).tolist())
        split_objects = Counter(gt_table.column("name").to_pylist())
        boxes += split_boxes
        objects += split_objects
        splits_meta[split] = {
            "sequences": len(seqs),
            "frames": frame_table.num_rows,
            "sweeps": sweeps,
            "gt_database": split in gt_splits,
            "boxes": dict(sorted(split_boxes.items())),
            "gt_objects": dict(sorted(split_objects.items())),
        }
    meta["splits"] = dict(sorted(splits_meta.items()))
    _write_meta(out, meta)
    summary.boxes_per_class = dict(boxes)
    summary.gt_objects_per_class = dict(objects)
    summary.seconds = time.perf_counter() - start
    return summary
