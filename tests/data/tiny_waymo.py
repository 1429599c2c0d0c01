"""Tiny Waymo datasets (v1 TFRecords and v2 parquet) for the conversion tests (tests/data/conftest.py
and tests/tools/test_create_data.py load this file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pointformer.data.formats import waymo_v1, waymo_v2
from pointformer.data.formats.waymo_frame import (
    WaymoLabels,
    WaymoLaserCalibration,
    WaymoLaserRangeImages,
    WaymoRangeImageFrame,
)

# (split, context name, frames)
TINY_SEQUENCES = (
    ("training", "1000_0000_000_0020_000", 3),
    ("training", "2000_0000_000_0020_000", 2),
    ("validation", "3000_0000_000_0020_000", 2),
)
SIZES = {1: (8, 48), 2: (4, 16), 3: (4, 16), 4: (4, 16), 5: (4, 16)}


def _transform(yaw: float, t) -> np.ndarray:
    m = np.eye(4)
    c, s = np.cos(yaw), np.sin(yaw)
    m[:2, :2] = [[c, -s], [s, c]]
    m[:3, 3] = t
    return m


def _image(rng, height, width):
    image = np.zeros((height, width, 4), np.float32)
    image[..., 0] = np.where(rng.random((height, width)) < 0.8, rng.uniform(2, 20, (height, width)), -1)
    image[..., 1:3] = rng.uniform(0, 1, (height, width, 2))
    image[..., 3] = np.where(rng.random((height, width)) < 0.2, 1.0, -1.0)  # 20% in a no-label zone
    return image


def tiny_sequence(context: str, num_frames: int, seed: int) -> list[WaymoRangeImageFrame]:
    """Frames with random range images and boxes around some of their points: one box of each
    class, one TYPE_UNKNOWN box and one empty box far away."""
    rng = np.random.default_rng(seed)
    calibs = []
    for name in (1, 2, 3, 4, 5):
        beams = np.sort(rng.uniform(-0.3, 0.05, SIZES[name][0])) if name == 1 else None
        calibs.append(WaymoLaserCalibration(name, _transform(0.4 * name, (1.0, 0.1 * name, 2.0)), -0.5, 0.2, beams))
    frames = []
    for i in range(num_frames):
        pose = _transform(0.1 * i + seed, (100.0 + 2 * i, -30.0, 1.0))
        lasers = tuple(
            WaymoLaserRangeImages(n, _image(rng, *SIZES[n]), _image(rng, *SIZES[n])) for n in (1, 2, 3, 4, 5)
        )
        frame = WaymoRangeImageFrame(
            context,
            1_600_000_000_000_000 + seed * 10**9 + i * 100_000,
            pose,
            tuple(calibs),
            (),
            lasers,
            WaymoLabels.empty(),
        )
        pts = frame.to_frame().points
        centres = pts[rng.choice(len(pts), 5, replace=False), :3]
        centres = np.concatenate([centres, [[500.0, 500.0, 0.0]]])
        m = len(centres)
        boxes = np.concatenate([centres, rng.uniform(2, 5, (m, 3)), rng.uniform(-3, 3, (m, 1))], 1).astype(np.float32)
        labels = WaymoLabels.from_arrays(
            boxes,
            np.array([1, 2, 3, 4, 0, 1]),
            detection_difficulty=rng.integers(1, 3, m),
            tracking_difficulty=rng.integers(1, 3, m),
            num_lidar_points_in_box=rng.integers(1, 100, m),
            ids=[f"{context}-obj{k}" for k in range(m)],
            speed=rng.normal(size=(m, 3)),
            acceleration=rng.normal(size=(m, 3)),
        )
        frames.append(WaymoRangeImageFrame(context, frame.timestamp_micros, pose, tuple(calibs), (), lasers, labels))
    return frames


def write_tiny_waymo(base: Path) -> dict[str, Path]:
    """Writes ``TINY_SEQUENCES`` under ``base`` in both formats: ``{"v1": root, "v2": root}``."""
    v1, v2 = base / "v1", base / "v2"
    for seed, (split, context, n) in enumerate(TINY_SEQUENCES):
        frames = tiny_sequence(context, n, seed)
        (v1 / split).mkdir(parents=True, exist_ok=True)
        waymo_v1.write_frames(v1 / split / f"segment-{context}_with_camera_labels.tfrecord", frames)
        waymo_v2.write_segment(v2, split, frames)
    return {"v1": v1, "v2": v2}
