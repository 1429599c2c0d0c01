"""A synthetic one-frame batch as a config's model sees it (``make_frame``): the input of the
``detector`` and ``export`` benchmarks and of ``tools/export.py`` when the config's split is not
converted. Its point features and transforms, range crop and labels follow the config."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pointformer.config import Config
from pointformer.data.collate import FrameBatch, collate_frames
from pointformer.data.points import encode_point_features
from pointformer.data.sample import FrameSample
from pointformer.data.synthetic import generate_sequence, waymo_lidars
from pointformer.data.synthetic.scatter import make_boxes, make_lidar_frame

QUICK_WIDTH_DIVISOR = 8  # --quick: every laser keeps 1/8 of its azimuth columns (~23k points)
SCATTER_POINTS = {False: 180_000, True: 20_000}  # make_lidar_frame points (--quick: True)
SCATTER_BOXES = 300
# The synthetic frame's point columns (``SyntheticFrame.points``) plus a zero "time" column (one sweep).
RAW_COLUMNS = ("x", "y", "z", "intensity", "elongation", "nlz", "time")
# Waymo label types of the synthetic classes -> the Waymo class names the configs use.
WAYMO_NAMES = {1: "Vehicle", 2: "Pedestrian", 3: "Sign", 4: "Cyclist"}


# --- the input frame ----------------------------------------------------------------------------


FRAMES = ("raycast", "scatter")  # --frame choices


@dataclass(frozen=True)
class BenchFrame:
    """The benchmark's input: a one-frame batch and how it was made.

    Attributes:
        batch: one frame, points ``(N, F)`` float32 with the config's features, boxes ``(M, 9)``.
        kind: ``"raycast"`` or ``"scatter"`` (see ``make_frame``).
        raw_points: points generated, before cropping to the range.
        random_labels: True when the boxes' labels are random (the scattered frame) or cyclic
            (a ray-cast frame none of whose classes is among the config's class names).
    """

    batch: FrameBatch
    kind: str
    raw_points: int
    random_labels: bool


def _lidars(quick: bool):
    lidars = waymo_lidars()
    if not quick:
        return lidars
    return tuple(dataclasses.replace(s, width=max(16, s.width // QUICK_WIDTH_DIVISOR)) for s in lidars)


@dataclass(frozen=True)
class _Source:
    """A generated frame before the config's encoding: ``(N, 7)`` points in ``RAW_COLUMNS``,
    ``(M, 9)`` boxes, their class names (Waymo names) and point counts."""

    points: np.ndarray
    boxes: np.ndarray
    names: np.ndarray
    num_points: np.ndarray
    pose: np.ndarray
    timestamp_micros: int


@functools.lru_cache(maxsize=2)  # every config of a multi-config run reads the same points (arrays not mutated)
def _raycast_source(quick: bool, seed: int) -> _Source:
    threads = torch.get_num_threads()
    try:
        frame = generate_sequence(seed, 1, "waymo", lidars=_lidars(quick))[0]
    finally:  # the ray caster's numba threads leave torch's count at every core (OMP_NUM_THREADS ignored)
        torch.set_num_threads(threads)
    raw = frame.points()  # x, y, z, intensity, elongation, nlz
    labels = frame.labels
    return _Source(
        points=np.concatenate([raw, np.zeros((raw.shape[0], 1), np.float32)], axis=1),
        boxes=np.concatenate([labels.boxes, labels.velocity[:, :2]], axis=1).astype(np.float32),
        names=np.asarray([WAYMO_NAMES.get(int(t), "") for t in labels.waymo_types]),
        num_points=labels.num_lidar_points_in_box,
        pose=frame.pose,
        timestamp_micros=frame.timestamp_micros,
    )


def _scatter_source(quick: bool, seed: int, class_names: Sequence[str]) -> _Source:
    points = make_lidar_frame(SCATTER_POINTS[quick], seed=seed).numpy()
    n = points.shape[0]
    points = np.concatenate([points, np.zeros((n, 2), np.float32)], axis=1)  # nlz, time
    boxes = make_boxes(SCATTER_BOXES, seed=seed).numpy()
    boxes = np.concatenate([boxes, np.zeros((boxes.shape[0], 2), np.float32)], axis=1)  # no velocity
    rng = np.random.default_rng(seed)
    names = np.asarray(class_names)[rng.integers(len(class_names), size=boxes.shape[0])]
    return _Source(points, boxes, names, np.ones(boxes.shape[0], np.int64), np.eye(4), 0)


def make_frame(cfg: Config, quick: bool, seed: int = 0, kind: str = "raycast") -> BenchFrame:
    """One frame as the config's model sees it: point features selected and transformed
    (``dataset.point_features`` and ``feature_transforms``), points and box centres cropped to the
    voxelization range, boxes without points dropped, labels = index of the class name in
    ``dataset.class_names`` (boxes of other classes dropped).

    ``kind``: ``"raycast"``: a frame ray-cast by ``pointformer.data.synthetic``
    (``generate_sequence(seed, 1, "waymo")``: five lasers, two returns, ~180k points, its own
    labels; on flat synthetic ground the returns bunch into rings, ~8k pillars of 0.32 m);
    ``"scatter"``: ``make_lidar_frame`` (180k points scattered with 1/r range density, as the ops,
    grouping and attention benchmarks use: ~46k pillars) with 300 random boxes and random labels.
    """
    if kind not in FRAMES:
        raise ValueError(f"frame kind must be one of {FRAMES}, got {kind!r}")
    dc = cfg.dataset_config()
    class_names = tuple(cfg.class_names) or tuple(dc.class_names)
    src = _raycast_source(quick, seed) if kind == "raycast" else _scatter_source(quick, seed, class_names)
    points = encode_point_features(src.points, RAW_COLUMNS, dc.point_features, dc.feature_transforms)
    lo, hi = np.asarray(cfg.grid.point_cloud_range[:3]), np.asarray(cfg.grid.point_cloud_range[3:])
    points = points[np.all((points[:, :3] >= lo) & (points[:, :3] < hi), axis=1)]

    boxes, names = src.boxes, src.names
    keep = (src.num_points > 0) & np.all((boxes[:, :3] >= lo) & (boxes[:, :3] < hi), axis=1)
    known = np.isin(names, class_names)
    cyclic = not bool((keep & known).any())
    if not cyclic:
        keep &= known
    boxes, names = boxes[keep], names[keep]
    if cyclic:  # a config with other classes (nuScenes names, say): any labels serve the timing
        label = np.arange(boxes.shape[0]) % max(len(class_names), 1)
    else:
        label = np.asarray([class_names.index(n) for n in names], dtype=np.int64)
    sample = FrameSample(
        frame_id=f"bench_{kind}_{seed:04d}",
        points=np.ascontiguousarray(points, dtype=np.float32),
        point_features=tuple(dc.point_features),
        boxes=np.ascontiguousarray(boxes, dtype=np.float32),
        names=names,
        labels=label.astype(np.int64),
        difficulty=np.ones(boxes.shape[0], np.int8),
        num_points_in_box=src.num_points[keep].astype(np.int32),
        pose=src.pose,
        timestamp_micros=src.timestamp_micros,
    )
    return BenchFrame(collate_frames([sample]), kind, src.points.shape[0], cyclic or kind == "scatter")
