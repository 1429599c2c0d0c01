"""Rotated-box geometry on ``[x, y, z, dx, dy, dz, heading]`` boxes (see ``Boxes3D``).

Public: ``boxes_iou_bev``, ``boxes_iou_3d`` (exact rotated-rectangle overlap, pairwise),
``nms_bev`` (greedy, rotated BEV IoU), ``circle_nms`` (greedy, centre distance) and
``points_in_boxes``. Each has a pure-PyTorch reference (``*_reference``) that follows
csrc/common/box_geometry.h step by step.

Conventions: IoU is 0 for a pair whose union is 0 (degenerate boxes). NMS suppresses a box when
its IoU with a kept, higher-scoring box is strictly greater than the threshold; ties in score keep
input order (stable sort). Points on a box face are inside (closed box).
"""

from __future__ import annotations

import torch

from pointformer.ops import _library
from pointformer.structures.boxes import Boxes3D

# Room for the clipped polygon; see kMaxPolygon in csrc/common/box_geometry.h.
MAX_POLYGON = 16


def _as_tensor(boxes: Boxes3D | torch.Tensor, name: str, min_cols: int = 7) -> torch.Tensor:
    t = boxes.tensor if isinstance(boxes, Boxes3D) else boxes
    if t.dim() != 2 or t.shape[1] < min_cols:
        fields = "[x, y, z, dx, dy, dz, heading, ...]" if min_cols == 7 else "[x, y, ...]"
        raise ValueError(f"{name} must have shape (N, >={min_cols}) as {fields}, got {tuple(t.shape)}")
    if t.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"{name} must be float32 or float64, got {t.dtype}")
    return t


def _iou(boxes_a, boxes_b, is_3d: bool) -> torch.Tensor:
    a = _as_tensor(boxes_a, "boxes_a")
    b = _as_tensor(boxes_b, "boxes_b").to(a.dtype)
    if _library.has_kernel("boxes_iou", a.device):
        return torch.ops.pointformer.boxes_iou(a, b, is_3d)
    return boxes_iou_reference(a, b, is_3d)


def boxes_iou_bev(boxes_a: Boxes3D | torch.Tensor, boxes_b: Boxes3D | torch.Tensor) -> torch.Tensor:
    """``(Na, Nb)`` rotated bird's-eye-view IoU of every pair (not differentiable)."""
    return _iou(boxes_a, boxes_b, False)


def boxes_iou_3d(boxes_a: Boxes3D | torch.Tensor, boxes_b: Boxes3D | torch.Tensor) -> torch.Tensor:
    """``(Na, Nb)`` rotated 3D IoU of every pair: BEV overlap area times z overlap (not
    differentiable)."""
    return _iou(boxes_a, boxes_b, True)


def _sorted_nms(op: str, boxes: torch.Tensor, scores: torch.Tensor, threshold: float, reference) -> torch.Tensor:
    if scores.shape != (boxes.shape[0],):
        raise ValueError(f"scores must have shape ({boxes.shape[0]},), got {tuple(scores.shape)}")
    order = torch.sort(scores, descending=True, stable=True).indices
    ordered = boxes[order]
    if _library.has_kernel(op, boxes.device):
        keep = getattr(torch.ops.pointformer, op)(ordered, float(threshold))
    else:
        keep = reference(ordered, float(threshold))
    return order[keep]


def nms_bev(boxes: Boxes3D | torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression with rotated BEV IoU.

    Args:
        boxes: ``(N, >=7)`` boxes. scores: ``(N,)``.
        iou_threshold: a box is dropped when its IoU with a kept box exceeds this.

    Returns:
        int64 indices of the kept boxes, by descending score.
    """
    return _sorted_nms("nms_bev_sorted", _as_tensor(boxes, "boxes"), scores, iou_threshold, nms_bev_sorted_reference)


def circle_nms(boxes: Boxes3D | torch.Tensor, scores: torch.Tensor, radius: float) -> torch.Tensor:
    """Greedy NMS on bird's-eye-view centre distance (CenterPoint's circle NMS).

    A box is dropped when its centre lies within ``radius`` metres (inclusive) of a kept box's.
    Note: CenterPoint compares its ``min_radius`` setting with the *squared* distance, so its
    ``min_radius = r`` corresponds to ``radius = sqrt(r)`` here.

    Returns:
        int64 indices of the kept boxes, by descending score.
    """
    t = _as_tensor(boxes, "boxes", min_cols=2)
    return _sorted_nms("circle_nms_sorted", t, scores, radius, circle_nms_sorted_reference)


def points_in_boxes(points: torch.Tensor, boxes: Boxes3D | torch.Tensor) -> torch.Tensor:
    """``(N, M)`` bool: whether point i (x, y, z in its first three columns) lies in box j."""
    b = _as_tensor(boxes, "boxes")
    if points.dim() != 2 or points.shape[1] < 3:
        raise ValueError(f"points must have shape (N, >=3) with x, y, z first, got {tuple(points.shape)}")
    p = points.to(b.dtype)
    if _library.has_kernel("points_in_boxes", p.device):
        return torch.ops.pointformer.points_in_boxes(p, b)
    return points_in_boxes_reference(p, b)


# --- pure-PyTorch references -------------------------------------------------------------------


def _cross3(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """(b - a) x (c - a) for (..., 2) points."""
    return (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0])


def _bev_corners(boxes: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
    """``(P, 4, 2)`` corners (rear-right, front-right, front-left, rear-left) relative to ``origin``."""
    cx = boxes[:, 0] - origin[:, 0]
    cy = boxes[:, 1] - origin[:, 1]
    hx, hy = boxes[:, 3] / 2, boxes[:, 4] / 2
    c, s = torch.cos(boxes[:, 6]), torch.sin(boxes[:, 6])
    lx = torch.stack([-hx, hx, hx, -hx], dim=1)
    ly = torch.stack([-hy, -hy, hy, hy], dim=1)
    x = cx[:, None] + lx * c[:, None] - ly * s[:, None]
    y = cy[:, None] + lx * s[:, None] + ly * c[:, None]
    return torch.stack([x, y], dim=2)


def _clip(poly: torch.Tensor, count: torch.Tensor, a: torch.Tensor, b: torch.Tensor):
    """One Sutherland-Hodgman step for a batch of convex polygons ``(P, K, 2)`` with ``count``
    vertices each: keeps the part left of the directed edge a -> b ``(P, 2)``."""
    num, k = poly.shape[:2]
    idx = torch.arange(k, device=poly.device)
    valid = idx[None] < count[:, None]
    nxt = torch.where(idx[None] + 1 < count[:, None], idx[None] + 1, torch.zeros_like(idx[None]))
    q = poly.gather(1, nxt[..., None].expand(-1, -1, 2))
    dp = _cross3(a[:, None], b[:, None], poly)
    dq = _cross3(a[:, None], b[:, None], q)
    p_in, q_in = dp >= 0, dq >= 0
    emit_p = valid & p_in
    emit_x = valid & (p_in != q_in)
    t = torch.where(emit_x, dp / torch.where(emit_x, dp - dq, torch.ones_like(dp)), torch.zeros_like(dp))
    crossing = poly + t[..., None] * (q - poly)
    candidates = torch.stack([poly, crossing], dim=2).reshape(num, 2 * k, 2)
    flags = torch.stack([emit_p, emit_x], dim=2).reshape(num, 2 * k)
    position = torch.cumsum(flags.long(), dim=1) - 1
    flags = flags & (position < MAX_POLYGON)
    out_k = min(2 * k, MAX_POLYGON)
    out = poly.new_zeros(num, out_k, 2)
    rows = torch.arange(num, device=poly.device)[:, None].expand(-1, 2 * k)
    out[rows[flags], position[flags]] = candidates[flags]
    return out, flags.sum(dim=1)


def _polygon_area(poly: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    k = poly.shape[1]
    idx = torch.arange(k, device=poly.device)
    valid = idx[None] < count[:, None]
    nxt = torch.where(idx[None] + 1 < count[:, None], idx[None] + 1, torch.zeros_like(idx[None]))
    q = poly.gather(1, nxt[..., None].expand(-1, -1, 2))
    terms = poly[..., 0] * q[..., 1] - q[..., 0] * poly[..., 1]
    return torch.where(valid, terms, torch.zeros_like(terms)).sum(dim=1).abs() / 2


def bev_overlap_reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(P,)`` BEV intersection areas of paired boxes ``a[i]``, ``b[i]`` (``(P, >=7)`` each)."""
    ra = torch.sqrt(a[:, 3] ** 2 + a[:, 4] ** 2) / 2
    rb = torch.sqrt(b[:, 3] ** 2 + b[:, 4] ** 2) / 2
    near = (a[:, 0] - b[:, 0]) ** 2 + (a[:, 1] - b[:, 1]) ** 2 <= (ra + rb) ** 2
    proper = (a[:, 3] > 0) & (a[:, 4] > 0) & (b[:, 3] > 0) & (b[:, 4] > 0)
    poly = _bev_corners(a, a[:, :2])
    edges = _bev_corners(b, a[:, :2])
    count = torch.full((a.shape[0],), 4, dtype=torch.int64, device=a.device)
    for e in range(4):
        poly, count = _clip(poly, count, edges[:, e], edges[:, (e + 1) % 4])
    area = torch.where(count >= 3, _polygon_area(poly, count), torch.zeros_like(a[:, 0]))
    return torch.where(near & proper, area, torch.zeros_like(area))


def boxes_iou_reference(a: torch.Tensor, b: torch.Tensor, is_3d: bool) -> torch.Tensor:
    """Pure-PyTorch pairwise IoU ``(Na, Nb)``."""
    na, nb = a.shape[0], b.shape[0]
    pa = a[:, None, :7].expand(na, nb, 7).reshape(-1, 7)
    pb = b[None, :, :7].expand(na, nb, 7).reshape(-1, 7)
    inter = bev_overlap_reference(pa, pb)
    vol_a, vol_b = pa[:, 3] * pa[:, 4], pb[:, 3] * pb[:, 4]
    if is_3d:
        top = torch.minimum(pa[:, 2] + pa[:, 5] / 2, pb[:, 2] + pb[:, 5] / 2)
        bottom = torch.maximum(pa[:, 2] - pa[:, 5] / 2, pb[:, 2] - pb[:, 5] / 2)
        inter = inter * (top - bottom).clamp(min=0)
        vol_a, vol_b = vol_a * pa[:, 5], vol_b * pb[:, 5]
    union = vol_a + vol_b - inter
    iou = torch.where(union > 0, inter / torch.where(union > 0, union, torch.ones_like(union)), torch.zeros_like(union))
    return iou.reshape(na, nb)


def _greedy_keep(suppress: torch.Tensor) -> torch.Tensor:
    """Greedy pass over an ``(N, N)`` suppression matrix in priority order."""
    n = suppress.shape[0]
    suppress = torch.triu(suppress, diagonal=1)
    removed = torch.zeros(n, dtype=torch.bool, device=suppress.device)
    keep = torch.zeros(n, dtype=torch.bool, device=suppress.device)
    for i in range(n):
        if not removed[i]:
            keep[i] = True
            removed |= suppress[i]
    return keep


# The reference materializes ~2 KB per box pair: the suppression matrix is built in row chunks.
REFERENCE_MAX_PAIRS = 1_000_000


def nms_bev_sorted_reference(boxes: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """``(N,)`` bool keep mask for boxes already in priority order."""
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.bool, device=boxes.device)
    rows = max(1, REFERENCE_MAX_PAIRS // n)
    suppress = torch.cat([boxes_iou_reference(chunk, boxes, False) > iou_threshold for chunk in boxes.split(rows)])
    return _greedy_keep(suppress)


def circle_nms_sorted_reference(boxes: torch.Tensor, radius: float) -> torch.Tensor:
    """``(N,)`` bool keep mask for boxes (centres in columns 0, 1) already in priority order."""
    d = boxes[:, None, :2] - boxes[None, :, :2]
    r = torch.tensor(radius, dtype=boxes.dtype)
    return _greedy_keep(d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1] <= r * r)


def points_in_boxes_reference(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Pure-PyTorch ``(N, M)`` point-in-box mask."""
    p = points[:, None, :3]
    b = boxes[None, :, :7]
    c, s = torch.cos(b[..., 6]), torch.sin(b[..., 6])
    dx, dy = p[..., 0] - b[..., 0], p[..., 1] - b[..., 1]
    local_x = dx * c + dy * s
    local_y = -dx * s + dy * c
    inside_z = (p[..., 2] - b[..., 2]).abs() <= b[..., 5] / 2
    return inside_z & (local_x.abs() <= b[..., 3] / 2) & (local_y.abs() <= b[..., 4] / 2)


@_library.register_fake("boxes_iou")
def _boxes_iou_fake(boxes_a, boxes_b, is_3d):
    return boxes_a.new_empty(boxes_a.shape[0], boxes_b.shape[0])


@_library.register_fake("nms_bev_sorted")
def _nms_bev_sorted_fake(boxes, iou_threshold):
    return boxes.new_empty(boxes.shape[0], dtype=torch.bool)


@_library.register_fake("circle_nms_sorted")
def _circle_nms_sorted_fake(boxes, radius):
    return boxes.new_empty(boxes.shape[0], dtype=torch.bool)


@_library.register_fake("points_in_boxes")
def _points_in_boxes_fake(points, boxes):
    return points.new_empty(points.shape[0], boxes.shape[0], dtype=torch.bool)
