"""Hungarian assignment of a query head's predictions to the ground truth (TransFusion's
``HungarianAssigner3D``), training only.

The cost of query ``i`` for object ``j`` is ``w_cls * focal_cost(p_i[label_j]) + w_reg *
|xy_i - xy_j|_1 / range + w_iou * (-IoU_3d(box_i, box_j))`` where the focal cost is
``-log(p) alpha (1 - p)^gamma + log(1 - p) (1 - alpha) p^gamma`` (the positive minus the negative
focal term) and the centres are normalized by the point-cloud range; the assignment minimizing the
total cost is found by ``scipy.optimize.linear_sum_assignment`` (one query per object; with more
objects than queries, the surplus objects stay unmatched).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy.optimize import linear_sum_assignment

from pointformer.ops import boxes_iou_3d

_EPS = 1e-12


@dataclass(frozen=True, eq=False)
class Assignment:
    """The matching of one frame: ``query[i]`` is matched to object ``gt[i]``; ``iou[i]`` their 3D IoU."""

    query: torch.Tensor
    gt: torch.Tensor
    iou: torch.Tensor


def focal_cost(logits: torch.Tensor, labels: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """``(P, M)`` focal classification cost of ``(P, K)`` query logits for objects of ``(M,)`` labels."""
    p = logits.sigmoid()
    neg = -(1 - p + _EPS).log() * (1 - alpha) * p.pow(gamma)
    pos = -(p + _EPS).log() * alpha * (1 - p).pow(gamma)
    return pos[:, labels] - neg[:, labels]


def hungarian_assign(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    point_cloud_range: tuple[float, ...],
    weights: tuple[float, float, float],
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> Assignment:
    """Matches the queries of one frame.

    Args:
        logits: ``(P, K)`` class logits. boxes: ``(P, >=7)`` decoded query boxes (metres).
        gt_boxes: ``(M, >=7)``; gt_labels: ``(M,)`` int64.
        point_cloud_range: ``(x_min, y_min, z_min, x_max, y_max, z_max)``.
        weights: ``(cls, reg, iou)`` cost weights.
    """
    device = boxes.device
    if gt_boxes.shape[0] == 0 or boxes.shape[0] == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        return Assignment(empty, empty, torch.zeros(0, device=device))
    w_cls, w_reg, w_iou = weights
    with torch.no_grad():
        lo = boxes.new_tensor(point_cloud_range[0:2])
        size = boxes.new_tensor(point_cloud_range[3:5]) - lo
        reg = torch.cdist((boxes[:, :2] - lo) / size, (gt_boxes[:, :2] - lo) / size, p=1)
        iou = boxes_iou_3d(boxes[:, :7].float().contiguous(), gt_boxes[:, :7].float().contiguous())
        cost = w_cls * focal_cost(logits.float(), gt_labels, alpha, gamma) + w_reg * reg - w_iou * iou
        rows, cols = linear_sum_assignment(cost.double().cpu().numpy())
    query = torch.as_tensor(rows, dtype=torch.int64, device=device)
    gt = torch.as_tensor(cols, dtype=torch.int64, device=device)
    return Assignment(query, gt, iou[query, gt])
