"""Typed Waymo frames, shared by the v1 (TFRecord) and v2 (parquet) readers and by the writers.

Frames: the vehicle frame is x forward, y left, z up, metres; ``pose`` is vehicle -> global at
about mid-frame, and labels are in that vehicle frame. Enum values (laser, camera, label type,
difficulty) are the official ones (``waymo_proto.LaserName`` etc.).

Two levels:
  * ``WaymoRangeImageFrame``: what the files store (decompressed range images per laser and
    return, optional TOP pixel poses and camera projections, calibrations, pose, labels). Writers
    take it; the v1 reader can yield it (``read_range_image_frames``).
  * ``WaymoFrame``: points in the vehicle frame plus labels, what training code wants
    (``WaymoRangeImageFrame.to_frame``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pointformer.data.formats.errors import DataFormatError
from pointformer.data.formats.range_image import range_image_to_points, row_inclinations
from pointformer.structures.boxes import wrap_angle_numpy


def _array(value, dtype, shape: tuple, what: str) -> np.ndarray:
    """``value`` as a read-only array of ``dtype``, checked against ``shape`` (-1: any)."""
    # A read-only view: the caller's own array keeps its flags.
    arr = np.ascontiguousarray(value, dtype=dtype).view()
    if arr.ndim != len(shape) or any(s != -1 and s != a for s, a in zip(shape, arr.shape, strict=True)):
        raise ValueError(f"{what} must have shape {shape} (-1: any), got {arr.shape}")
    arr.setflags(write=False)
    return arr


def wrap_heading(heading: np.ndarray) -> np.ndarray:
    """Headings as float32, wrapped into ``[-pi, pi)`` (after the cast, so rounding cannot leave
    the interval)."""
    return wrap_angle_numpy(np.asarray(heading, dtype=np.float32))


@dataclass(frozen=True, eq=False)
class WaymoLaserCalibration:
    """One lidar's calibration.

    ``extrinsic``: ``(4, 4)`` float64 lidar -> vehicle. ``beam_inclinations``: ``(H,)`` float64
    radians, ascending as stored (lowest beam first), or ``None`` for beams spread uniformly over
    ``[beam_inclination_min, beam_inclination_max]`` (radians).
    """

    name: int
    extrinsic: np.ndarray
    beam_inclination_min: float
    beam_inclination_max: float
    beam_inclinations: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "extrinsic", _array(self.extrinsic, np.float64, (4, 4), "extrinsic"))
        if self.beam_inclinations is not None:
            incl = _array(self.beam_inclinations, np.float64, (-1,), "beam_inclinations")
            object.__setattr__(self, "beam_inclinations", incl if incl.size else None)

    def row_inclinations(self, height: int) -> np.ndarray:
        """``(H,)`` float64 inclination of each range-image row, row 0 the highest."""
        return row_inclinations(height, self.beam_inclinations, self.beam_inclination_min, self.beam_inclination_max)


@dataclass(frozen=True, eq=False)
class WaymoCameraCalibration:
    """One camera's calibration: ``intrinsic`` ``(9,)`` float64 ``[f_u, f_v, c_u, c_v, k1, k2, p1,
    p2, k3]`` (pixels), ``extrinsic`` ``(4, 4)`` float64 camera -> vehicle, image size in pixels."""

    name: int
    intrinsic: np.ndarray
    extrinsic: np.ndarray
    width: int
    height: int
    rolling_shutter_direction: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "intrinsic", _array(self.intrinsic, np.float64, (-1,), "intrinsic"))
        object.__setattr__(self, "extrinsic", _array(self.extrinsic, np.float64, (4, 4), "extrinsic"))


@dataclass(frozen=True, eq=False)
class WaymoLabels:
    """``M`` labelled 3D boxes of one frame, in the frame's vehicle frame.

    Attributes:
        boxes: ``(M, 7)`` float32 ``[x, y, z, dx, dy, dz, heading]``: centre (m), dx = length,
            dy = width, dz = height (m), heading (rad, counter-clockwise from +x, in [-pi, pi)).
        types: ``(M,)`` int8 ``Label.Type`` (0 unknown, 1 vehicle, 2 pedestrian, 3 sign, 4 cyclist).
        detection_difficulty, tracking_difficulty: ``(M,)`` int8 ``DifficultyLevel`` (0, 1, 2).
        num_lidar_points_in_box, num_top_lidar_points_in_box: ``(M,)`` int32.
        ids: ``(M,)`` str, the tracking ids.
        speed, acceleration: ``(M, 3)`` float32 m/s and m/s^2 from the label metadata, as labelled
            (global-frame axes, the convention OpenPCDet assumes).
    """

    boxes: np.ndarray
    types: np.ndarray
    detection_difficulty: np.ndarray
    tracking_difficulty: np.ndarray
    num_lidar_points_in_box: np.ndarray
    num_top_lidar_points_in_box: np.ndarray
    ids: np.ndarray
    speed: np.ndarray
    acceleration: np.ndarray

    def __post_init__(self) -> None:
        boxes = _array(self.boxes, np.float32, (-1, 7), "boxes")
        m = boxes.shape[0]
        object.__setattr__(self, "boxes", boxes)
        for name, dtype in (
            ("types", np.int8),
            ("detection_difficulty", np.int8),
            ("tracking_difficulty", np.int8),
            ("num_lidar_points_in_box", np.int32),
            ("num_top_lidar_points_in_box", np.int32),
        ):
            object.__setattr__(self, name, _array(getattr(self, name), dtype, (m,), name))
        ids = np.asarray(self.ids, dtype=np.str_).reshape(-1)
        if ids.shape != (m,):
            raise ValueError(f"ids must have shape ({m},), got {ids.shape}")
        ids.setflags(write=False)
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "speed", _array(self.speed, np.float32, (m, 3), "speed"))
        object.__setattr__(self, "acceleration", _array(self.acceleration, np.float32, (m, 3), "acceleration"))

    @classmethod
    def empty(cls) -> WaymoLabels:
        return cls.from_arrays(np.zeros((0, 7), np.float32), np.zeros(0, np.int8))

    @classmethod
    def from_arrays(
        cls,
        boxes: np.ndarray,
        types: np.ndarray,
        *,
        detection_difficulty: np.ndarray | None = None,
        tracking_difficulty: np.ndarray | None = None,
        num_lidar_points_in_box: np.ndarray | None = None,
        num_top_lidar_points_in_box: np.ndarray | None = None,
        ids: np.ndarray | list[str] | None = None,
        speed: np.ndarray | None = None,
        acceleration: np.ndarray | None = None,
    ) -> WaymoLabels:
        """Labels with zeros (and ids ``"0", "1", ...``) for what is not given."""
        m = len(boxes)
        zeros = np.zeros(m, np.int32)
        return cls(
            boxes=boxes,
            types=types,
            detection_difficulty=zeros if detection_difficulty is None else detection_difficulty,
            tracking_difficulty=zeros if tracking_difficulty is None else tracking_difficulty,
            num_lidar_points_in_box=zeros if num_lidar_points_in_box is None else num_lidar_points_in_box,
            num_top_lidar_points_in_box=zeros if num_top_lidar_points_in_box is None else num_top_lidar_points_in_box,
            ids=[str(i) for i in range(m)] if ids is None else ids,
            speed=np.zeros((m, 3), np.float32) if speed is None else speed,
            acceleration=np.zeros((m, 3), np.float32) if acceleration is None else acceleration,
        )

    def __len__(self) -> int:
        return self.boxes.shape[0]


@dataclass(frozen=True, eq=False)
class WaymoLaserRangeImages:
    """One laser's range images as stored.

    Attributes:
        name: ``LaserName``.
        return1, return2: ``(H, W, 4)`` float32 ``[range (m), intensity, elongation, nlz]``;
            range <= 0 means no return; nlz is 1 inside a no-label zone, -1 outside. ``return2``
            may be ``None`` (not stored).
        pixel_pose: ``(H, W, 6)`` float32 per-pixel vehicle -> global ``[roll, pitch, yaw, x, y,
            z]`` (TOP laser, shared by both returns), or ``None``.
        camera_projection1, camera_projection2: ``(H, W, 6)`` int32 ``[camera, x, y, camera, x,
            y]`` projections of each return, or ``None``.
    """

    name: int
    return1: np.ndarray
    return2: np.ndarray | None = None
    pixel_pose: np.ndarray | None = None
    camera_projection1: np.ndarray | None = None
    camera_projection2: np.ndarray | None = None

    def __post_init__(self) -> None:
        r1 = _array(self.return1, np.float32, (-1, -1, 4), "return1")
        object.__setattr__(self, "return1", r1)
        hw = r1.shape[:2]
        if self.return2 is not None:
            object.__setattr__(self, "return2", _array(self.return2, np.float32, (*hw, 4), "return2"))
        if self.pixel_pose is not None:
            object.__setattr__(self, "pixel_pose", _array(self.pixel_pose, np.float32, (*hw, 6), "pixel_pose"))
        for name in ("camera_projection1", "camera_projection2"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _array(getattr(self, name), np.int32, (*hw, 6), name))

    @property
    def returns(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        return self.return1, self.return2


@dataclass(frozen=True, eq=False)
class WaymoFrame:
    """One frame: points of all lidars in the vehicle frame, calibrations, pose and labels.

    Attributes:
        context_name: segment id. timestamp_micros: int, start of the frame's first TOP scan.
        pose: ``(4, 4)`` float64 vehicle -> global.
        laser_calibrations: sorted by laser name (TOP, FRONT, SIDE_LEFT, SIDE_RIGHT, REAR).
        camera_calibrations: as stored (usually FRONT .. SIDE_RIGHT).
        points: ``(N, 6)`` float32 ``[x, y, z, intensity, elongation, nlz_flag]``, vehicle frame,
            metres. Order (as OpenPCDet's converter): lasers in ``laser_calibrations`` order, for
            each laser return 1 then return 2, each in row-major range-image order.
        point_counts: ``(L, 2)`` int64, the number of points of each laser (rows as
            ``laser_calibrations``) and return (columns).
        labels: ``WaymoLabels``.
        time_of_day, location, weather: the segment's stats strings ("" when absent).
    """

    context_name: str
    timestamp_micros: int
    pose: np.ndarray
    laser_calibrations: tuple[WaymoLaserCalibration, ...]
    camera_calibrations: tuple[WaymoCameraCalibration, ...]
    points: np.ndarray
    point_counts: np.ndarray
    labels: WaymoLabels
    time_of_day: str = ""
    location: str = ""
    weather: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "pose", _array(self.pose, np.float64, (4, 4), "pose"))
        object.__setattr__(self, "points", _array(self.points, np.float32, (-1, 6), "points"))
        counts = _array(self.point_counts, np.int64, (len(self.laser_calibrations), 2), "point_counts")
        if counts.sum() != self.points.shape[0]:
            raise ValueError(f"point_counts sum to {counts.sum()} but there are {self.points.shape[0]} points")
        object.__setattr__(self, "point_counts", counts)
        object.__setattr__(self, "laser_calibrations", tuple(self.laser_calibrations))
        object.__setattr__(self, "camera_calibrations", tuple(self.camera_calibrations))

    @property
    def laser_names(self) -> tuple[int, ...]:
        return tuple(c.name for c in self.laser_calibrations)

    def point_laser_names(self) -> np.ndarray:
        """``(N,)`` int8 ``LaserName`` of each point."""
        names = np.repeat(np.asarray(self.laser_names, dtype=np.int8), 2)
        return np.repeat(names, self.point_counts.reshape(-1))

    def point_return_indices(self) -> np.ndarray:
        """``(N,)`` uint8 return index (0: first return, 1: second) of each point."""
        returns = np.tile(np.array([0, 1], dtype=np.uint8), len(self.laser_calibrations))
        return np.repeat(returns, self.point_counts.reshape(-1))


@dataclass(frozen=True, eq=False)
class WaymoRangeImageFrame:
    """One frame as stored: range images of each laser plus what ``WaymoFrame`` holds.

    ``lasers`` may be empty (a frame with labels only) or cover a subset of the calibrated lasers;
    every laser in it must have a calibration.
    """

    context_name: str
    timestamp_micros: int
    pose: np.ndarray
    laser_calibrations: tuple[WaymoLaserCalibration, ...]
    camera_calibrations: tuple[WaymoCameraCalibration, ...]
    lasers: tuple[WaymoLaserRangeImages, ...]
    labels: WaymoLabels
    time_of_day: str = ""
    location: str = ""
    weather: str = ""
    no_label_zones: tuple[np.ndarray, ...] = field(default=())  # (K, 2) float64 global-frame polygons

    def __post_init__(self) -> None:
        object.__setattr__(self, "pose", _array(self.pose, np.float64, (4, 4), "pose"))
        object.__setattr__(self, "laser_calibrations", tuple(sorted(self.laser_calibrations, key=lambda c: c.name)))
        object.__setattr__(self, "camera_calibrations", tuple(self.camera_calibrations))
        object.__setattr__(self, "lasers", tuple(sorted(self.lasers, key=lambda laser: laser.name)))
        calibrated = {c.name for c in self.laser_calibrations}
        names = [laser.name for laser in self.lasers]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate lasers {names}")
        missing = sorted(set(names) - calibrated)
        if missing:
            raise ValueError(f"lasers {missing} have range images but no calibration")

    def to_frame(self, returns: tuple[int, ...] = (0, 1)) -> WaymoFrame:
        """Converts the range images to points (see ``WaymoFrame.points`` for the order).

        ``returns`` selects the returns to keep (0: first, 1: second). The TOP pixel poses, where
        present, apply to both returns.
        """
        by_name = {laser.name: laser for laser in self.lasers}
        chunks: list[np.ndarray] = []
        counts = np.zeros((len(self.laser_calibrations), 2), dtype=np.int64)
        for i, calib in enumerate(self.laser_calibrations):
            laser = by_name.get(calib.name)
            if laser is None:
                continue
            height = laser.return1.shape[0]
            try:
                incl = calib.row_inclinations(height)
            except DataFormatError as e:
                raise DataFormatError(f"laser {calib.name}: {e}") from None
            for r in returns:
                image = laser.returns[r]
                if image is None:
                    continue
                pts = range_image_to_points(image, calib.extrinsic, incl, laser.pixel_pose, self.pose)
                counts[i, r] = pts.shape[0]
                chunks.append(pts)
        points = np.concatenate(chunks, axis=0) if chunks else np.zeros((0, 6), np.float32)
        return WaymoFrame(
            context_name=self.context_name,
            timestamp_micros=self.timestamp_micros,
            pose=self.pose,
            laser_calibrations=self.laser_calibrations,
            camera_calibrations=self.camera_calibrations,
            points=points,
            point_counts=counts,
            labels=self.labels,
            time_of_day=self.time_of_day,
            location=self.location,
            weather=self.weather,
        )
