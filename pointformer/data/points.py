"""Loading a frame's points (with previous sweeps) and encoding the configured point features.

Raw points are the layout's columns (``meta["point_features"]``, Waymo: ``x, y, z, intensity,
elongation``, raw values) plus, when sweeps are merged, a ``"time"`` column: seconds before the
current frame (0 for the current frame's points). ``encode_point_features`` then selects and
transforms the columns a model is configured with.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from pointformer.data.layout import FrameRecord, load_points

TIME = "time"
# Transforms applied to one feature column (Waymo practice: tanh on intensity and elongation,
# whose raw values have a long tail).
FEATURE_TRANSFORMS = {"none": lambda v: v, "tanh": np.tanh}


def sweep_to_current(pose_current: np.ndarray, pose_sweep: np.ndarray) -> np.ndarray:
    """``(4, 4)`` float64 transform from a sweep's vehicle frame into the current vehicle frame:
    ``inv(pose_current) @ pose_sweep`` (poses are vehicle -> global)."""
    return np.linalg.solve(pose_current, pose_sweep)


def transform_points(points: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Points ``(N, F)`` float32 with x, y, z moved by the ``(4, 4)`` rigid ``transform`` (computed in
    float64, other columns unchanged)."""
    out = points.copy()
    x, y, z = (points[:, i].astype(np.float64) for i in range(3))
    for i in range(3):  # elementwise: a (N, 3) @ (3, 3) matmul is much slower in numpy
        r = transform[i]
        out[:, i] = r[0] * x + r[1] * y + r[2] * z + r[3]
    return out


def remove_close_points(points: np.ndarray, radius: float) -> np.ndarray:
    """``points`` without those with ``|x| < radius`` and ``|y| < radius`` (a square around the
    sensor: returns from the ego vehicle's roof; nuScenes' ``remove_close``). ``radius <= 0``
    returns ``points`` itself."""
    if radius <= 0:
        return points
    near = (np.abs(points[:, 0]) < radius) & (np.abs(points[:, 1]) < radius)
    return np.compress(~near, points, axis=0)


def load_frame_points(
    root: str | os.PathLike,
    record: FrameRecord,
    raw_features: Sequence[str],
    num_sweeps: int = 0,
    with_time: bool = False,
    close_radius: float = 0.0,
    close_in_frame: bool = False,
) -> np.ndarray:
    """The frame's points, with up to ``num_sweeps`` previous sweeps moved into its vehicle frame.

    Args:
        root: converted dataset root.
        record: the frame's table row.
        raw_features: the layout's point columns (``meta["point_features"]``).
        num_sweeps: previous sweeps to add (``record.sweeps`` is most recent first; a frame near
            the start of its sequence has fewer and gets what exists).
        with_time: append a ``"time"`` column: ``(t_current - t_sweep)`` seconds, 0 for the frame.
        close_radius: drop the points of each previous sweep with ``|x| < close_radius`` and
            ``|y| < close_radius`` in that sweep's own sensor frame, before it is moved (OpenPCDet's
            and mmdet3d's nuScenes loaders: 1 m); 0 keeps them.
        close_in_frame: apply ``close_radius`` to the frame's own points too (as the nuScenes
            devkit's ``LidarPointCloud.from_file_multisweep`` does).

    Returns:
        ``(N, len(raw_features) + with_time)`` float32: the frame's points, then each sweep's.
    """
    if num_sweeps < 0:
        raise ValueError(f"num_sweeps must be >= 0, got {num_sweeps}")
    if num_sweeps and not with_time:
        raise ValueError("merging sweeps needs the time column (with_time=True)")
    f = len(raw_features)
    own = load_points(root, record, f)
    chunks = [(remove_close_points(own, close_radius) if close_in_frame else own, 0.0)]
    for sweep in record.sweeps[:num_sweeps]:
        pts = remove_close_points(load_points(root, sweep, f), close_radius)
        pts = transform_points(pts, sweep_to_current(record.pose, sweep.pose))
        chunks.append((pts, (record.timestamp_micros - sweep.timestamp_micros) * 1e-6))
    if not with_time:
        return chunks[0][0]
    out = [np.concatenate([p, np.full((len(p), 1), t, np.float32)], axis=1) for p, t in chunks]
    return np.concatenate(out, axis=0)


def encode_point_features(
    points: np.ndarray,
    raw_features: Sequence[str],
    features: Sequence[str],
    transforms: Mapping[str, str] | None = None,
) -> np.ndarray:
    """Selects ``features`` (by name) from ``points`` whose columns are ``raw_features``, applying
    ``transforms`` (feature name -> ``"tanh"`` or ``"none"``).

    Returns ``(N, len(features))`` float32 (a new array).
    """
    transforms = transforms or {}
    missing = [n for n in features if n not in raw_features]
    if missing:
        raise KeyError(f"point features {missing} not among the available columns {tuple(raw_features)}")
    out = np.take(points, [list(raw_features).index(n) for n in features], axis=1).astype(np.float32, copy=False)
    for j, name in enumerate(features):
        kind = transforms.get(name, "none")
        if kind not in FEATURE_TRANSFORMS:
            raise ValueError(f"unknown transform {kind!r} for feature {name!r}; known: {sorted(FEATURE_TRANSFORMS)}")
        if kind != "none":
            out[:, j] = FEATURE_TRANSFORMS[kind](out[:, j])
    return out
