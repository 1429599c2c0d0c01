"""Waymo Open Dataset conversion (``convert_waymo``, ``tools/create_data.py --dataset waymo``), an
adapter on ``sequences.convert_sequences``. It accepts these input layouts under ``root``:

* v1, by split folder: ``<root>/<split>/*.tfrecord`` (e.g. ``training/``, ``validation/``).
* v1, as OpenPCDet: ``<root>/raw_data/*.tfrecord`` plus ``<root>/ImageSets/<list>.txt`` naming the
  files of each split, one per line; ``<list>`` is the split name or its OpenPCDet alias
  (training -> train, validation -> val, testing -> test). A listed name may omit or carry the
  ``_with_camera_labels`` suffix, as OpenPCDet allows.
* v2: ``<root>/<split>/<component>/<context_name>.parquet``; the sequences of a split are the
  files of ``<root>/<split>/lidar/``.

The sequence name is the segment's context name (v1: the file name without ``segment-``,
``_with_camera_labels`` and ``.tfrecord``).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from pointformer.data.convert.sequences import ConvertSummary, LabelledFrame, SequenceSource, convert_sequences

WAYMO_POINT_FEATURES = ("x", "y", "z", "intensity", "elongation")
# Label.Type -> class name (OpenPCDet's names); TYPE_UNKNOWN (0) boxes are dropped.
WAYMO_CLASS_NAMES = {1: "Vehicle", 2: "Pedestrian", 3: "Sign", 4: "Cyclist"}
WAYMO_SPLIT_ALIASES = {"training": "train", "validation": "val", "testing": "test"}


def waymo_labelled_frame(frame) -> LabelledFrame:
    """A ``WaymoFrame`` in layout terms: NLZ points (flag != -1) and TYPE_UNKNOWN boxes dropped,
    points ``[x, y, z, intensity, elongation]``, velocity rotated from global into vehicle axes."""
    pts = frame.points
    points = np.ascontiguousarray(pts[pts[:, 5] == -1, :5], dtype=np.float32)
    lab = frame.labels
    keep = np.isin(lab.types, list(WAYMO_CLASS_NAMES))
    speed = lab.speed[keep]
    # v_vehicle = R^T v_global with R the vehicle -> global rotation.
    v = speed.astype(np.float64) @ frame.pose[:3, :3]
    boxes = np.concatenate([lab.boxes[keep], v[:, :2].astype(np.float32)], axis=1).astype(np.float32)
    return LabelledFrame(
        timestamp_micros=int(frame.timestamp_micros),
        pose=frame.pose,
        points=points,
        boxes=boxes,
        names=np.asarray([WAYMO_CLASS_NAMES[int(t)] for t in lab.types[keep]], dtype=np.str_),
        difficulty=lab.detection_difficulty[keep],
        tracking_difficulty=lab.tracking_difficulty[keep],
        num_points_in_box=lab.num_lidar_points_in_box[keep],
        object_ids=lab.ids[keep],
        speed_global=speed,
        accel_global=lab.acceleration[keep],
        time_of_day=frame.time_of_day,
        location=frame.location,
        weather=frame.weather,
    )


def read_waymo_v1(source: SequenceSource) -> Iterator[LabelledFrame]:
    from pointformer.data.formats import waymo_v1

    for frame in waymo_v1.read_frames(source.path):
        yield waymo_labelled_frame(frame)


def read_waymo_v2(source: SequenceSource) -> Iterator[LabelledFrame]:
    from pointformer.data.formats import waymo_v2

    root, split = source.args
    labels = waymo_v2.component_path(root, split, "lidar_box", source.sequence).is_file()
    for frame in waymo_v2.read_frames(root, split, source.sequence, labels=labels):
        yield waymo_labelled_frame(frame)


def _waymo_sequence_name(path: Path) -> str:
    name = path.name.removesuffix(".tfrecord").removeprefix("segment-")
    return name.removesuffix("_with_camera_labels")


def discover_waymo(root: str | os.PathLike, splits: Sequence[str], format: str = "v1") -> list[SequenceSource]:
    """The sequences of each split, in split then name order (see the module docstring for the
    accepted layouts). Raises ``FileNotFoundError`` for a split without input."""
    root = Path(root)
    sources: list[SequenceSource] = []
    for split in splits:
        if format == "v2":
            files = sorted((root / split / "lidar").glob("*.parquet"))
            if not files:
                raise FileNotFoundError(f"no Waymo v2 segments for split {split!r}: {root / split / 'lidar'}/*.parquet")
            sources += [
                SequenceSource(split, p.stem, f"{__name__}:read_waymo_v2", str(p), (str(root), split)) for p in files
            ]
            continue
        if format != "v1":
            raise ValueError(f"format must be 'v1' or 'v2', got {format!r}")
        if (root / split).is_dir():
            files = sorted((root / split).glob("*.tfrecord"))
            if not files:
                raise FileNotFoundError(f"no Waymo v1 files for split {split!r}: {root / split}/*.tfrecord")
        else:
            lists = [root / "ImageSets" / f"{n}.txt" for n in (split, WAYMO_SPLIT_ALIASES.get(split, split))]
            listing = next((p for p in lists if p.is_file()), None)
            if listing is None:
                raise FileNotFoundError(
                    f"no Waymo v1 input for split {split!r}: neither {root / split}/*.tfrecord nor "
                    f"{' / '.join(str(p) for p in dict.fromkeys(lists))} with {root / 'raw_data'}/"
                )
            files = []
            for line_no, line in enumerate(listing.read_text().splitlines(), 1):
                name = line.strip()
                if not name:
                    continue
                stem = name.removesuffix(".tfrecord").removesuffix("_with_camera_labels")
                candidates = [name, f"{stem}_with_camera_labels.tfrecord", f"{stem}.tfrecord"]
                found = next((root / "raw_data" / c for c in candidates if (root / "raw_data" / c).is_file()), None)
                if found is None:
                    raise FileNotFoundError(f"{listing}: line {line_no}: {name!r} not found in {root / 'raw_data'}")
                files.append(found)
        sources += [SequenceSource(split, _waymo_sequence_name(p), f"{__name__}:read_waymo_v1", str(p)) for p in files]
    seen: dict[str, str] = {}
    for s in sources:
        if s.sequence in seen:
            raise ValueError(f"sequence {s.sequence!r} appears twice: {seen[s.sequence]} and {s.path}")
        seen[s.sequence] = s.path
    return sources


def convert_waymo(
    root: str | os.PathLike,
    out: str | os.PathLike,
    splits: Sequence[str] = ("training", "validation"),
    format: str = "v1",
    workers: int = 0,
    sweeps: int = 4,
    gt_database_splits: Sequence[str] | None = None,
    gt_min_points: int = 1,
    on_error: str = "raise",
    progress: bool = True,
) -> ConvertSummary:
    """Converts Waymo Open Dataset v1 TFRecords or v2 parquet under ``root`` into the layout under
    ``out`` (see the module docstring for inputs, resuming and errors).

    Args:
        splits: split names (folders, or ImageSets lists for the OpenPCDet v1 layout).
        format: ``"v1"`` or ``"v2"``.
        workers: worker processes (0: in-process).
        sweeps: previous frames listed in each row's ``sweeps``.
        gt_database_splits: splits with a gt database (None: ``training``/``train``).
        gt_min_points: objects with fewer points in their box are left out of the gt database.
        on_error: ``"raise"`` or ``"skip"`` for a sequence with malformed input.
        progress: show a progress bar over frames.
    """
    sources = discover_waymo(root, splits, format)
    total = None
    if format == "v2":
        # Cheap: row counts from the parquet footers of the vehicle poses (one row per frame).
        poses = [Path(root) / s.split / "vehicle_pose" / f"{s.sequence}.parquet" for s in sources]
        total = sum(pq.ParquetFile(p).metadata.num_rows for p in poses if p.is_file())
    return convert_sequences(
        sources,
        out,
        dataset="waymo",
        source_format=format,
        point_features=WAYMO_POINT_FEATURES,
        class_names=list(WAYMO_CLASS_NAMES.values()),
        workers=workers,
        sweeps=sweeps,
        gt_database_splits=gt_database_splits,
        gt_min_points=gt_min_points,
        on_error=on_error,
        progress=progress,
        total_frames=total,
    )


def waymo_main(args: argparse.Namespace) -> ConvertSummary:
    """``create_data.py --dataset waymo`` (see ``cli.main``)."""
    return convert_waymo(
        args.root,
        args.out,
        splits=args.splits or ("training", "validation"),
        format=args.format,
        workers=args.workers,
        sweeps=4 if args.sweeps is None else args.sweeps,
        gt_database_splits=args.gt_database_splits,
        gt_min_points=args.gt_min_points,
        on_error=args.on_error,
        progress=not args.no_progress,
    )
