"""Query-head inference (TransFusionHead): per-query scores -> threshold, post-centre range, IoU
rectification -> NMS for the listed classes -> ``Detections``.

Inference-only (``pointformer.export``'s runtime imports it): no training module is imported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from pointformer.models.heads.settings_dict import SettingsDict
from pointformer.models.outputs import Detections
from pointformer.ops import nms_bev

# center (2, cells), height (1, box top z), log dims (3), sin/cos (2), velocity (2).
QUERY_CODE_SIZE = 10
KIND = "query"


@dataclass(frozen=True)
class QueryDecodeSettings(SettingsDict):
    """What turns a ``TransFusionHead``'s query outputs into detections, as plain numbers.

    Attributes:
        range_min, cell_size: ``(x, y)`` metres: the low corner of the head map and its cell size.
        score_threshold: a detection's score (class probability x heatmap score) must exceed it.
        iou_rectifier: per class ``a``: the score becomes ``score^(1 - a) * iou^a`` (0: unchanged).
        nms_iou_thresholds: per class, the rotated BEV NMS IoU threshold among that class's
            detections, or -1 for none (every detection kept).
        nms_pre_max_size, nms_post_max_size: NMS candidates (best scores) and survivors per class.
        post_center_range: ``(x_min, y_min, z_min, x_max, y_max, z_max)`` metres, or None.
        kind: ``"query"`` (tells the deployment spec which settings these are).
    """

    range_min: tuple[float, float]
    cell_size: tuple[float, float]
    score_threshold: float
    iou_rectifier: tuple[float, ...]
    nms_iou_thresholds: tuple[float, ...]
    nms_pre_max_size: int
    nms_post_max_size: int
    post_center_range: tuple[float, ...] | None
    kind: str = KIND


def query_boxes(code: torch.Tensor, settings: QueryDecodeSettings) -> torch.Tensor:
    """``(B, P, 7|9)`` boxes of ``(B, 8|10, P)`` query codes (centre in cells, box top, log dims)."""
    c = code.float()
    x = c[:, 0] * settings.cell_size[0] + settings.range_min[0]
    y = c[:, 1] * settings.cell_size[1] + settings.range_min[1]
    dims = torch.exp(c[:, 3:6].clamp(max=20.0))
    z = c[:, 2] - dims[:, 2] * 0.5
    heading = torch.atan2(c[:, 6], c[:, 7])
    cols = [x[:, None], y[:, None], z[:, None], dims, heading[:, None]]
    if c.shape[1] >= QUERY_CODE_SIZE:
        cols.append(c[:, 8:10])
    return torch.cat(cols, dim=1).permute(0, 2, 1)


def decode_queries(named: Mapping[str, torch.Tensor], settings: QueryDecodeSettings) -> list[Detections]:
    """Detections per frame.

    Args:
        named: ``query_heatmap`` ``(B, K, P)`` logits, ``query_score`` ``(B, K, P)`` heatmap scores,
            ``query_labels`` ``(B, P)`` int64, ``query_code`` ``(B, 8|10, P)`` and optionally
            ``query_iou`` ``(B, 1, P)`` (``2 IoU - 1``).
        settings: the head's ``QueryDecodeSettings``.

    Returns:
        one ``Detections`` per frame, classes in order, scores descending within each class.
    """
    logits, heat, labels = named["query_heatmap"].float(), named["query_score"].float(), named["query_labels"]
    b, k, _ = logits.shape
    labels = labels.long()
    # The official multiplies by the one-hot of the query's class and takes the max over classes:
    # the query's own class, its probability times its heatmap peak.
    prob = logits.sigmoid().gather(1, labels[:, None]).squeeze(1)
    score = prob * heat.gather(1, labels[:, None]).squeeze(1)  # (B, P)
    boxes = query_boxes(named["query_code"], settings)
    keep = score > settings.score_threshold
    if settings.post_center_range is not None:
        lo = boxes.new_tensor(list(settings.post_center_range[:3]))
        hi = boxes.new_tensor(list(settings.post_center_range[3:6]))
        keep &= ((boxes[..., :3] >= lo) & (boxes[..., :3] <= hi)).all(dim=-1)
    rect = torch.tensor(settings.iou_rectifier, device=score.device)[labels]
    if "query_iou" in named and bool((rect != 0).any()):
        iou = ((named["query_iou"].float()[:, 0] + 1) * 0.5).clamp(0, 1)
        score = score.pow(1 - rect) * iou.pow(rect)
    detections = []
    for bi in range(b):
        out_boxes, out_scores, out_labels = [], [], []
        for ki in range(k):
            mask = keep[bi] & (labels[bi] == ki)
            cand_boxes, cand_scores = boxes[bi][mask], score[bi][mask]
            if cand_boxes.shape[0] == 0:
                continue
            order = cand_scores.argsort(descending=True)
            cand_boxes, cand_scores = cand_boxes[order], cand_scores[order]
            threshold = float(settings.nms_iou_thresholds[ki])
            if threshold >= 0:
                cand_boxes = cand_boxes[: settings.nms_pre_max_size]
                cand_scores = cand_scores[: settings.nms_pre_max_size]
                kept = nms_bev(cand_boxes, cand_scores, threshold)[: settings.nms_post_max_size]
                cand_boxes, cand_scores = cand_boxes[kept], cand_scores[kept]
            out_boxes.append(cand_boxes)
            out_scores.append(cand_scores)
            out_labels.append(torch.full((cand_boxes.shape[0],), ki, dtype=torch.int64, device=boxes.device))
        if out_boxes:
            detections.append(Detections(torch.cat(out_boxes), torch.cat(out_scores), torch.cat(out_labels)))
        else:
            detections.append(Detections.empty(boxes.shape[-1], boxes.device))
    return detections
