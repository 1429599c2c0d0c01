"""The Waymo Open Dataset v1 messages that LiDAR detection needs, with their official field numbers.

Field numbers, kinds and packing follow ``waymo_open_dataset/dataset.proto``, ``label.proto`` and
``protos/metrics.proto`` (proto2). In proto2 a repeated scalar is packed only where the .proto says
``[packed = true]`` (here only ``MatrixFloat.data`` and ``MatrixInt32.data``); ``Transform``,
intrinsics and beam inclinations are unpacked on the wire. The decoder accepts either encoding.

Fields not declared here (camera images, camera labels' keypoints, map features, ...) are skipped
when decoding and therefore absent when re-encoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from pointformer.data.formats.protobuf import Message, pb_field


class LaserName(IntEnum):
    UNKNOWN = 0
    TOP = 1
    FRONT = 2
    SIDE_LEFT = 3
    SIDE_RIGHT = 4
    REAR = 5


class CameraName(IntEnum):
    UNKNOWN = 0
    FRONT = 1
    FRONT_LEFT = 2
    FRONT_RIGHT = 3
    SIDE_LEFT = 4
    SIDE_RIGHT = 5
    REAR_LEFT = 6
    REAR = 7
    REAR_RIGHT = 8


class RollingShutterReadOutDirection(IntEnum):
    UNKNOWN = 0
    TOP_TO_BOTTOM = 1
    LEFT_TO_RIGHT = 2
    BOTTOM_TO_TOP = 3
    RIGHT_TO_LEFT = 4
    GLOBAL_SHUTTER = 5


class LabelType(IntEnum):
    """``Label.Type``."""

    TYPE_UNKNOWN = 0
    TYPE_VEHICLE = 1
    TYPE_PEDESTRIAN = 2
    TYPE_SIGN = 3
    TYPE_CYCLIST = 4


class DifficultyLevel(IntEnum):
    """``Label.DifficultyLevel``."""

    UNKNOWN = 0
    LEVEL_1 = 1
    LEVEL_2 = 2


class BoxType(IntEnum):
    """``Label.Box.Type``."""

    TYPE_UNKNOWN = 0
    TYPE_3D = 1
    TYPE_2D = 2
    TYPE_AA_2D = 3


# ---------------------------------------------------------------------------------------------
# dataset.proto: matrices, transforms, calibrations
# ---------------------------------------------------------------------------------------------


@dataclass(eq=False)
class MatrixShape(Message):
    PROTO_NAME = "waymo.open_dataset.MatrixShape"
    dims: np.ndarray = pb_field(1, "int32", repeated=True)


@dataclass(eq=False)
class MatrixFloat(Message):
    """Row-major matrix; ``data.size == prod(shape.dims)``."""

    PROTO_NAME = "waymo.open_dataset.MatrixFloat"
    data: np.ndarray = pb_field(1, "float", repeated=True, packed=True)
    shape: MatrixShape | None = pb_field(2, "message", message=MatrixShape)


@dataclass(eq=False)
class MatrixInt32(Message):
    """Row-major matrix; ``data.size == prod(shape.dims)``."""

    PROTO_NAME = "waymo.open_dataset.MatrixInt32"
    data: np.ndarray = pb_field(1, "int32", repeated=True, packed=True)
    shape: MatrixShape | None = pb_field(2, "message", message=MatrixShape)


@dataclass(eq=False)
class Transform(Message):
    """4x4 row-major transform (16 doubles)."""

    PROTO_NAME = "waymo.open_dataset.Transform"
    transform: np.ndarray = pb_field(1, "double", repeated=True)


@dataclass(eq=False)
class CameraCalibration(Message):
    PROTO_NAME = "waymo.open_dataset.CameraCalibration"
    name: int = pb_field(1, "enum")  # CameraName
    intrinsic: np.ndarray = pb_field(2, "double", repeated=True)  # [f_u, f_v, c_u, c_v, k1, k2, p1, p2, k3]
    extrinsic: Transform | None = pb_field(3, "message", message=Transform)  # camera -> vehicle
    width: int = pb_field(4, "int32")
    height: int = pb_field(5, "int32")
    rolling_shutter_direction: int = pb_field(6, "enum")  # RollingShutterReadOutDirection


@dataclass(eq=False)
class LaserCalibration(Message):
    PROTO_NAME = "waymo.open_dataset.LaserCalibration"
    name: int = pb_field(1, "enum")  # LaserName
    beam_inclinations: np.ndarray = pb_field(2, "double", repeated=True)  # radians; empty = uniform
    beam_inclination_min: float = pb_field(3, "double")
    beam_inclination_max: float = pb_field(4, "double")
    extrinsic: Transform | None = pb_field(5, "message", message=Transform)  # lidar -> vehicle


@dataclass(eq=False)
class ObjectCount(Message):
    PROTO_NAME = "waymo.open_dataset.Context.Stats.ObjectCount"
    type: int = pb_field(1, "enum")  # LabelType
    count: int = pb_field(2, "int32")


@dataclass(eq=False)
class Stats(Message):
    PROTO_NAME = "waymo.open_dataset.Context.Stats"
    laser_object_counts: list[ObjectCount] = pb_field(1, "message", repeated=True, message=ObjectCount)
    time_of_day: str = pb_field(2, "string")
    location: str = pb_field(3, "string")
    weather: str = pb_field(4, "string")
    camera_object_counts: list[ObjectCount] = pb_field(5, "message", repeated=True, message=ObjectCount)


@dataclass(eq=False)
class Context(Message):
    PROTO_NAME = "waymo.open_dataset.Context"
    name: str = pb_field(1, "string")
    camera_calibrations: list[CameraCalibration] = pb_field(2, "message", repeated=True, message=CameraCalibration)
    laser_calibrations: list[LaserCalibration] = pb_field(3, "message", repeated=True, message=LaserCalibration)
    stats: Stats | None = pb_field(4, "message", message=Stats)


# ---------------------------------------------------------------------------------------------
# dataset.proto: range images and lasers
# ---------------------------------------------------------------------------------------------


@dataclass(eq=False)
class RangeImage(Message):
    """Zlib-compressed serialized matrices (see the field comments)."""

    PROTO_NAME = "waymo.open_dataset.RangeImage"
    range_image: MatrixFloat | None = pb_field(1, "message", message=MatrixFloat)  # deprecated, uncompressed
    range_image_compressed: bytes = pb_field(2, "bytes")  # MatrixFloat [H, W, 4]
    camera_projection_compressed: bytes = pb_field(3, "bytes")  # MatrixInt32 [H, W, 6]
    range_image_pose_compressed: bytes = pb_field(4, "bytes")  # MatrixFloat [H, W, 6], TOP return 1
    range_image_flow_compressed: bytes = pb_field(5, "bytes")  # MatrixFloat [H, W, 4]
    segmentation_label_compressed: bytes = pb_field(6, "bytes")  # MatrixInt32 [H, W, 2]


@dataclass(eq=False)
class Laser(Message):
    PROTO_NAME = "waymo.open_dataset.Laser"
    name: int = pb_field(1, "enum")  # LaserName
    ri_return1: RangeImage | None = pb_field(2, "message", message=RangeImage)
    ri_return2: RangeImage | None = pb_field(3, "message", message=RangeImage)


# ---------------------------------------------------------------------------------------------
# label.proto
# ---------------------------------------------------------------------------------------------


@dataclass(eq=False)
class LabelBox(Message):
    """``Label.Box``: upright box in the vehicle frame; note length is field 5, width field 4."""

    PROTO_NAME = "waymo.open_dataset.Label.Box"
    center_x: float = pb_field(1, "double")
    center_y: float = pb_field(2, "double")
    center_z: float = pb_field(3, "double")
    width: float = pb_field(4, "double")  # dim y
    length: float = pb_field(5, "double")  # dim x
    height: float = pb_field(6, "double")  # dim z
    heading: float = pb_field(7, "double")  # radians, +x to the box front normal, in [-pi, pi)


@dataclass(eq=False)
class LabelMetadata(Message):
    """``Label.Metadata``: speed (m/s) and acceleration (m/s^2); field numbers interleave."""

    PROTO_NAME = "waymo.open_dataset.Label.Metadata"
    speed_x: float = pb_field(1, "double")
    speed_y: float = pb_field(2, "double")
    accel_x: float = pb_field(3, "double")
    accel_y: float = pb_field(4, "double")
    speed_z: float = pb_field(5, "double")
    accel_z: float = pb_field(6, "double")


@dataclass(eq=False)
class Label(Message):
    """Keypoints (fields 8, 9) and the association (10) are not declared and are skipped."""

    PROTO_NAME = "waymo.open_dataset.Label"
    box: LabelBox | None = pb_field(1, "message", message=LabelBox)
    metadata: LabelMetadata | None = pb_field(2, "message", message=LabelMetadata)
    type: int = pb_field(3, "enum")  # LabelType
    id: str = pb_field(4, "string")
    detection_difficulty_level: int = pb_field(5, "enum")  # DifficultyLevel
    tracking_difficulty_level: int = pb_field(6, "enum")  # DifficultyLevel
    num_lidar_points_in_box: int = pb_field(7, "int32")
    most_visible_camera_name: str = pb_field(11, "string")
    camera_synced_box: LabelBox | None = pb_field(12, "message", message=LabelBox)
    num_top_lidar_points_in_box: int = pb_field(13, "int32")


@dataclass(eq=False)
class Polygon2dProto(Message):
    """Non-self-intersecting polygon (no-label zones, in the global frame)."""

    PROTO_NAME = "waymo.open_dataset.Polygon2dProto"
    x: np.ndarray = pb_field(1, "double", repeated=True)
    y: np.ndarray = pb_field(2, "double", repeated=True)
    id: str = pb_field(3, "string")


@dataclass(eq=False)
class CameraLabels(Message):
    PROTO_NAME = "waymo.open_dataset.CameraLabels"
    name: int = pb_field(1, "enum")  # CameraName
    labels: list[Label] = pb_field(2, "message", repeated=True, message=Label)


@dataclass(eq=False)
class Frame(Message):
    """Skipped: images (4), map_features (10), map_pose_offset (11), extensions (>= 1000)."""

    PROTO_NAME = "waymo.open_dataset.Frame"
    context: Context | None = pb_field(1, "message", message=Context)
    timestamp_micros: int = pb_field(2, "int64")
    pose: Transform | None = pb_field(3, "message", message=Transform)  # vehicle -> global
    lasers: list[Laser] = pb_field(5, "message", repeated=True, message=Laser)
    laser_labels: list[Label] = pb_field(6, "message", repeated=True, message=Label)
    no_label_zones: list[Polygon2dProto] = pb_field(7, "message", repeated=True, message=Polygon2dProto)
    camera_labels: list[CameraLabels] = pb_field(8, "message", repeated=True, message=CameraLabels)
    projected_lidar_labels: list[CameraLabels] = pb_field(9, "message", repeated=True, message=CameraLabels)


# ---------------------------------------------------------------------------------------------
# protos/metrics.proto: prediction and ground-truth files
# ---------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Object(Message):
    PROTO_NAME = "waymo.open_dataset.Object"
    object: Label | None = pb_field(1, "message", message=Label)
    score: float = pb_field(2, "float", default=1.0)  # proto default 1.0 (ground truth)
    overlap_with_nlz: bool = pb_field(3, "bool")
    context_name: str = pb_field(4, "string")
    frame_timestamp_micros: int = pb_field(5, "int64")
    camera_name: int = pb_field(6, "enum")  # CameraName


@dataclass(eq=False)
class NoLabelZoneObject(Message):
    PROTO_NAME = "waymo.open_dataset.NoLabelZoneObject"
    zone: Polygon2dProto | None = pb_field(1, "message", message=Polygon2dProto)
    context_name: str = pb_field(2, "string")
    frame_timestamp_micros: int = pb_field(3, "int64")


@dataclass(eq=False)
class Objects(Message):
    PROTO_NAME = "waymo.open_dataset.Objects"
    objects: list[Object] = pb_field(1, "message", repeated=True, message=Object)
    no_label_zone_objects: list[NoLabelZoneObject] = pb_field(2, "message", repeated=True, message=NoLabelZoneObject)
