"""Waymo metrics ``Objects`` files (predictions and ground truth for the official evaluation).

A ``.bin`` file is one serialized ``waymo.open_dataset.Objects`` message (not a TFRecord): a
repeated ``Object`` (a ``Label`` plus score, context name, frame timestamp, camera name).
``WaymoObjects`` holds them as column arrays.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pointformer.data.formats import waymo_proto as pb
from pointformer.data.formats.errors import DataFormatError
from pointformer.data.formats.waymo_v1 import label_arrays
from pointformer.utils.atomic import write_atomic

__all__ = ["WaymoObjects", "decode_objects", "encode_objects", "read_objects", "write_objects"]


@dataclass(frozen=True, eq=False)
class WaymoObjects:
    """``M`` objects (boxes of any number of frames), as column arrays.

    Attributes:
        context_names: ``(M,)`` str, ``Context.name`` of each object's segment.
        frame_timestamps_micros: ``(M,)`` int64, ``Frame.timestamp_micros``.
        boxes: ``(M, 7)`` float64 ``[x, y, z, dx=length, dy=width, dz=height, heading]`` in the
            frame's vehicle frame, metres and radians; float64 and headings as stored, since the
            official metrics compute in double.
        types: ``(M,)`` int8 ``Label.Type``.
        scores: ``(M,)`` float32 in [0, 1] (1.0, the proto default, for ground truth).
        detection_difficulty, tracking_difficulty: ``(M,)`` int8 ``DifficultyLevel``.
        num_lidar_points_in_box, num_top_lidar_points_in_box: ``(M,)`` int32.
        ids: ``(M,)`` str object ids.
        speed, acceleration: ``(M, 3)`` float64 label metadata (m/s, m/s^2).
        overlap_with_nlz: ``(M,)`` bool.
        camera_names: ``(M,)`` int8 ``CameraName`` (0 for LiDAR objects).
    """

    context_names: np.ndarray
    frame_timestamps_micros: np.ndarray
    boxes: np.ndarray
    types: np.ndarray
    scores: np.ndarray
    detection_difficulty: np.ndarray
    tracking_difficulty: np.ndarray
    num_lidar_points_in_box: np.ndarray
    num_top_lidar_points_in_box: np.ndarray
    ids: np.ndarray
    speed: np.ndarray
    acceleration: np.ndarray
    overlap_with_nlz: np.ndarray
    camera_names: np.ndarray

    _COLUMNS = {
        "frame_timestamps_micros": np.int64,
        "types": np.int8,
        "scores": np.float32,
        "detection_difficulty": np.int8,
        "tracking_difficulty": np.int8,
        "num_lidar_points_in_box": np.int32,
        "num_top_lidar_points_in_box": np.int32,
        "overlap_with_nlz": np.bool_,
        "camera_names": np.int8,
    }

    def __post_init__(self) -> None:
        boxes = np.ascontiguousarray(self.boxes, dtype=np.float64).view()
        if boxes.ndim != 2 or boxes.shape[1] != 7:
            raise ValueError(f"boxes must have shape (M, 7), got {boxes.shape}")
        m = boxes.shape[0]
        columns = {"boxes": boxes}
        for name, dtype in self._COLUMNS.items():
            columns[name] = np.ascontiguousarray(getattr(self, name), dtype=dtype).view()
        for name in ("context_names", "ids"):
            columns[name] = np.asarray(getattr(self, name), dtype=np.str_).reshape(-1).view()
        for name in ("speed", "acceleration"):
            columns[name] = np.ascontiguousarray(getattr(self, name), dtype=np.float64).view()
        for name, arr in columns.items():
            want = (m, 3) if name in ("speed", "acceleration") else (m, 7) if name == "boxes" else (m,)
            if arr.shape != want:
                raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    def __len__(self) -> int:
        return self.boxes.shape[0]

    @classmethod
    def from_arrays(
        cls,
        context_names,
        frame_timestamps_micros,
        boxes,
        types,
        scores=None,
        **optional,
    ) -> WaymoObjects:
        """Objects with defaults (score 1, zeros, empty ids) for the columns not given."""
        m = len(boxes)
        defaults = {
            "detection_difficulty": np.zeros(m, np.int8),
            "tracking_difficulty": np.zeros(m, np.int8),
            "num_lidar_points_in_box": np.zeros(m, np.int32),
            "num_top_lidar_points_in_box": np.zeros(m, np.int32),
            "ids": [""] * m,
            "speed": np.zeros((m, 3)),
            "acceleration": np.zeros((m, 3)),
            "overlap_with_nlz": np.zeros(m, bool),
            "camera_names": np.zeros(m, np.int8),
        }
        unknown = set(optional) - set(defaults)
        if unknown:
            raise TypeError(f"unknown columns {sorted(unknown)}")
        defaults.update(optional)
        return cls(
            context_names=np.broadcast_to(np.asarray(context_names, dtype=np.str_), (m,)),
            frame_timestamps_micros=np.broadcast_to(np.asarray(frame_timestamps_micros, dtype=np.int64), (m,)),
            boxes=boxes,
            types=types,
            scores=np.ones(m, np.float32) if scores is None else scores,
            **defaults,
        )


def decode_objects(data: bytes) -> WaymoObjects:
    """``WaymoObjects`` from a serialized ``Objects`` message (``DataFormatError`` if malformed)."""
    objects = pb.Objects.decode(data).objects
    labels = [o.object or pb.Label() for o in objects]
    boxes, motion, label_ints = label_arrays(labels)
    frame_timestamps = np.asarray([o.frame_timestamp_micros for o in objects], np.int64)
    scores = np.asarray([o.score for o in objects], np.float32)
    overlap = np.asarray([bool(o.overlap_with_nlz) for o in objects], bool)
    camera_names = np.asarray([o.camera_name for o in objects], np.int64)
    names = [o.context_name for o in objects]
    ids = [label.id for label in labels]
    return WaymoObjects(
        context_names=names,
        frame_timestamps_micros=frame_timestamps,
        boxes=boxes,
        types=label_ints[:, 0],
        scores=scores,
        detection_difficulty=label_ints[:, 1],
        tracking_difficulty=label_ints[:, 2],
        num_lidar_points_in_box=label_ints[:, 3],
        num_top_lidar_points_in_box=label_ints[:, 4],
        ids=ids,
        speed=motion[:, :3],
        acceleration=motion[:, 3:],
        overlap_with_nlz=overlap,
        camera_names=camera_names,
    )


def encode_objects(objects: WaymoObjects) -> bytes:
    """Serialized ``Objects`` message; ``Label.metadata`` is written only for objects with a
    non-zero speed or acceleration."""
    protos = []
    motion = np.concatenate([objects.speed, objects.acceleration], axis=1)
    for i in range(len(objects)):
        x, y, z, dx, dy, dz, heading = objects.boxes[i].tolist()
        metadata = None
        if motion[i].any():
            sx, sy, sz, ax, ay, az = motion[i].tolist()
            metadata = pb.LabelMetadata(speed_x=sx, speed_y=sy, speed_z=sz, accel_x=ax, accel_y=ay, accel_z=az)
        label = pb.Label(
            box=pb.LabelBox(center_x=x, center_y=y, center_z=z, length=dx, width=dy, height=dz, heading=heading),
            metadata=metadata,
            type=int(objects.types[i]),
            id=str(objects.ids[i]),
            detection_difficulty_level=int(objects.detection_difficulty[i]),
            tracking_difficulty_level=int(objects.tracking_difficulty[i]),
            num_lidar_points_in_box=int(objects.num_lidar_points_in_box[i]),
            num_top_lidar_points_in_box=int(objects.num_top_lidar_points_in_box[i]),
        )
        protos.append(
            pb.Object(
                object=label,
                score=float(objects.scores[i]),
                overlap_with_nlz=bool(objects.overlap_with_nlz[i]),
                context_name=str(objects.context_names[i]),
                frame_timestamp_micros=int(objects.frame_timestamps_micros[i]),
                camera_name=int(objects.camera_names[i]),
            )
        )
    return pb.Objects(objects=protos).encode()


def read_objects(path: str | os.PathLike) -> WaymoObjects:
    """Reads an ``Objects`` ``.bin`` file; ``DataFormatError`` names the file when malformed."""
    data = Path(path).read_bytes()
    try:
        return decode_objects(data)
    except DataFormatError as e:
        raise DataFormatError(f"{path}: {e}") from None


def write_objects(path: str | os.PathLike, objects: WaymoObjects) -> None:
    """Writes an ``Objects`` ``.bin`` file atomically."""
    write_atomic(path, encode_objects(objects))
