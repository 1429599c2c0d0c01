"""TransFusionHead's training losses (training only: imports scipy through ``hungarian``).

Per frame the queries are matched to the ground truth (``hungarian_assign``; boxes with a
non-positive BEV size are left out, as the official). Then, over the batch:

* ``loss_cls``: sigmoid focal loss (alpha, gamma) of every query's class logits against the one-hot
  of its matched object's class (all zeros for an unmatched query), summed, / max(matches, 1);
* ``loss_bbox``: code-weighted L1 of the matched queries' codes against the encoded objects
  (centre in map cells, box top z, log size, sin/cos heading, velocity), / max(matches, 1);
* ``loss_heatmap``: gaussian focal loss of the dense heatmap against CenterPoint-style gaussian
  targets (``build_task_targets``), / max(peaks, 1);
* ``loss_iou`` (``iou_weight``): L1 of the IoU branch against ``2 IoU - 1`` of the (detached)
  decoded box with its object, over the matched queries whose IoU is non-zero, / their number
  (the DSVT repository's ``calculate_iou_loss_transfusionhead``);
* ``loss_iou_reg`` (``iou_reg_weight``): ``1 - DIoU`` of the decoded box with its object (axis
  aligned, as CenterHead's), over the matched queries, / max(matches, 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pointformer.models.heads.coder import BEVCoder
from pointformer.models.heads.hungarian import hungarian_assign
from pointformer.models.heads.losses import (
    axis_aligned_diou_3d,
    clamped_sigmoid,
    gaussian_focal_loss,
    paired_iou_3d,
    weighted_l1_loss,
)
from pointformer.models.heads.query_decode import query_boxes
from pointformer.models.heads.targets import build_task_targets


def encode_boxes(boxes: torch.Tensor, range_min, cell_size, with_velocity: bool) -> torch.Tensor:
    """``(N, 8|10)`` query-code targets of ``(N, 7|9)`` boxes (the official ``encode_bbox``)."""
    cols = [
        ((boxes[:, 0] - range_min[0]) / cell_size[0])[:, None],
        ((boxes[:, 1] - range_min[1]) / cell_size[1])[:, None],
        (boxes[:, 2] + 0.5 * boxes[:, 5])[:, None],
        boxes[:, 3:6].log(),
        torch.sin(boxes[:, 6:7]),
        torch.cos(boxes[:, 6:7]),
    ]
    if with_velocity:
        cols.append(boxes[:, 7:9] if boxes.shape[1] >= 9 else boxes.new_zeros(boxes.shape[0], 2))
    return torch.cat(cols, dim=1)


def sigmoid_focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Elementwise sigmoid focal loss (OpenPCDet's ``SigmoidFocalClassificationLoss``)."""
    p = logits.sigmoid()
    alpha_w = target * alpha + (1 - target) * (1 - alpha)
    pt = target * (1 - p) + (1 - target) * p
    return alpha_w * pt.pow(gamma) * F.binary_cross_entropy_with_logits(logits, target, reduction="none")


def transfusion_loss(
    head,
    outputs,
    boxes: torch.Tensor,
    labels: torch.Tensor,
    box_batch_index: torch.Tensor,
    batch_size: int,
) -> dict[str, torch.Tensor]:
    """The weighted losses of ``head`` (a ``TransFusionHead``; not imported here, which imports this
    module) for its ``outputs`` (``TransFusionOutputs``), see the module docstring."""
    settings = head.decode_settings()
    boxes = boxes.float()
    labels = labels.long()
    box_batch_index = box_batch_index.long()
    k = head.num_classes
    code = outputs.code().float()  # (B, D, P)
    logits = outputs.heatmap.float().permute(0, 2, 1)  # (B, P, K)
    with torch.no_grad():
        pred_boxes = query_boxes(code.detach(), settings)  # (B, P, 7|9)
    pcr = head.grid.point_cloud_range
    valid = (boxes[:, 3] > 0) & (boxes[:, 4] > 0) & (labels >= 0) & (labels < k)
    match_b, match_q, match_gt, match_iou = [], [], [], []
    for bi in range(batch_size):
        idx = torch.nonzero(valid & (box_batch_index == bi)).squeeze(1)
        a = hungarian_assign(logits[bi].detach(), pred_boxes[bi], boxes[idx], labels[idx], pcr, head.costs,
                             head.focal_alpha, head.focal_gamma)  # fmt: skip
        match_b.append(torch.full_like(a.query, bi))
        match_q.append(a.query)
        match_gt.append(idx[a.gt])
        match_iou.append(a.iou)
    mb, mq, mg = torch.cat(match_b), torch.cat(match_q), torch.cat(match_gt)
    num_pos = max(int(mb.shape[0]), 1)

    target = torch.zeros_like(logits)
    target[mb, mq, labels[mg]] = 1.0
    losses = {}
    cls = sigmoid_focal_loss(logits, target, head.focal_alpha, head.focal_gamma).sum() / num_pos
    losses["loss_cls"] = head.cls_weight * cls

    gt = boxes[mg]
    box_targets = encode_boxes(gt, settings.range_min, settings.cell_size, head.with_velocity)
    pred = code[mb, :, mq]  # (N, D)
    losses["loss_bbox"] = head.bbox_weight * weighted_l1_loss(pred, box_targets, head.code_weights[None], num_pos)

    h, w = head.map_size()
    coder = BEVCoder(settings.range_min, settings.cell_size)
    keep = valid & (box_batch_index >= 0) & (box_batch_index < batch_size)
    heat = build_task_targets(boxes[keep], labels[keep], box_batch_index[keep], batch_size, k, (h, w), coder,
                              head.gaussian_overlap, head.min_radius, 10**9, False).heatmap  # fmt: skip
    num_peaks = max(float(heat.eq(1).sum()), 1.0)
    losses["loss_heatmap"] = head.heatmap_weight * gaussian_focal_loss(
        clamped_sigmoid(outputs.dense_heatmap.float()), heat, normalizer=num_peaks
    )

    if head.iou_weight > 0 or head.iou_reg_weight > 0:
        decoded = query_boxes(pred.t()[None], settings)[0]  # (N, 7|9), differentiable
    if head.iou_weight > 0:
        with torch.no_grad():
            iou_target = paired_iou_3d(decoded.detach(), gt)
        nonzero = iou_target != 0
        iou_pred = outputs.iou.float()[mb, 0, mq]
        n = max(int(nonzero.sum()), 1)
        diff = (iou_pred - (2 * iou_target - 1)).abs()
        losses["loss_iou"] = head.iou_weight * torch.where(nonzero, diff, torch.zeros_like(diff)).sum() / n
    if head.iou_reg_weight > 0:
        diou = axis_aligned_diou_3d(decoded, gt)
        losses["loss_iou_reg"] = head.iou_reg_weight * (1 - diou).sum() / num_pos
    return losses
