"""Center-head inference: dense maps -> rectified scores -> top-k -> boxes -> per-class rotated NMS."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from pointformer.models.heads.coder import BEVCoder
from pointformer.models.heads.settings_dict import SettingsDict
from pointformer.models.outputs import Detections
from pointformer.ops import nms_bev


def rectified_scores(
    heatmap_logits: torch.Tensor,
    iou: torch.Tensor | None,
    score_power: torch.Tensor,
    iou_power: torch.Tensor,
    iou_signed: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(prob, score)``, both ``(B, K, H, W)`` float32.

    ``prob = sigmoid(heatmap)``; with an IoU map ``score = prob^score_power[k] * iou^iou_power[k]``
    (``iou`` clamped to [0, 1], first mapped from [-1, 1] when ``iou_signed``). FlatFormer uses
    ``score_power 1, iou_power 2``; DSVT's rectifier ``alpha_k`` is ``score_power 1 - alpha_k,
    iou_power alpha_k``. Without an IoU map ``score = prob``.
    """
    prob = torch.sigmoid(heatmap_logits.float())
    if iou is None:
        return prob, prob
    q = iou.float()
    if iou_signed:
        q = (q + 1) / 2
    q = q.clamp(0, 1)
    k = prob.shape[1]
    sp = score_power.to(prob).view(1, k, 1, 1)
    ip = iou_power.to(prob).view(1, k, 1, 1)
    return prob, prob.pow(sp) * q.pow(ip)


def decode_task(
    heatmap_logits: torch.Tensor,
    code: torch.Tensor,
    iou: torch.Tensor | None,
    coder: BEVCoder,
    score_power: torch.Tensor,
    iou_power: torch.Tensor,
    score_threshold: float,
    pre_max_sizes: Sequence[int],
    post_max_sizes: Sequence[int],
    nms_iou_thresholds: Sequence[float],
    post_center_range: Sequence[float] | None,
    iou_signed: bool = False,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Detections of one task, per frame.

    Args:
        heatmap_logits: ``(B, K, H, W)``. code: ``(B, 8|10, H, W)`` regression maps in ``BEVCoder`` order.
        iou: ``(B, 1, H, W)`` predicted IoU, or None.
        score_power, iou_power: ``(K,)`` per-class exponents (see ``rectified_scores``).
        score_threshold: cells whose heatmap probability (before IoU rectification, as CenterPoint's
            coder and OpenPCDet do) is below it are dropped.
        pre_max_sizes, post_max_sizes, nms_iou_thresholds: per class: the best ``pre_max`` cells by
            rectified score go to rotated BEV NMS with the class's threshold; ``post_max`` survive.
        post_center_range: ``(x_min, y_min, z_min, x_max, y_max, z_max)``: boxes whose centre lies
            outside are dropped; None keeps all.

    Returns:
        per frame ``(boxes (M, 7|9), scores (M,), labels (M,) int64 class index within the task)``,
        classes in order, scores descending within each class.
    """
    prob, score = rectified_scores(heatmap_logits, iou, score_power, iou_power, iou_signed)
    b, k, h, w = score.shape
    device = score.device
    score = torch.where(prob >= score_threshold, score, torch.full_like(score, -1.0))
    n = min(max(pre_max_sizes), h * w)
    top_score, top_cell = score.view(b, k, h * w).topk(n, dim=2)
    pre_max = torch.tensor(list(pre_max_sizes), device=device)
    valid = (torch.arange(n, device=device)[None, None] < pre_max[None, :, None]) & (top_score >= 0)

    c = code.shape[1]
    gathered = code.float().flatten(2).gather(2, top_cell.view(b, 1, k * n).expand(-1, c, -1))
    gathered = gathered.view(b, c, k, n).permute(0, 2, 3, 1)
    boxes = coder.decode(gathered, top_cell % w, torch.div(top_cell, w, rounding_mode="floor"))
    if post_center_range is not None:
        lo = boxes.new_tensor(list(post_center_range[:3]))
        hi = boxes.new_tensor(list(post_center_range[3:6]))
        valid &= ((boxes[..., :3] >= lo) & (boxes[..., :3] <= hi)).all(dim=-1)

    results = []
    for bi in range(b):
        frame_boxes, frame_scores, frame_labels = [], [], []
        for ki in range(k):
            mask = valid[bi, ki]
            cand_boxes, cand_scores = boxes[bi, ki][mask], top_score[bi, ki][mask]
            if cand_boxes.shape[0] == 0:
                continue
            keep = nms_bev(cand_boxes, cand_scores, float(nms_iou_thresholds[ki]))[: int(post_max_sizes[ki])]
            frame_boxes.append(cand_boxes[keep])
            frame_scores.append(cand_scores[keep])
            frame_labels.append(torch.full((keep.shape[0],), ki, dtype=torch.int64, device=device))
        if frame_boxes:
            results.append((torch.cat(frame_boxes), torch.cat(frame_scores), torch.cat(frame_labels)))
        else:
            d = boxes.shape[-1]
            results.append(
                (boxes.new_zeros(0, d), boxes.new_zeros(0), torch.zeros(0, dtype=torch.int64, device=device))
            )
    return results


@dataclass(frozen=True)
class DecodeSettings(SettingsDict):
    """What turns a ``CenterHead``'s dense outputs into detections, as plain numbers (the head's
    ``decode_settings()``; ``pointformer.export`` writes it to JSON for the deployed runtime).

    Attributes:
        task_sizes: classes per task; labels are numbered over the tasks in order.
        range_min, cell_size: the ``BEVCoder`` of the head map, ``(x, y)`` metres.
        score_power, iou_power: per class over all tasks (see ``rectified_scores``).
        with_iou, iou_signed: the IoU branch is used for rescoring; it predicts ``2 IoU - 1``.
        score_threshold, pre_max_sizes, post_max_sizes, nms_iou_thresholds, post_center_range:
            see ``decode_task`` (per class where a sequence).
    """

    task_sizes: tuple[int, ...]
    range_min: tuple[float, float]
    cell_size: tuple[float, float]
    score_power: tuple[float, ...]
    iou_power: tuple[float, ...]
    with_iou: bool
    iou_signed: bool
    score_threshold: float
    pre_max_sizes: tuple[int, ...]
    post_max_sizes: tuple[int, ...]
    nms_iou_thresholds: tuple[float, ...]
    post_center_range: tuple[float, ...] | None


def decode_detections(
    maps: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]], settings: DecodeSettings
) -> list[Detections]:
    """Detections per frame from the dense outputs of every task.

    Args:
        maps: per task ``(heatmap logits (B, K_t, H, W), code (B, 8|10, H, W), iou (B, 1, H, W) or None)``.
        settings: the head's ``DecodeSettings``.

    Returns:
        one ``Detections`` per frame, labels over all tasks' classes.
    """
    coder = BEVCoder(tuple(settings.range_min), tuple(settings.cell_size))
    per_task, start = [], 0
    for (heatmap, code, iou), size in zip(maps, settings.task_sizes, strict=True):
        sl = slice(start, start + size)
        per_task.append(
            decode_task(
                heatmap, code, iou if settings.with_iou else None, coder,
                torch.tensor(settings.score_power[sl], device=heatmap.device),
                torch.tensor(settings.iou_power[sl], device=heatmap.device), settings.score_threshold,
                settings.pre_max_sizes[sl], settings.post_max_sizes[sl], settings.nms_iou_thresholds[sl],
                settings.post_center_range, settings.iou_signed,
            )
        )  # fmt: skip
        start += size
    offsets = [sum(settings.task_sizes[:t]) for t in range(len(settings.task_sizes))]
    detections = []
    for b in range(maps[0][0].shape[0]):
        frame = [task[b] for task in per_task]
        detections.append(
            Detections(
                boxes=torch.cat([f[0] for f in frame]).float(),
                scores=torch.cat([f[1] for f in frame]).float(),
                labels=torch.cat([f[2] + offsets[t] for t, f in enumerate(frame)]),
            )
        )
    return detections
