"""``FrameSample``: one frame as the training pipeline sees it (numpy, one sample, no batch).

Every loader, filter and augmentation takes a ``FrameSample`` and returns a new one (the dataclass
is frozen; ``replace`` builds the next one). Arrays stay numpy until ``collate_frames`` turns a
list of samples into a torch ``FrameBatch``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

BOX_FIELDS = ("x", "y", "z", "dx", "dy", "dz", "heading", "vx", "vy")


@dataclass(frozen=True, eq=False)
class FrameSample:
    """One frame: points and labelled boxes in the frame's vehicle frame (x forward, y left, z up,
    metres).

    Attributes:
        frame_id: ``<sequence>_<frame:04d>`` of the layout.
        points: ``(N, F)`` float32; columns named by ``point_features``, x, y, z (metres) first.
        point_features: ``F`` column names, e.g. ``("x", "y", "z", "intensity", "elongation")``
            (plus ``"time"``: seconds before the current frame, for multi-sweep samples).
        boxes: ``(M, 9)`` float32 ``[x, y, z, dx, dy, dz, heading, vx, vy]`` (``Boxes3D``
            convention: centre, full extents, heading counter-clockwise from +x in [-pi, pi),
            velocity m/s in the vehicle frame).
        names: ``(M,)`` str class name of each box.
        labels: ``(M,)`` int64 index of the class in the dataset's ``class_names``, -1 for a class
            that is not configured (``ClassFilter`` drops those).
        difficulty: ``(M,)`` int8 detection difficulty (Waymo: 0 unknown, 1 LEVEL_1, 2 LEVEL_2).
        num_points_in_box: ``(M,)`` int32 points in the box as labelled (pasted boxes: the
            database object's points).
        pose: ``(4, 4)`` float64 vehicle -> global of the frame.
        timestamp_micros: frame time (microseconds).
    """

    frame_id: str
    points: np.ndarray
    point_features: tuple[str, ...]
    boxes: np.ndarray
    names: np.ndarray
    labels: np.ndarray
    difficulty: np.ndarray
    num_points_in_box: np.ndarray
    pose: np.ndarray
    timestamp_micros: int

    def __post_init__(self) -> None:
        p, b = self.points, self.boxes
        if p.dtype != np.float32 or p.ndim != 2 or p.shape[1] != len(self.point_features) or p.shape[1] < 3:
            raise ValueError(
                f"FrameSample.points must be float32 (N, {len(self.point_features)}) with x, y, z first, got "
                f"{p.dtype} {p.shape}"
            )
        if b.dtype != np.float32 or b.ndim != 2 or b.shape[1] != len(BOX_FIELDS):
            raise ValueError(f"FrameSample.boxes must be float32 (M, {len(BOX_FIELDS)}), got {b.dtype} {b.shape}")
        m = b.shape[0]
        for name in ("names", "labels", "difficulty", "num_points_in_box"):
            if getattr(self, name).shape != (m,):
                raise ValueError(f"FrameSample.{name} must have shape ({m},), got {getattr(self, name).shape}")

    @property
    def num_points(self) -> int:
        return self.points.shape[0]

    @property
    def num_boxes(self) -> int:
        return self.boxes.shape[0]

    def replace(self, **changes) -> FrameSample:
        """A copy with ``changes`` (``dataclasses.replace``; validated again)."""
        return dataclasses.replace(self, **changes)

    def select_boxes(self, keep: np.ndarray) -> FrameSample:
        """The sample with only the boxes ``keep`` (bool mask ``(M,)`` or indices)."""
        return self.replace(
            boxes=self.boxes[keep],
            names=self.names[keep],
            labels=self.labels[keep],
            difficulty=self.difficulty[keep],
            num_points_in_box=self.num_points_in_box[keep],
        )

    def feature_index(self, name: str) -> int:
        """Column of feature ``name`` in ``points``."""
        try:
            return self.point_features.index(name)
        except ValueError:
            raise KeyError(f"point feature {name!r} not in {self.point_features}") from None
