"""What a frame viewer draws, independent of the dataset and of the drawing backend.

``FrameScene`` holds one frame's points, ground-truth boxes and (optionally) predicted boxes in the
vehicle/LiDAR frame (x forward, y left, z up, metres; boxes ``[x, y, z, dx, dy, dz, heading]`` with
z the box centre and heading counter-clockwise from +x). The helpers here turn it into colours and
line segments; ``open3d_viewer`` (3D, Open3D) and ``bev`` (bird's-eye-view PNG, numpy only) draw
them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

__all__ = [
    "BACKGROUND_DARK",
    "GT_COLOR",
    "PRED_COLOR",
    "FrameScene",
    "box_corners",
    "box_wireframes",
    "colormap",
    "point_colors",
]

# Box colours (RGB in [0, 1]). Chosen outside the point colormap's gamut (viridis never reaches
# G = 1 or R = 1), so a picture's box pixels can be told from its point pixels.
GT_COLOR = (0.2, 1.0, 0.3)
PRED_COLOR = (1.0, 0.3, 0.05)
BACKGROUND_DARK = (0.04, 0.04, 0.06)

# Viridis (perceptually uniform, lightness increasing), sampled at 17 evenly spaced stops; values
# between stops are interpolated linearly, which keeps the lightness monotone.
_VIRIDIS = np.array(
    [
        (0.2670, 0.0049, 0.3294), (0.2823, 0.0950, 0.4173), (0.2788, 0.1755, 0.4834),
        (0.2590, 0.2515, 0.5247), (0.2297, 0.3224, 0.5457), (0.1994, 0.3876, 0.5546),
        (0.1727, 0.4488, 0.5579), (0.1490, 0.5081, 0.5573), (0.1276, 0.5669, 0.5506),
        (0.1206, 0.6258, 0.5335), (0.1579, 0.6838, 0.5017), (0.2461, 0.7389, 0.4520),
        (0.3692, 0.7889, 0.3829), (0.5160, 0.8312, 0.2943), (0.6785, 0.8637, 0.1895),
        (0.8456, 0.8873, 0.0997), (0.9932, 0.9062, 0.1439),
    ],
    dtype=np.float64,
)  # fmt: skip


def colormap(values: np.ndarray) -> np.ndarray:
    """``(N, 3)`` float32 RGB in [0, 1] of ``values`` in [0, 1] (clipped; NaN maps to 0), viridis."""
    t = np.nan_to_num(np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0), nan=0.0)
    pos = t * (len(_VIRIDIS) - 1)
    lo = np.minimum(np.floor(pos).astype(np.int64), len(_VIRIDIS) - 2)
    frac = (pos - lo)[..., None]
    return ((1.0 - frac) * _VIRIDIS[lo] + frac * _VIRIDIS[lo + 1]).astype(np.float32)


def _normalize(values: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
    if value_range is None:
        if values.size == 0:
            return values.astype(np.float64)
        # Percentiles rather than min/max: a few outliers (a tall pole, a retro-reflector) would
        # otherwise squash every other point into one colour.
        value_range = (float(np.percentile(values, 1)), float(np.percentile(values, 99)))
    lo, hi = value_range
    return (values.astype(np.float64) - lo) / max(hi - lo, 1e-6)


@dataclass(frozen=True, eq=False)
class FrameScene:
    """One frame to draw.

    Attributes:
        points: ``(N, C >= 3)`` float32, ``x, y, z`` first (metres, vehicle/LiDAR frame).
        intensity: ``(N,)`` float32 or None (then ``color="intensity"`` is unavailable).
        gt_boxes: ``(M, 7)`` float32 ``[x, y, z, dx, dy, dz, heading]``, z = box centre.
        gt_names: ``M`` class names.
        pred_boxes: ``(K, 7)`` float32, same convention.
        pred_scores: ``(K,)`` float32 confidences.
        pred_names: ``K`` class names.
        title: free text (source and frame), shown as the window title.
    """

    points: np.ndarray
    intensity: np.ndarray | None = None
    gt_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 7), np.float32))
    gt_names: tuple[str, ...] = ()
    pred_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 7), np.float32))
    pred_scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    pred_names: tuple[str, ...] = ()
    title: str = ""

    def __post_init__(self) -> None:
        points = np.ascontiguousarray(self.points, dtype=np.float32)
        if points.ndim != 2 or points.shape[1] < 3:
            raise ValueError(f"points must be (N, C >= 3), got {points.shape}")
        object.__setattr__(self, "points", points)
        if self.intensity is not None:
            intensity = np.asarray(self.intensity, dtype=np.float32).reshape(-1)
            if intensity.shape[0] != points.shape[0]:
                raise ValueError(f"intensity has {intensity.shape[0]} values for {points.shape[0]} points")
            object.__setattr__(self, "intensity", intensity)
        for prefix in ("gt", "pred"):
            boxes = np.asarray(getattr(self, f"{prefix}_boxes"), dtype=np.float32).reshape(-1, 7)
            object.__setattr__(self, f"{prefix}_boxes", boxes)
            names = tuple(str(n) for n in getattr(self, f"{prefix}_names"))
            if not names:
                names = ("",) * len(boxes)
            if len(names) != len(boxes):
                raise ValueError(f"{prefix}_names has {len(names)} entries for {len(boxes)} boxes")
            object.__setattr__(self, f"{prefix}_names", names)
        scores = np.asarray(self.pred_scores, dtype=np.float32).reshape(-1)
        if scores.size == 0:
            scores = np.ones(len(self.pred_boxes), np.float32)
        if scores.shape[0] != len(self.pred_boxes):
            raise ValueError(f"pred_scores has {scores.shape[0]} values for {len(self.pred_boxes)} boxes")
        object.__setattr__(self, "pred_scores", scores)

    @property
    def xyz(self) -> np.ndarray:
        return self.points[:, :3]

    def with_predictions(self, boxes: np.ndarray, scores: np.ndarray | None = None, names=()) -> FrameScene:
        """The same frame with these predicted boxes (replacing any)."""
        return replace(self, pred_boxes=boxes, pred_scores=np.zeros(0) if scores is None else scores, pred_names=names)

    def filter_predictions(self, min_score: float) -> FrameScene:
        keep = self.pred_scores >= min_score
        names = tuple(n for n, k in zip(self.pred_names, keep, strict=True) if k)
        return replace(self, pred_boxes=self.pred_boxes[keep], pred_scores=self.pred_scores[keep], pred_names=names)


def point_colors(
    scene: FrameScene, color: str = "height", value_range: tuple[float, float] | None = None
) -> np.ndarray:
    """``(N, 3)`` float32 RGB in [0, 1]: viridis of the points' z (``"height"``) or intensity.

    ``value_range`` maps to the ends of the colormap; by default the 1st..99th percentiles. For
    intensity the default is taken on ``log1p`` (intensities are heavy-tailed: Waymo's are
    ~0..1 with retro-reflectors far above; nuScenes' 0..255).
    """
    if color == "height":
        values = scene.xyz[:, 2]
    elif color == "intensity":
        if scene.intensity is None:
            raise ValueError("this frame has no intensity channel; use color='height'")
        values = scene.intensity
        if value_range is None:
            values = np.log1p(np.maximum(values, 0.0))
    else:
        raise ValueError(f"color must be 'height' or 'intensity', got {color!r}")
    return colormap(_normalize(values, value_range))


def box_corners(boxes: np.ndarray) -> np.ndarray:
    """``(M, 8, 3)`` corners of ``(M, 7)`` boxes, in ``Boxes3D.corners`` order: bottom face then top
    face, each counter-clockwise from above starting rear-right (front = the box's +x)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    signs = np.array(
        [(-1, -1, -1), (1, -1, -1), (1, 1, -1), (-1, 1, -1), (-1, -1, 1), (1, -1, 1), (1, 1, 1), (-1, 1, 1)],
        dtype=np.float64,
    )
    local = signs[None] * boxes[:, None, 3:6] / 2
    c, s = np.cos(boxes[:, 6])[:, None], np.sin(boxes[:, 6])[:, None]
    x = local[..., 0] * c - local[..., 1] * s
    y = local[..., 0] * s + local[..., 1] * c
    return np.stack([x, y, local[..., 2]], axis=-1) + boxes[:, None, :3]


# Vertices per box: the 8 corners, then the centre (8) and the front face's centre (9).
_EDGES = np.array(
    [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7)],
    dtype=np.int64,
)
# Heading mark: a cross on the front face (corners 1, 2, 5, 6) and a line centre -> front face.
_HEADING = np.array([(1, 6), (2, 5), (8, 9)], dtype=np.int64)


def box_wireframes(boxes: np.ndarray, heading_mark: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Line segments of box wireframes: ``(vertices (V, 3) float64, lines (L, 2) int64)``.

    Each box contributes 10 vertices (8 corners, centre, front-face centre) and 12 edges, plus,
    with ``heading_mark``, 3 heading lines (a cross on the front face and one from the centre to
    the front face). Lines index into ``vertices``.
    """
    corners = box_corners(boxes)
    m = corners.shape[0]
    centre = corners.mean(axis=1, keepdims=True)
    front = corners[:, [1, 2, 5, 6]].mean(axis=1, keepdims=True)
    vertices = np.concatenate([corners, centre, front], axis=1).reshape(-1, 3)
    pattern = np.concatenate([_EDGES, _HEADING]) if heading_mark else _EDGES
    lines = (pattern[None] + 10 * np.arange(m)[:, None, None]).reshape(-1, 2)
    return vertices, lines
