"""Global (whole-scene) random augmentations, and ``Compose``.

Every transform is a callable ``(sample, rng) -> sample`` over ``FrameSample``: it returns a new
sample and draws all randomness from the ``numpy.random.Generator`` it is given (the dataset seeds
one per (seed, epoch, frame index), so results do not depend on the DataLoader's workers).
Points and boxes move together, so a point inside a box stays inside it; headings are wrapped
into [-pi, pi); box velocities ``(vx, vy)`` transform as the xy-plane vectors they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from pointformer.data.sample import FrameSample
from pointformer.structures.boxes import wrap_angle_numpy


class Transform(Protocol):
    def __call__(self, sample: FrameSample, rng: np.random.Generator) -> FrameSample: ...


@dataclass(frozen=True)
class Compose:
    """Applies ``transforms`` in order, each with the same generator (so the sequence of draws,
    hence the result, is fixed by the generator's seed)."""

    transforms: tuple[Transform, ...]

    def __call__(self, sample: FrameSample, rng: np.random.Generator) -> FrameSample:
        for t in self.transforms:
            sample = t(sample, rng)
        return sample


def flip(sample: FrameSample, axis: str) -> FrameSample:
    """Mirrors the scene. ``axis="x"``: about the x axis (y -> -y, heading -> -heading, vy -> -vy);
    ``axis="y"``: about the y axis (x -> -x, heading -> pi - heading, vx -> -vx)."""
    if axis not in ("x", "y"):
        raise ValueError(f"flip axis must be 'x' or 'y', got {axis!r}")
    col = 1 if axis == "x" else 0  # the coordinate that changes sign
    points, boxes = sample.points.copy(), sample.boxes.copy()
    points[:, col] = -points[:, col]
    boxes[:, col] = -boxes[:, col]
    boxes[:, 7 + col] = -boxes[:, 7 + col]
    heading = -boxes[:, 6] if axis == "x" else np.float32(np.pi) - boxes[:, 6]
    boxes[:, 6] = wrap_angle_numpy(heading)
    return sample.replace(points=points, boxes=boxes)


def _rotate_xy(array: np.ndarray, col: int, angle: float) -> None:
    """Rotates columns ``col, col + 1`` of ``array`` in place about the origin (float64 math;
    elementwise, as a ``(N, 2) @ (2, 2)`` matmul is ~20x slower in numpy)."""
    c, s = np.cos(angle), np.sin(angle)
    x, y = array[:, col].astype(np.float64), array[:, col + 1].astype(np.float64)
    array[:, col] = c * x - s * y
    array[:, col + 1] = s * x + c * y


def rotate(sample: FrameSample, angle: float) -> FrameSample:
    """Rotates the scene about +z by ``angle`` radians (counter-clockwise): points, box centres,
    headings and velocities."""
    points, boxes = sample.points.copy(), sample.boxes.copy()
    _rotate_xy(points, 0, angle)
    _rotate_xy(boxes, 0, angle)
    _rotate_xy(boxes, 7, angle)
    boxes[:, 6] = wrap_angle_numpy(boxes[:, 6] + np.float32(angle))
    return sample.replace(points=points, boxes=boxes)


def scale(sample: FrameSample, factor: float) -> FrameSample:
    """Scales the scene about the origin: point xyz, box centres, extents and velocities."""
    points, boxes = sample.points.copy(), sample.boxes.copy()
    points[:, :3] *= np.float32(factor)
    boxes[:, :6] *= np.float32(factor)
    boxes[:, 7:9] *= np.float32(factor)
    return sample.replace(points=points, boxes=boxes)


def translate(sample: FrameSample, offset: Sequence[float]) -> FrameSample:
    """Moves points and box centres by ``offset`` ``(3,)`` metres (velocities unchanged)."""
    offset = np.asarray(offset, np.float32)
    points, boxes = sample.points.copy(), sample.boxes.copy()
    points[:, :3] += offset
    boxes[:, :3] += offset
    return sample.replace(points=points, boxes=boxes)


@dataclass(frozen=True)
class RandomFlip:
    """Flips about each axis in ``axes`` (``"x"``, ``"y"``) independently with ``probability``."""

    axes: tuple[str, ...] = ("x", "y")
    probability: float = 0.5

    def __post_init__(self) -> None:
        if any(a not in ("x", "y") for a in self.axes):
            raise ValueError(f"RandomFlip axes must be 'x' and/or 'y', got {self.axes}")

    def __call__(self, sample: FrameSample, rng: np.random.Generator) -> FrameSample:
        for axis in self.axes:
            if rng.random() < self.probability:
                sample = flip(sample, axis)
        return sample


@dataclass(frozen=True)
class GlobalRotation:
    """Rotates about +z by an angle uniform in ``angle_range`` (radians)."""

    angle_range: tuple[float, float] = (-np.pi / 4, np.pi / 4)

    def __call__(self, sample: FrameSample, rng: np.random.Generator) -> FrameSample:
        return rotate(sample, float(rng.uniform(*self.angle_range)))


@dataclass(frozen=True)
class GlobalScaling:
    """Scales about the origin by a factor uniform in ``scale_range``."""

    scale_range: tuple[float, float] = (0.95, 1.05)

    def __call__(self, sample: FrameSample, rng: np.random.Generator) -> FrameSample:
        return scale(sample, float(rng.uniform(*self.scale_range)))


@dataclass(frozen=True)
class GlobalTranslation:
    """Translates by normal noise with per-axis standard deviation ``std`` (metres)."""

    std: tuple[float, float, float] = (0.2, 0.2, 0.2)

    def __call__(self, sample: FrameSample, rng: np.random.Generator) -> FrameSample:
        return translate(sample, rng.normal(0.0, self.std, 3))


@dataclass(frozen=True)
class ShufflePoints:
    """Permutes the points (hard voxelization keeps the first points of a voxel, so the order
    matters to it)."""

    def __call__(self, sample: FrameSample, rng: np.random.Generator) -> FrameSample:
        return sample.replace(points=np.take(sample.points, rng.permutation(sample.num_points), axis=0))
