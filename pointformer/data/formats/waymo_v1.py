"""Waymo Open Dataset v1: TFRecord files of ``Frame`` protos, read and written without TensorFlow.

Reading::

    for frame in read_frames("segment-..._with_camera_labels.tfrecord"):   # WaymoFrame
        frame.points, frame.labels.boxes

``read_range_image_frames`` yields the stored range images instead (``WaymoRangeImageFrame``);
``read_frames`` is that followed by ``to_frame``. Both stream one record at a time.

Writing (the synthetic-data generator): build ``WaymoRangeImageFrame``s from per-laser range images
(``(H, W, 4)`` float32), optional TOP pixel poses, calibrations, pose and labels, then
``write_frames(path, frames)``. Frames are written so that OpenPCDet-style converters accept them
(reference §C.2): five camera calibrations with sizes (``default_camera_calibrations`` when none are
given), both returns of every laser (an empty second return when none is given), camera projections
of both returns (zeros: no projection, when none are given) and a TOP pixel-pose image (constant,
from the frame pose, when none is given).
"""

from __future__ import annotations

import os
import warnings
import zlib
from collections.abc import Iterable, Iterator

import numpy as np

from pointformer.data.formats import waymo_proto as pb
from pointformer.data.formats.errors import DataFormatError
from pointformer.data.formats.range_image import matrix_to_pose6
from pointformer.data.formats.tfrecord import iter_record_spans, write_records
from pointformer.data.formats.waymo_frame import (
    WaymoCameraCalibration,
    WaymoFrame,
    WaymoLabels,
    WaymoLaserCalibration,
    WaymoLaserRangeImages,
    WaymoRangeImageFrame,
    wrap_heading,
)

__all__ = [
    "decode_frame",
    "default_camera_calibrations",
    "encode_frame",
    "labels_from_protos",
    "labels_to_protos",
    "read_frames",
    "read_range_image_frames",
    "write_frames",
]


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------


def _transform(t: pb.Transform | None, where: str) -> np.ndarray:
    values = np.zeros(0) if t is None else t.transform
    if values.size != 16:
        raise DataFormatError(f"{where}: a 4x4 transform needs 16 values, got {values.size}")
    return values.astype(np.float64).reshape(4, 4)


def _decompress_matrix(blob: bytes, cls: type, channels: int, where: str) -> np.ndarray:
    """``(H, W, channels)`` array from a zlib-compressed serialized ``MatrixFloat``/``MatrixInt32``."""
    try:
        raw = zlib.decompress(blob)
    except zlib.error as e:
        raise DataFormatError(f"{where}: zlib: {e}") from None
    try:
        matrix = cls.decode(raw)
    except DataFormatError as e:
        raise DataFormatError(f"{where}: {e}") from None
    dims = tuple(int(d) for d in (matrix.shape.dims if matrix.shape is not None else ()))
    if len(dims) != 3 or dims[2] != channels or min(dims) < 0:
        raise DataFormatError(f"{where}: expected shape [H, W, {channels}], got {list(dims)}")
    if matrix.data.size != dims[0] * dims[1] * dims[2]:
        raise DataFormatError(
            f"{where}: shape {list(dims)} needs {dims[0] * dims[1] * dims[2]} values, data has {matrix.data.size}"
        )
    return matrix.data.reshape(dims)


def _laser_name(name: int) -> str:
    try:
        return pb.LaserName(name).name
    except ValueError:
        return str(name)


def _decode_laser(laser: pb.Laser, index: int, camera_projections: bool) -> WaymoLaserRangeImages | None:
    where = f"Frame.lasers[{index}] ({_laser_name(laser.name)})"
    returns = []
    projections = []
    for r, image in enumerate((laser.ri_return1, laser.ri_return2), start=1):
        if image is None or not image.range_image_compressed:
            returns.append(None)
            projections.append(None)
            continue
        returns.append(
            _decompress_matrix(
                image.range_image_compressed, pb.MatrixFloat, 4, f"{where}.ri_return{r}.range_image_compressed"
            )
        )
        projection = None
        if camera_projections and image.camera_projection_compressed:
            projection = _decompress_matrix(
                image.camera_projection_compressed,
                pb.MatrixInt32,
                6,
                f"{where}.ri_return{r}.camera_projection_compressed",
            )
        projections.append(projection)
    if returns[0] is None:
        if returns[1] is not None:
            raise DataFormatError(f"{where}: second return without a first return")
        return None
    pixel_pose = None
    if laser.ri_return1.range_image_pose_compressed:
        pixel_pose = _decompress_matrix(
            laser.ri_return1.range_image_pose_compressed,
            pb.MatrixFloat,
            6,
            f"{where}.ri_return1.range_image_pose_compressed",
        )
    try:
        return WaymoLaserRangeImages(laser.name, returns[0], returns[1], pixel_pose, projections[0], projections[1])
    except ValueError as e:  # shapes of the two returns / pose disagree
        raise DataFormatError(f"{where}: {e}") from None


def label_arrays(labels: list[pb.Label]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The numbers of ``Label`` protos as arrays: boxes ``(M, 7)`` float64 [centre x/y/z, length,
    width, height, heading], motion ``(M, 6)`` float64 [speed x/y/z, accel x/y/z] and ``(M, 5)`` int64
    [type, detection difficulty, tracking difficulty, num lidar points, num top lidar points]."""
    m = len(labels)
    box = np.zeros((m, 7), np.float64)
    motion = np.zeros((m, 6), np.float64)
    ints = np.zeros((m, 5), np.int64)
    for i, label in enumerate(labels):
        b = label.box
        if b is not None:
            box[i] = (b.center_x, b.center_y, b.center_z, b.length, b.width, b.height, b.heading)
        md = label.metadata
        if md is not None:
            motion[i] = (md.speed_x, md.speed_y, md.speed_z, md.accel_x, md.accel_y, md.accel_z)
        ints[i] = (
            label.type,
            label.detection_difficulty_level,
            label.tracking_difficulty_level,
            label.num_lidar_points_in_box,
            label.num_top_lidar_points_in_box,
        )
    return box, motion, ints


def labels_from_protos(labels: list[pb.Label]) -> WaymoLabels:
    """``WaymoLabels`` from ``Label`` protos (box centre/length/width/height/heading; heading wrapped
    to [-pi, pi) after the float32 cast)."""
    box, motion, ints = label_arrays(labels)
    boxes = box.astype(np.float32)
    boxes[:, 6] = wrap_heading(boxes[:, 6])
    return WaymoLabels(
        boxes=boxes,
        types=ints[:, 0],
        detection_difficulty=ints[:, 1],
        tracking_difficulty=ints[:, 2],
        num_lidar_points_in_box=ints[:, 3],
        num_top_lidar_points_in_box=ints[:, 4],
        ids=[label.id for label in labels],
        speed=motion[:, :3],
        acceleration=motion[:, 3:],
    )


def decode_frame(data: bytes, camera_projections: bool = False) -> WaymoRangeImageFrame:
    """Parses one serialized ``Frame`` into a ``WaymoRangeImageFrame`` (range images decompressed).

    Camera projections are decompressed only with ``camera_projections=True``. Raises
    ``DataFormatError`` naming the field on malformed protobuf, zlib errors and shape mismatches.
    """
    frame = pb.Frame.decode(data)
    context = frame.context or pb.Context()
    laser_calibs = []
    for i, c in enumerate(context.laser_calibrations):
        laser_calibs.append(
            WaymoLaserCalibration(
                name=c.name,
                extrinsic=_transform(c.extrinsic, f"Frame.context.laser_calibrations[{i}].extrinsic"),
                beam_inclination_min=c.beam_inclination_min,
                beam_inclination_max=c.beam_inclination_max,
                beam_inclinations=c.beam_inclinations if c.beam_inclinations.size else None,
            )
        )
    camera_calibs = [
        WaymoCameraCalibration(
            name=c.name,
            intrinsic=c.intrinsic,
            extrinsic=_transform(c.extrinsic, f"Frame.context.camera_calibrations[{i}].extrinsic"),
            width=c.width,
            height=c.height,
            rolling_shutter_direction=c.rolling_shutter_direction,
        )
        for i, c in enumerate(context.camera_calibrations)
    ]
    lasers = [_decode_laser(laser, i, camera_projections) for i, laser in enumerate(frame.lasers)]
    stats = context.stats or pb.Stats()
    zones = []
    for i, z in enumerate(frame.no_label_zones):
        if z.x.size != z.y.size:
            raise DataFormatError(f"Frame.no_label_zones[{i}]: {z.x.size} x values but {z.y.size} y values")
        zones.append(np.stack([z.x, z.y], axis=1))
    try:
        return WaymoRangeImageFrame(
            context_name=context.name,
            timestamp_micros=frame.timestamp_micros,
            pose=_transform(frame.pose, "Frame.pose"),
            laser_calibrations=tuple(laser_calibs),
            camera_calibrations=tuple(camera_calibs),
            lasers=tuple(laser for laser in lasers if laser is not None),
            labels=labels_from_protos(frame.laser_labels),
            time_of_day=stats.time_of_day,
            location=stats.location,
            weather=stats.weather,
            no_label_zones=tuple(zones),
        )
    except ValueError as e:
        if isinstance(e, DataFormatError):
            raise
        raise DataFormatError(f"Frame: {e}") from None


def read_range_image_frames(
    path: str | os.PathLike, camera_projections: bool = False
) -> Iterator[WaymoRangeImageFrame]:
    """Streams the frames of a v1 TFRecord file as stored (see ``decode_frame``).

    Errors name the file, the record index and its byte offset.
    """
    for index, offset, data in iter_record_spans(path):
        try:
            yield decode_frame(data, camera_projections=camera_projections)
        except DataFormatError as e:
            raise DataFormatError(f"{path}: record {index} at byte {offset}: {e}") from None


def read_frames(path: str | os.PathLike, returns: tuple[int, ...] = (0, 1)) -> Iterator[WaymoFrame]:
    """Streams the frames of a v1 TFRecord file with their points (``WaymoFrame``).

    All lasers with range images, the selected ``returns`` (0: first, 1: second), TOP pixel poses
    applied. A frame whose lasers carry no range images (or only some of the calibrated lasers do)
    still yields its labels, with a ``UserWarning`` naming the file and frame.
    """
    for index, offset, data in iter_record_spans(path):
        where = f"{path}: record {index} at byte {offset}"
        try:
            raw = decode_frame(data)
            frame = raw.to_frame(returns)
        except DataFormatError as e:
            raise DataFormatError(f"{where}: {e}") from None
        present = {laser.name for laser in raw.lasers}
        missing = [_laser_name(c.name) for c in raw.laser_calibrations if c.name not in present]
        if not raw.lasers:
            warnings.warn(
                f"{where} (context {raw.context_name!r}, timestamp {raw.timestamp_micros}): no range images; "
                f"yielding its {len(raw.labels)} labels with zero points",
                stacklevel=2,
            )
        elif missing:
            warnings.warn(
                f"{where} (context {raw.context_name!r}, timestamp {raw.timestamp_micros}): "
                f"no range images for lasers {missing}",
                stacklevel=2,
            )
        yield frame


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------


def default_camera_calibrations() -> tuple[WaymoCameraCalibration, ...]:
    """Five plausible cameras (FRONT, FRONT_LEFT, FRONT_RIGHT, SIDE_LEFT, SIDE_RIGHT) with Waymo's
    image sizes (1920x1280 front, 1920x886 side), for synthetic frames without cameras."""
    cams = []
    specs = (
        (pb.CameraName.FRONT, 0.0, 1280),
        (pb.CameraName.FRONT_LEFT, np.pi / 4, 1280),
        (pb.CameraName.FRONT_RIGHT, -np.pi / 4, 1280),
        (pb.CameraName.SIDE_LEFT, np.pi / 2, 886),
        (pb.CameraName.SIDE_RIGHT, -np.pi / 2, 886),
    )
    for name, yaw, height in specs:
        extrinsic = np.eye(4)
        c, s = np.cos(yaw), np.sin(yaw)
        extrinsic[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
        extrinsic[:3, 3] = (1.5, 0.0, 2.0)
        intrinsic = np.array([2000.0, 2000.0, 960.0, height / 2.0, 0.0, 0.0, 0.0, 0.0, 0.0])
        cams.append(
            WaymoCameraCalibration(
                name=int(name),
                intrinsic=intrinsic,
                extrinsic=extrinsic,
                width=1920,
                height=height,
                rolling_shutter_direction=int(pb.RollingShutterReadOutDirection.RIGHT_TO_LEFT),
            )
        )
    return tuple(cams)


def _compress_matrix(array: np.ndarray, cls: type, level: int) -> bytes:
    matrix = cls(data=array.reshape(-1), shape=pb.MatrixShape(dims=np.asarray(array.shape, np.int32)))
    return zlib.compress(matrix.encode(), level)


def _transform_proto(matrix: np.ndarray) -> pb.Transform:
    return pb.Transform(transform=np.asarray(matrix, np.float64).reshape(16))


def labels_to_protos(labels: WaymoLabels) -> list[pb.Label]:
    """``Label`` protos from ``WaymoLabels`` (dx -> length, dy -> width, dz -> height)."""
    protos = []
    boxes = labels.boxes.astype(np.float64)
    speed = labels.speed.astype(np.float64)
    accel = labels.acceleration.astype(np.float64)
    for i in range(len(labels)):
        x, y, z, dx, dy, dz, heading = boxes[i].tolist()
        protos.append(
            pb.Label(
                box=pb.LabelBox(center_x=x, center_y=y, center_z=z, length=dx, width=dy, height=dz, heading=heading),
                metadata=pb.LabelMetadata(
                    speed_x=speed[i, 0],
                    speed_y=speed[i, 1],
                    speed_z=speed[i, 2],
                    accel_x=accel[i, 0],
                    accel_y=accel[i, 1],
                    accel_z=accel[i, 2],
                ),  # fmt: skip
                type=int(labels.types[i]),
                id=str(labels.ids[i]),
                detection_difficulty_level=int(labels.detection_difficulty[i]),
                tracking_difficulty_level=int(labels.tracking_difficulty[i]),
                num_lidar_points_in_box=int(labels.num_lidar_points_in_box[i]),
                num_top_lidar_points_in_box=int(labels.num_top_lidar_points_in_box[i]),
            )
        )
    return protos


def _laser_proto(laser: WaymoLaserRangeImages, frame_pose: np.ndarray, level: int) -> pb.Laser:
    hw = laser.return1.shape[:2]
    return2 = laser.return2 if laser.return2 is not None else np.zeros((*hw, 4), np.float32)
    zeros6 = np.zeros((*hw, 6), np.int32)
    images = []
    for image, projection in ((laser.return1, laser.camera_projection1), (return2, laser.camera_projection2)):
        images.append(
            pb.RangeImage(
                range_image_compressed=_compress_matrix(image, pb.MatrixFloat, level),
                camera_projection_compressed=_compress_matrix(
                    zeros6 if projection is None else projection, pb.MatrixInt32, level
                ),
            )
        )
    pixel_pose = laser.pixel_pose
    if pixel_pose is None and laser.name == pb.LaserName.TOP:
        # Readers of raw data expect TOP pixel poses; a static frame's are the frame pose.
        pixel_pose = np.broadcast_to(matrix_to_pose6(frame_pose).astype(np.float32), (*hw, 6))
    if pixel_pose is not None:
        images[0].range_image_pose_compressed = _compress_matrix(
            np.ascontiguousarray(pixel_pose), pb.MatrixFloat, level
        )
    return pb.Laser(name=laser.name, ri_return1=images[0], ri_return2=images[1])


def encode_frame(frame: WaymoRangeImageFrame, compression_level: int = 6) -> bytes:
    """Serializes a ``Frame`` proto (see the module docstring for what is filled in)."""
    cameras = frame.camera_calibrations or default_camera_calibrations()
    stats = None
    if frame.time_of_day or frame.location or frame.weather:
        stats = pb.Stats(time_of_day=frame.time_of_day, location=frame.location, weather=frame.weather)
    context = pb.Context(
        name=frame.context_name,
        camera_calibrations=[
            pb.CameraCalibration(
                name=c.name,
                intrinsic=c.intrinsic,
                extrinsic=_transform_proto(c.extrinsic),
                width=c.width,
                height=c.height,
                rolling_shutter_direction=c.rolling_shutter_direction,
            )
            for c in cameras
        ],
        laser_calibrations=[
            pb.LaserCalibration(
                name=c.name,
                beam_inclinations=c.beam_inclinations if c.beam_inclinations is not None else np.zeros(0),
                beam_inclination_min=c.beam_inclination_min,
                beam_inclination_max=c.beam_inclination_max,
                extrinsic=_transform_proto(c.extrinsic),
            )
            for c in frame.laser_calibrations
        ],
        stats=stats,
    )
    proto = pb.Frame(
        context=context,
        timestamp_micros=int(frame.timestamp_micros),
        pose=_transform_proto(frame.pose),
        lasers=[_laser_proto(laser, frame.pose, compression_level) for laser in frame.lasers],
        laser_labels=labels_to_protos(frame.labels),
        no_label_zones=[pb.Polygon2dProto(x=z[:, 0], y=z[:, 1], id=str(i)) for i, z in enumerate(frame.no_label_zones)],
    )
    return proto.encode()


def write_frames(path: str | os.PathLike, frames: Iterable[WaymoRangeImageFrame], compression_level: int = 6) -> int:
    """Writes frames as a v1 TFRecord file (atomically) and returns their number."""
    return write_records(path, (encode_frame(f, compression_level) for f in frames))
