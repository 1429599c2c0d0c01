"""Synthetic sequences written as Waymo Open Dataset files (v1 TFRecord, v2 parquet).

``to_waymo_frame`` turns a ``SyntheticFrame`` of the ``"waymo"`` preset into the typed
``WaymoRangeImageFrame`` the format writers take; ``write_waymo_v1`` / ``write_waymo_v2`` write a
whole ``SyntheticSequence`` through ``formats.waymo_v1.write_frames`` / ``formats.waymo_v2.
write_segment`` (no format code here). Reading the files back with ``formats.waymo_v1.read_frames``
or ``formats.waymo_v2.read_frames`` gives ``SyntheticFrame.points()`` of the same lasers and
returns, in the same order, to float32 rounding (see ``to_waymo_frame``).

What the frames hold:

* range images of both returns of every laser, as ray cast (``-1`` in every channel where there
  is no return; the no-label-zone flag is -1 on returns);
* calibrations from the ``LidarSpec``: the extrinsic, and the inclinations as Waymo stores them
  (ascending, i.e. ``inclinations[::-1]``; only min/max for lasers with
  ``uniform_inclinations``, as for the real short-range lasers);
* TOP pixel poses, all equal to the frame pose (scans are simulated as instantaneous);
* labels with the official ``Label.Type`` values; classes Waymo does not label (type 0: barriers,
  traffic cones) are left out. Detection and tracking difficulty are the synthetic difficulty
  (LEVEL_2 for <= 5 points); speeds and accelerations are in global-frame axes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pointformer.data.formats import waymo_v1, waymo_v2
from pointformer.data.formats.range_image import matrix_to_pose6
from pointformer.data.formats.waymo_frame import (
    WaymoLabels,
    WaymoLaserCalibration,
    WaymoLaserRangeImages,
    WaymoRangeImageFrame,
)
from pointformer.data.synthetic.labels import FrameLabels
from pointformer.data.synthetic.lidar import WAYMO_LASER_IDS, LidarSpec
from pointformer.data.synthetic.sequence import SyntheticFrame, SyntheticSequence

__all__ = [
    "SYNTHETIC_STATS",
    "laser_calibration",
    "segment_filename",
    "to_waymo_frame",
    "waymo_labels",
    "write_waymo_v1",
    "write_waymo_v2",
]

# Segment stats (time of day, location, weather) of every synthetic frame.
SYNTHETIC_STATS = ("Day", "location_synthetic", "sunny")

# Called after each frame is converted (before it is written), e.g. for progress and statistics.
FrameCallback = Callable[[SyntheticFrame, WaymoRangeImageFrame], None]


def laser_calibration(spec: LidarSpec) -> WaymoLaserCalibration:
    """The Waymo calibration of a laser: its extrinsic and inclinations in Waymo's storage
    (ascending; min/max only when ``spec.uniform_inclinations``)."""
    if spec.name not in WAYMO_LASER_IDS or WAYMO_LASER_IDS[spec.name] != spec.laser_id:
        raise ValueError(f"laser {spec.name!r} (id {spec.laser_id}) is not a Waymo laser")
    incl = spec.inclinations
    if not spec.uniform_inclinations:
        return WaymoLaserCalibration(
            name=spec.laser_id,
            extrinsic=spec.extrinsic,
            beam_inclination_min=float(incl[-1]),
            beam_inclination_max=float(incl[0]),
            beam_inclinations=incl[::-1],
        )
    # Waymo's uniform rows sit at ``min + (h + 0.5) / H * (max - min)``: min/max are the edges of
    # the field of view, half a beam spacing beyond the lowest and highest rows.
    half_step = 0.5 * (incl[0] - incl[-1]) / max(spec.height - 1, 1)
    calib = WaymoLaserCalibration(
        name=spec.laser_id,
        extrinsic=spec.extrinsic,
        beam_inclination_min=float(incl[-1] - half_step),
        beam_inclination_max=float(incl[0] + half_step),
    )
    if not np.allclose(calib.row_inclinations(spec.height), incl, rtol=0.0, atol=1e-12):
        raise ValueError(f"laser {spec.name!r}: uniform_inclinations is set but its inclinations are not uniform")
    return calib


def waymo_labels(labels: FrameLabels) -> WaymoLabels:
    """The labels Waymo would have: every object of a Waymo class (type != 0), in order."""
    types = labels.waymo_types
    keep = np.flatnonzero(types != 0)
    difficulty = labels.difficulty[keep]
    return WaymoLabels(
        boxes=labels.boxes[keep],
        types=types[keep],
        detection_difficulty=difficulty,
        tracking_difficulty=difficulty,
        num_lidar_points_in_box=labels.num_lidar_points_in_box[keep],
        num_top_lidar_points_in_box=labels.num_top_lidar_points_in_box[keep],
        ids=labels.ids[keep],
        speed=labels.velocity_world[keep],
        acceleration=labels.acceleration_world[keep],
    )


def to_waymo_frame(
    frame: SyntheticFrame, context_name: str, stats: tuple[str, str, str] = SYNTHETIC_STATS
) -> WaymoRangeImageFrame:
    """One synthetic frame (lasers of the ``"waymo"`` preset, or any with Waymo names and ids) as
    a Waymo frame; see the module docstring for what it holds.

    Points read back from it equal ``frame.points()`` up to float32 rounding: the reader recomputes
    the same pixel geometry in float64 from the calibration, and the TOP points go through the
    float32 pixel poses (``[roll, pitch, yaw, x, y, z]``) to the global frame and back through the
    float64 frame pose, which moves them by at most a few 1e-5 m near the origin of the world.

    Args:
        frame: the frame; its scans' specs give the calibrations.
        context_name: the segment name (``SyntheticSequence.name``).
        stats: ``(time_of_day, location, weather)``.
    """
    calibrations = []
    lasers = []
    for scan in frame.scans:
        calib = laser_calibration(scan.spec)
        calibrations.append(calib)
        pixel_pose = None
        if calib.name == WAYMO_LASER_IDS["TOP"]:
            pose6 = matrix_to_pose6(frame.pose).astype(np.float32)
            pixel_pose = np.broadcast_to(pose6, (*scan.spec.shape, 6))
        lasers.append(WaymoLaserRangeImages(calib.name, scan.range_image, scan.range_image_return2, pixel_pose))
    time_of_day, location, weather = stats
    return WaymoRangeImageFrame(
        context_name=context_name,
        timestamp_micros=frame.timestamp_micros,
        pose=frame.pose,
        laser_calibrations=tuple(calibrations),
        camera_calibrations=(),  # the writers add Waymo's five default cameras
        lasers=tuple(lasers),
        labels=waymo_labels(frame.labels),
        time_of_day=time_of_day,
        location=location,
        weather=weather,
    )


def segment_filename(context_name: str) -> str:
    """The v1 file name of a segment: ``segment-<context>_with_camera_labels.tfrecord``."""
    return f"segment-{context_name}_with_camera_labels.tfrecord"


def _frames(sequence: SyntheticSequence, on_frame: FrameCallback | None):
    for frame in sequence:
        waymo = to_waymo_frame(frame, sequence.name)
        if on_frame is not None:
            on_frame(frame, waymo)
        yield waymo


def write_waymo_v1(
    sequence: SyntheticSequence,
    out_dir: str | os.PathLike,
    compression_level: int = 1,
    on_frame: FrameCallback | None = None,
) -> Path:
    """Writes ``sequence`` as ``<out_dir>/segment-<name>_with_camera_labels.tfrecord`` (atomically,
    streaming one frame at a time) and returns the path.

    ``compression_level`` is the zlib level of the range images (1: fast, ~10% larger than 6).
    ``on_frame(synthetic_frame, waymo_frame)`` is called for each frame before it is written.
    """
    path = Path(out_dir) / segment_filename(sequence.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    waymo_v1.write_frames(path, _frames(sequence, on_frame), compression_level=compression_level)
    return path


def write_waymo_v2(
    sequence: SyntheticSequence,
    out_dir: str | os.PathLike,
    split: str,
    compression: str = "snappy",
    on_frame: FrameCallback | None = None,
) -> dict[str, Path]:
    """Writes ``sequence`` as the v2 components ``<out_dir>/<split>/<tag>/<name>.parquet`` (one
    row group per frame, each file atomically) and returns ``{tag: path}``. ``on_frame`` as for
    ``write_waymo_v1``."""
    return waymo_v2.write_segment(out_dir, split, _frames(sequence, on_frame), compression=compression)
