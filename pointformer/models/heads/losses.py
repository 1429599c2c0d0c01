"""Losses of the center head: gaussian focal loss, weighted L1, and the paired rotated 3D IoU target."""

from __future__ import annotations

import torch

from pointformer.ops.boxes import bev_overlap_reference

# Predicted probabilities are kept this far from 0 and 1 so that log() stays finite (CenterPoint's
# clamped sigmoid).
PROB_CLAMP = 1e-4
_LOG_EPS = 1e-12


def clamped_sigmoid(logits: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(logits).clamp(PROB_CLAMP, 1 - PROB_CLAMP)


def gaussian_focal_loss(
    prob: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, gamma: float = 4.0, normalizer: float = 1.0
) -> torch.Tensor:
    """CenterNet's focal loss on gaussian heatmaps, summed and divided by ``normalizer``.

    Cells where ``target == 1`` are positives: ``-log(p) (1 - p)^alpha``. Every other cell is a negative
    weighted down near the peaks: ``-log(1 - p) p^alpha (1 - target)^gamma``.

    Args:
        prob: predicted probabilities (any shape), already clamped away from 0 and 1.
        target: same shape, in [0, 1].
    """
    pos = target.eq(1)
    pos_loss = -torch.log(prob + _LOG_EPS) * (1 - prob).pow(alpha)
    neg_loss = -torch.log(1 - prob + _LOG_EPS) * prob.pow(alpha) * (1 - target).pow(gamma)
    loss = torch.where(pos, pos_loss, neg_loss)
    return loss.sum() / normalizer


def weighted_l1_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, normalizer) -> torch.Tensor:
    """``sum(|pred - target| * weight) / normalizer``; NaN targets (unknown velocities) get no weight."""
    known = ~torch.isnan(target)
    diff = torch.where(known, (pred - torch.where(known, target, torch.zeros_like(target))).abs(), 0.0)
    return (diff * weight).sum() / normalizer


def paired_iou_3d(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(N,)`` rotated 3D IoU of ``a[i]`` with ``b[i]`` (``(N, >=7)`` boxes each; not differentiable).

    Only the N aligned pairs are computed (``boxes_iou_3d`` would build the N x N matrix), with the
    vectorised polygon clipping of ``pointformer.ops.boxes``.
    """
    a = a[:, :7].detach().float()
    b = b[:, :7].detach().float()
    inter_bev = bev_overlap_reference(a, b)
    top = torch.minimum(a[:, 2] + a[:, 5] / 2, b[:, 2] + b[:, 5] / 2)
    bottom = torch.maximum(a[:, 2] - a[:, 5] / 2, b[:, 2] - b[:, 5] / 2)
    inter = inter_bev * (top - bottom).clamp(min=0)
    union = a[:, 3] * a[:, 4] * a[:, 5] + b[:, 3] * b[:, 4] * b[:, 5] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union)).clamp(0, 1)


def axis_aligned_diou_3d(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(N,)`` distance-IoU of aligned pairs of ``(N, >=6)`` boxes ``[x, y, z, dx, dy, dz, ...]``
    (metres), headings ignored (both boxes treated as axis-aligned), differentiable in both.

    ``DIoU = IoU - |c_pred - c_target|^2 / d^2`` with ``d`` the diagonal of the smallest axis-aligned
    box enclosing both, clamped to [-1, 1]: the box-regression term of OpenPCDet's CenterHead
    (``IOU_REG_LOSS``, ``bbox3d_overlaps_diou``) used by DSVT and ScatterFormer.
    """
    p_lo, p_hi = pred[:, :3] - pred[:, 3:6] / 2, pred[:, :3] + pred[:, 3:6] / 2
    t_lo, t_hi = target[:, :3] - target[:, 3:6] / 2, target[:, :3] + target[:, 3:6] / 2
    inter = (torch.minimum(p_hi, t_hi) - torch.maximum(p_lo, t_lo)).clamp(min=0).prod(dim=1)
    union = pred[:, 3:6].prod(dim=1) + target[:, 3:6].prod(dim=1) - inter
    centre_dist = (pred[:, :3] - target[:, :3]).pow(2).sum(dim=1)
    outer_diag = (torch.maximum(p_hi, t_hi) - torch.minimum(p_lo, t_lo)).clamp(min=0).pow(2).sum(dim=1)
    # The official divides unguarded; the tiny floors only matter for degenerate (zero-size) boxes.
    diou = inter / union.clamp(min=1e-12) - centre_dist / outer_diag.clamp(min=1e-12)
    return diou.clamp(-1.0, 1.0)
