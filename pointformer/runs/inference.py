"""Inference over a converted split and the official metrics of the predictions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pointformer.data.formats.waymo_objects import WaymoObjects
from pointformer.data.layout import FrameRecord
from pointformer.evaluation.waymo import CLASS_TYPES, WaymoMetrics, evaluate, predictions_from_arrays
from pointformer.models.detector import Detector
from pointformer.models.fastpath import fast_inference_copy
from pointformer.models.outputs import Detections


@dataclass(frozen=True, eq=False)
class FramePredictions:
    """A model's detections of one frame, as numpy.

    Attributes:
        frame_id: the layout's frame id.
        boxes: ``(M, 7|9)`` float32 ``[x, y, z, dx, dy, dz, heading(, vx, vy)]``, vehicle frame.
        scores: ``(M,)`` float32.
        names: ``(M,)`` class names.
    """

    frame_id: str
    boxes: np.ndarray
    scores: np.ndarray
    names: np.ndarray


def to_frame_predictions(frame_ids: Sequence[str], detections: Sequence[Detections], class_names: Sequence[str]):
    """Per-frame numpy predictions from a batch's ``Detections``."""
    names = np.asarray(class_names, np.str_)
    return [
        FramePredictions(
            f,
            d.boxes.detach().float().cpu().numpy(),
            d.scores.detach().float().cpu().numpy(),
            names[d.labels.cpu().numpy()] if len(d) else np.zeros(0, np.str_),
        )
        for f, d in zip(frame_ids, detections, strict=True)
    ]


@torch.no_grad()
def predict(
    model: torch.nn.Module, loader, device: torch.device | str, progress: bool = True, fast_path: bool = True
) -> list[FramePredictions]:
    """Runs ``model`` (eval mode) over ``loader`` (``FrameBatch`` batches in frame order).

    ``fast_path``: a ``Detector`` runs as its eval-mode fast-path copy
    (``pointformer.models.fastpath``: folded BatchNorm, fused head branches, channels-last dense
    maps; the same outputs to float32 rounding); False runs the model itself (eager)."""
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    net = getattr(model, "module", model)
    runner = fast_inference_copy(net) if fast_path and isinstance(net, Detector) else model
    out: list[FramePredictions] = []
    try:
        for batch in tqdm(loader, desc="inference", unit="batch", disable=not progress, dynamic_ncols=True):
            detections = runner(batch.to(device))
            out += to_frame_predictions(batch.frame_ids, detections, net.class_names)
    finally:
        model.train(was_training)
    return out


def waymo_ground_truth(frames: Sequence[FrameRecord], class_names: Sequence[str]) -> WaymoObjects:
    """Ground truth of ``frames`` (frame-table rows), restricted to the evaluated ``class_names``
    (as OpenPCDet and the FlatFormer code evaluate a 3-class model), with the labelled difficulty
    and point counts (``evaluate`` applies the official preparation)."""
    keep = [np.isin(f.names, list(class_names)) for f in frames]
    counts = [int(k.sum()) for k in keep]
    boxes = np.concatenate([f.boxes[k, :7] for f, k in zip(frames, keep, strict=True)] or [np.zeros((0, 7))])
    names = np.concatenate([f.names[k] for f, k in zip(frames, keep, strict=True)] or [np.zeros(0, np.str_)])
    cat = lambda attr, dtype: np.concatenate(  # noqa: E731
        [getattr(f, attr)[k] for f, k in zip(frames, keep, strict=True)] or [np.zeros(0, dtype)]
    ).astype(dtype)
    return WaymoObjects.from_arrays(
        np.repeat(np.asarray([f.sequence for f in frames], np.str_), counts),
        np.repeat(np.asarray([f.timestamp_micros for f in frames], np.int64), counts),
        boxes.astype(np.float64),
        np.asarray([CLASS_TYPES[str(n)] for n in names], np.int8),
        detection_difficulty=cat("difficulty", np.int8),
        tracking_difficulty=cat("tracking_difficulty", np.int8),
        num_lidar_points_in_box=cat("num_points_in_box", np.int32),
    )


def waymo_predictions(frames: Sequence[FrameRecord], predictions: Sequence[FramePredictions]) -> WaymoObjects:
    """The predictions as Waymo ``Objects`` keyed like ``waymo_ground_truth``."""
    by_id = {p.frame_id: p for p in predictions}
    missing = [f.frame_id for f in frames if f.frame_id not in by_id]
    if missing:
        raise ValueError(f"no predictions for frames {missing[:5]} ({len(missing)} missing)")
    preds = [by_id[f.frame_id] for f in frames]
    return predictions_from_arrays(
        [f.sequence for f in frames],
        [f.timestamp_micros for f in frames],
        [p.boxes for p in preds],
        [p.scores for p in preds],
        [p.names for p in preds],
    )


def evaluate_waymo(
    frames: Sequence[FrameRecord], predictions: Sequence[FramePredictions], class_names: Sequence[str]
) -> WaymoMetrics:
    """Official Waymo mAP/mAPH of ``predictions`` on ``frames``."""
    return evaluate(waymo_predictions(frames, predictions), waymo_ground_truth(frames, class_names))


def metric_lines(metrics: WaymoMetrics, class_names: Sequence[str]) -> list[str]:
    """The official-format lines of the evaluated object types (the other types have no ground
    truth here and would read 0)."""
    types = {f"TYPE_{n.upper()}" for n in class_names}
    return [line for line in metrics.lines() if any(f"_{t}_" in line for t in types)]


def summary_scalars(metrics: WaymoMetrics, class_names: Sequence[str]) -> dict[str, float]:
    """``{"<TYPE>_LEVEL_k/mAP": ..., "/mAPH": ...}`` of the evaluated types and their mean."""
    out: dict[str, float] = {}
    for level in (1, 2):
        aph = []
        for n in class_names:
            key = f"OBJECT_TYPE_TYPE_{n.upper()}_LEVEL_{level}"
            ap, h = metrics[key]
            out[f"{n.upper()}_LEVEL_{level}/mAP"] = ap
            out[f"{n.upper()}_LEVEL_{level}/mAPH"] = h
            aph.append(h)
        out[f"MEAN_LEVEL_{level}/mAPH"] = float(np.mean(aph)) if aph else 0.0
    return out
