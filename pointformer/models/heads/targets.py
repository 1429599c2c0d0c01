"""Center-head training targets: gaussian heatmaps and per-object regression targets, vectorised.

One ``TaskTargets`` per task (class group). Objects are kept as a flat list (no ``max_objects``
padding): object ``i`` lies in frame ``batch_index[i]`` at map cell ``cell_index[i] = iy * W + ix``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pointformer.models.heads.coder import BEVCoder


@dataclass(frozen=True, eq=False)
class TaskTargets:
    """Targets of one task on a ``(B, K, H, W)`` map.

    Attributes:
        heatmap: ``(B, K, H, W)`` float32 in [0, 1]; exactly 1 at each object's centre cell.
        batch_index: ``(N,)`` int64 frame of each assigned object.
        cell_index: ``(N,)`` int64 ``iy * W + ix``, the cell holding the object's centre.
        labels: ``(N,)`` int64 class index within the task.
        box_targets: ``(N, 8|10)`` float32 regression targets (see ``BEVCoder``).
        boxes: ``(N, 7)`` float32 the ground-truth boxes themselves (IoU targets).
    """

    heatmap: torch.Tensor
    batch_index: torch.Tensor
    cell_index: torch.Tensor
    labels: torch.Tensor
    box_targets: torch.Tensor
    boxes: torch.Tensor

    @property
    def num_objects(self) -> int:
        return self.batch_index.shape[0]


def gaussian_radius(height: torch.Tensor, width: torch.Tensor, min_overlap: float) -> torch.Tensor:
    """CenterPoint's (CornerNet's) gaussian radius, in cells, of boxes ``height x width`` cells.

    The smallest of the three roots CornerNet derives for "a corner displaced by r still gives IoU >=
    ``min_overlap``". The formulas keep CornerNet's released form (each root is ``(b + sqrt(b^2 - 4ac)) / 2``
    without the ``/ a``), which CenterPoint and all its descendants use; the trained models depend on it.
    """
    h, w = height, width
    b1 = h + w
    c1 = w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt(b1 * b1 - 4 * c1)) / 2
    b2 = 2 * (h + w)
    c2 = (1 - min_overlap) * w * h
    r2 = (b2 + torch.sqrt(b2 * b2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (h + w)
    c3 = (min_overlap - 1) * w * h
    r3 = (b3 + torch.sqrt(b3 * b3 - 4 * a3 * c3)) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


def draw_gaussians(
    heatmap: torch.Tensor,
    batch_index: torch.Tensor,
    labels: torch.Tensor,
    ix: torch.Tensor,
    iy: torch.Tensor,
    radius: torch.Tensor,
) -> torch.Tensor:
    """Draws one gaussian per object into ``heatmap`` (``(B, K, H, W)``, in place; returned).

    Object ``i`` gets ``exp(-(dx^2 + dy^2) / (2 sigma^2))`` with ``sigma = (2 r + 1) / 6`` on the
    ``(2r+1)^2`` cells around ``(iy, ix)`` (clipped to the map); overlapping gaussians keep the maximum.
    All objects with the same radius are drawn by one ``scatter_reduce`` (radii take few values).
    """
    b, k, h, w = heatmap.shape
    flat = heatmap.view(-1)
    device = heatmap.device
    for r in torch.unique(radius).tolist():
        sel = radius == r
        offsets = torch.arange(-r, r + 1, device=device)
        dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")
        dy, dx = dy.reshape(-1), dx.reshape(-1)
        sigma = (2 * r + 1) / 6
        values = torch.exp(-(dx * dx + dy * dy).to(heatmap.dtype) / (2 * sigma * sigma))
        px = ix[sel, None] + dx[None]
        py = iy[sel, None] + dy[None]
        inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
        base = (batch_index[sel] * k + labels[sel]) * (h * w)
        index = base[:, None] + py * w + px
        vals = values[None].expand_as(index)
        flat.scatter_reduce_(0, index[inside], vals[inside], reduce="amax")
    return heatmap


def build_task_targets(
    boxes: torch.Tensor,
    labels: torch.Tensor,
    box_batch_index: torch.Tensor,
    batch_size: int,
    num_classes: int,
    map_size: tuple[int, int],
    coder: BEVCoder,
    gaussian_overlap: float,
    min_radius: int,
    max_objects: int,
    with_velocity: bool,
) -> TaskTargets:
    """Targets of one task.

    Args:
        boxes: ``(M, 7|9)`` ground truth ``[x, y, z, dx, dy, dz, heading(, vx, vy)]``.
        labels: ``(M,)`` int64 class index within this task, or -1 for boxes of other tasks.
        box_batch_index: ``(M,)`` frame of each box.
        map_size: ``(H, W)`` of the head's maps.

    Boxes whose centre falls outside the map, or with a non-positive BEV size, are not assigned;
    at most ``max_objects`` boxes per frame are kept (the first ones, in input order).
    """
    h, w = map_size
    device = boxes.device
    boxes = boxes.float()
    labels = labels.long()
    batch_index = box_batch_index.long()
    cxy = coder.cell_coords(boxes[:, :2])
    ixy = torch.floor(cxy).long()
    ix, iy = ixy[:, 0], ixy[:, 1]
    keep = (labels >= 0) & (labels < num_classes) & (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
    keep &= (boxes[:, 3] > 0) & (boxes[:, 4] > 0) & (boxes[:, 5] > 0)
    keep &= (batch_index >= 0) & (batch_index < batch_size)
    kept = torch.nonzero(keep).squeeze(1)
    # Cap per frame, keeping input order: a stable sort by frame, then the rank within the frame.
    kept = kept[torch.sort(batch_index[kept], stable=True).indices]
    frame = batch_index[kept]
    counts = torch.bincount(frame, minlength=batch_size)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(kept.shape[0], device=device) - starts[frame]
    kept = kept[rank < max_objects]

    boxes, labels, batch_index, ix, iy = boxes[kept], labels[kept], batch_index[kept], ix[kept], iy[kept]
    size_cells = boxes[:, 3:5] / boxes.new_tensor(coder.cell_size)
    radius = gaussian_radius(size_cells[:, 1], size_cells[:, 0], gaussian_overlap)
    radius = torch.floor(radius).long().clamp(min=int(min_radius))

    heatmap = torch.zeros(batch_size, num_classes, h, w, device=device)
    draw_gaussians(heatmap, batch_index, labels, ix, iy, radius)
    return TaskTargets(
        heatmap=heatmap,
        batch_index=batch_index,
        cell_index=iy * w + ix,
        labels=labels,
        box_targets=coder.encode(boxes, ix, iy, with_velocity),
        boxes=boxes[:, :7],
    )


__all__ = ["TaskTargets", "build_task_targets", "draw_gaussians", "gaussian_radius"]
