"""Per-frame labels: boxes in the vehicle frame, classes, ids, motion, point counts, difficulty."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from pointformer.data.synthetic.classes import CLASSES, NUSCENES_CATEGORIES, WAYMO_TYPES, nuscenes_attribute
from pointformer.data.synthetic.raycast import Scan

# Waymo DifficultyLevel.
LEVEL_1, LEVEL_2 = 1, 2
# Waymo: a box with at most this many LiDAR points is LEVEL_2.
LEVEL_2_MAX_POINTS = 5
# Objects moving faster than this (m/s) count as moving (nuScenes attributes).
MOVING_SPEED = 0.2


@dataclass(frozen=True, eq=False)
class FrameLabels:
    """The labelled objects of one frame (every object within the label range, including those
    with no LiDAR points: evaluation drops those).

    Attributes:
        ids: ``(N,)`` str persistent object ids (32 hex digits).
        class_index: ``(N,)`` int8 index into ``classes.CLASSES``.
        boxes: ``(N, 7)`` float32 ``[x, y, z, dx, dy, dz, heading]`` in the vehicle frame (x
            forward, y left, z up; z = box centre; heading CCW from +x in [-pi, pi)).
        boxes_world: ``(N, 7)`` float64, the same boxes in the world frame.
        velocity_world: ``(N, 3)`` float64 m/s in the world frame.
        velocity: ``(N, 3)`` float32 ``velocity_world`` rotated into the vehicle frame (rotation
            only: not relative to the ego's motion; as OpenPCDet treats Waymo speeds).
        acceleration_world: ``(N, 3)`` float64 m/s^2 in the world frame.
        num_lidar_points_in_box: ``(N,)`` int64 points (both returns, all lasers) inside the box.
        num_top_lidar_points_in_box: ``(N,)`` int64 the same for the TOP laser (or the only one).
        difficulty: ``(N,)`` int8 Waymo detection difficulty: LEVEL_2 (2) for <= 5 points, else
            LEVEL_1 (1).
    """

    ids: np.ndarray
    class_index: np.ndarray
    boxes: np.ndarray
    boxes_world: np.ndarray
    velocity_world: np.ndarray
    velocity: np.ndarray
    acceleration_world: np.ndarray
    num_lidar_points_in_box: np.ndarray
    num_top_lidar_points_in_box: np.ndarray
    difficulty: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def class_names(self) -> list[str]:
        return [CLASSES[i].name for i in self.class_index]

    @property
    def waymo_types(self) -> np.ndarray:
        """``(N,)`` int8 Waymo ``Label.Type`` (0 = not a Waymo class: barriers, cones)."""
        return WAYMO_TYPES[self.class_index]

    @property
    def moving(self) -> np.ndarray:
        """``(N,)`` bool: horizontal speed above ``MOVING_SPEED``."""
        return np.hypot(self.velocity_world[:, 0], self.velocity_world[:, 1]) > MOVING_SPEED

    @property
    def nuscenes_categories(self) -> list[str | None]:
        """nuScenes category names (None for classes nuScenes does not annotate: signs)."""
        return [NUSCENES_CATEGORIES[i] for i in self.class_index]

    @property
    def nuscenes_attributes(self) -> list[str | None]:
        return [nuscenes_attribute(CLASSES[i].name, m) for i, m in zip(self.class_index, self.moving, strict=True)]

    def boxes3d(self, with_velocity: bool = True):
        """The vehicle-frame boxes as ``structures.Boxes3D`` (``(N, 9)`` with ``[vx, vy]`` of
        ``velocity`` when ``with_velocity``)."""
        import torch

        from pointformer.structures.boxes import Boxes3D

        t = self.boxes if not with_velocity else np.concatenate([self.boxes, self.velocity[:, :2]], axis=1)
        return Boxes3D(torch.from_numpy(np.ascontiguousarray(t, dtype=np.float32)))


@nb.njit(parallel=True, cache=True)
def _count_points_in_boxes(points, boxes):
    """``(M,)`` number of points (``(N, >=3)``) inside each box ``(M, 7)``; closed intervals, in
    float64 (as ``ops.points_in_boxes_reference``)."""
    m = boxes.shape[0]
    counts = np.zeros(m, dtype=np.int64)
    for j in nb.prange(m):
        bx, by, bz = float(boxes[j, 0]), float(boxes[j, 1]), float(boxes[j, 2])
        hx, hy, hz = float(boxes[j, 3]) / 2, float(boxes[j, 4]) / 2, float(boxes[j, 5]) / 2
        c, s = math.cos(float(boxes[j, 6])), math.sin(float(boxes[j, 6]))
        r2 = hx * hx + hy * hy
        n = 0
        for i in range(points.shape[0]):
            dx, dy = float(points[i, 0]) - bx, float(points[i, 1]) - by
            if dx * dx + dy * dy > r2 + 1e-6:
                continue
            if abs(float(points[i, 2]) - bz) <= hz and abs(dx * c + dy * s) <= hx and abs(-dx * s + dy * c) <= hy:
                n += 1
        counts[j] = n
    return counts


def count_points_in_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``(M,)`` int64 number of ``points`` ``(N, >=3)`` inside each of ``boxes`` ``(M, >=7)``
    (same frame; boundaries count as inside)."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    return _count_points_in_boxes(np.ascontiguousarray(points[:, :3]), np.ascontiguousarray(boxes[:, :7]))


def world_to_vehicle_boxes(boxes_world: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """``(N, 7)`` float64 boxes in the vehicle frame of ``pose`` (vehicle -> world); headings are
    re-measured in the vehicle's x-y plane (poses here have no pitch or roll)."""
    rot, trans = pose[:3, :3], pose[:3, 3]
    out = np.array(boxes_world[:, :7], dtype=np.float64)
    out[:, :3] = (boxes_world[:, :3] - trans) @ rot
    yaw = math.atan2(rot[1, 0], rot[0, 0])
    out[:, 6] = (boxes_world[:, 6] - yaw + np.pi) % (2 * np.pi) - np.pi
    return out


def make_labels(
    ids: np.ndarray,
    class_index: np.ndarray,
    boxes_world: np.ndarray,
    velocity_world: np.ndarray,
    acceleration_world: np.ndarray,
    pose: np.ndarray,
    scans: tuple[Scan, ...],
    top_name: str,
) -> FrameLabels:
    """Labels of one frame: boxes moved into the vehicle frame of ``pose``, points of ``scans``
    (both returns) counted in each box, difficulty from the counts."""
    boxes = world_to_vehicle_boxes(boxes_world, pose).astype(np.float32)
    # Headings exactly representable in float32 may round up to +pi: keep the half-open interval.
    boxes[:, 6] = np.where(boxes[:, 6] >= np.float32(math.pi), boxes[:, 6] - np.float32(2 * math.pi), boxes[:, 6])
    total = np.zeros(len(ids), dtype=np.int64)
    top = np.zeros(len(ids), dtype=np.int64)
    for scan in scans:
        counts = count_points_in_boxes(scan.points(), boxes)
        total += counts
        if scan.spec.name == top_name:
            top += counts
    difficulty = np.where(total <= LEVEL_2_MAX_POINTS, LEVEL_2, LEVEL_1).astype(np.int8)
    return FrameLabels(
        ids=ids,
        class_index=class_index,
        boxes=boxes,
        boxes_world=boxes_world,
        velocity_world=velocity_world,
        velocity=(velocity_world @ pose[:3, :3]).astype(np.float32),
        acceleration_world=acceleration_world,
        num_lidar_points_in_box=total,
        num_top_lidar_points_in_box=top,
        difficulty=difficulty,
    )
