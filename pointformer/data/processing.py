"""Deterministic per-frame processing: class and range filters, the min-points filter and point
feature encoding. Same ``(sample, rng) -> sample`` signature as the augmentations (the generator is
unused), so they compose with them in one ``Compose``; they run in training and evaluation alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from pointformer.data.points import encode_point_features
from pointformer.data.sample import FrameSample


def class_labels(names: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """``(M,)`` int64 index of each name in ``class_names`` (0-based), -1 where not configured."""
    lookup = {n: i for i, n in enumerate(class_names)}
    return np.fromiter((lookup.get(str(n), -1) for n in names), np.int64, len(names))


@dataclass(frozen=True)
class ClassFilter:
    """Drops the boxes whose class is not configured (``labels == -1``)."""

    def __call__(self, sample: FrameSample, rng: np.random.Generator | None = None) -> FrameSample:
        return sample.select_boxes(sample.labels >= 0)


@dataclass(frozen=True)
class RangeFilter:
    """Keeps the points with ``range_min <= (x, y, z) < range_max`` (half-open, as
    ``pointformer.ops.voxelize``) and the boxes whose centre lies in the range in x and y (the
    box z is not tested: a box whose centre is slightly above the range still has points in it).

    ``point_cloud_range``: ``(x_min, y_min, z_min, x_max, y_max, z_max)`` metres.
    """

    point_cloud_range: tuple[float, float, float, float, float, float]

    def __post_init__(self) -> None:
        r = self.point_cloud_range
        if len(r) != 6 or not all(r[i] < r[i + 3] for i in range(3)):
            raise ValueError(f"point_cloud_range must be (x_min, y_min, z_min, x_max, y_max, z_max), got {r}")

    def __call__(self, sample: FrameSample, rng: np.random.Generator | None = None) -> FrameSample:
        lo = np.asarray(self.point_cloud_range[:3], np.float32)
        hi = np.asarray(self.point_cloud_range[3:], np.float32)
        xyz = sample.points[:, :3]
        inside = np.all((xyz >= lo) & (xyz < hi), axis=1)
        c = sample.boxes[:, :2]
        box_inside = np.all((c >= lo[:2]) & (c < hi[:2]), axis=1)
        points = np.compress(inside, sample.points, axis=0)  # faster than boolean indexing
        return sample.replace(points=points).select_boxes(box_inside)


@dataclass(frozen=True)
class MinPointsFilter:
    """Drops boxes with fewer than ``min_points`` labelled points (``num_points_in_box``); 1 drops
    the empty boxes (OpenPCDet's FILTER_EMPTY_BOXES_FOR_TRAIN)."""

    min_points: int = 1

    def __call__(self, sample: FrameSample, rng: np.random.Generator | None = None) -> FrameSample:
        return sample.select_boxes(sample.num_points_in_box >= self.min_points)


@dataclass(frozen=True)
class EncodeFeatures:
    """Selects and transforms the point columns (see ``encode_point_features``): e.g.
    ``features=("x", "y", "z", "intensity", "elongation")``,
    ``transforms={"intensity": "tanh", "elongation": "tanh"}``."""

    features: tuple[str, ...]
    transforms: Mapping[str, str] = field(default_factory=dict)

    def __call__(self, sample: FrameSample, rng: np.random.Generator | None = None) -> FrameSample:
        points = encode_point_features(sample.points, sample.point_features, self.features, self.transforms)
        return sample.replace(points=points, point_features=tuple(self.features))
