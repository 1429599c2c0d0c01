"""Evaluate a detector on a converted split: inference, the official Waymo table or the nuScenes
summary (``eval.metric``), submission files and pictures (``tools/test.py``; also the evaluation
hook of training)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from pointformer.config import Config
from pointformer.evaluation.waymo import WaymoMetrics
from pointformer.runs.data import build_dataset, inference_loader, subset
from pointformer.runs.inference import (
    FramePredictions,
    evaluate_waymo,
    metric_lines,
    predict,
    summary_scalars,
    waymo_predictions,
)

if TYPE_CHECKING:
    from pointformer.evaluation.nuscenes import NuScenesMetrics, NuScenesResults


@dataclass(frozen=True, eq=False)
class EvaluationResult:
    """Predictions of the evaluated frames and their metrics (None with ``eval.metric: none``);
    ``nuscenes_results``: the official results JSON content (``eval.metric: nuscenes``)."""

    predictions: list[FramePredictions]
    metrics: WaymoMetrics | NuScenesMetrics | None
    scalars: dict[str, float]
    lines: list[str]
    nuscenes_results: NuScenesResults | None = None


def boxes_in_range(boxes: np.ndarray, point_cloud_range) -> np.ndarray:
    """``(M,)`` bool: box centres inside the half-open x/y range (the region a model sees)."""
    r = point_cloud_range
    return (boxes[:, 0] >= r[0]) & (boxes[:, 0] < r[3]) & (boxes[:, 1] >= r[1]) & (boxes[:, 1] < r[4])


def evaluate_model(
    model: torch.nn.Module,
    cfg: Config,
    split: str | None = None,
    device: torch.device | str = "cpu",
    max_frames: int | None = None,
    progress: bool = True,
    fast_path: bool = True,
) -> EvaluationResult:
    """Runs ``model`` over ``split`` (default the config's ``val_split``) and computes
    ``eval.metric``: the Waymo metrics against the frame table's ground truth of the model's
    classes whose centres lie inside the model's range (boxes outside it cannot be detected by
    construction), or the nuScenes metrics against the dataroot's annotations of the evaluated
    samples (the devkit's class ranges; ``pointformer.runs.nuscenes_eval``). ``fast_path``: see
    ``pointformer.runs.inference.predict``."""
    split = split or cfg.data.val_split
    dataset = build_dataset(cfg, split, training=False)
    source = None
    if cfg.eval.metric == "nuscenes":
        from pointformer.runs.nuscenes_eval import nuscenes_source

        source = nuscenes_source(cfg, split)  # before inference: a missing dataroot fails at once
    frames_limit = max_frames if max_frames is not None else cfg.eval.max_frames
    data = subset(dataset, frames_limit)
    loader = inference_loader(data, cfg.eval.batch_size, min(cfg.train.workers, 2))
    predictions = predict(model, loader, device, progress=progress, fast_path=fast_path)
    if source is not None:
        from pointformer.runs.nuscenes_eval import evaluate_nuscenes, sample_tokens

        frames = [dataset.frames[i] for i in range(len(data))]
        ev = evaluate_nuscenes(frames, sample_tokens(cfg.data.root, split, frames), predictions, source)
        return EvaluationResult(predictions, ev.metrics, ev.scalars, ev.lines, ev.results)
    if cfg.eval.metric != "waymo":
        return EvaluationResult(predictions, None, {}, [])
    frames = waymo_frames(dataset.frames, cfg.grid.point_cloud_range, len(data))
    class_names = getattr(model, "module", model).class_names
    metrics = evaluate_waymo(frames, predictions, class_names)
    return EvaluationResult(
        predictions, metrics, summary_scalars(metrics, class_names), metric_lines(metrics, class_names)
    )


def waymo_frames(records, point_cloud_range, count: int) -> list:
    """The first ``count`` frame-table rows (``FrameRecord``) as the Waymo evaluation sees them:
    only the boxes centred inside the model's x/y range."""
    import dataclasses

    fields = ("boxes", "names", "difficulty", "tracking_difficulty", "num_points_in_box", "object_ids",
              "speed_global", "accel_global")  # fmt: skip
    out = []
    for i in range(count):
        rec = records[i]
        keep = boxes_in_range(rec.boxes, point_cloud_range)
        out.append(dataclasses.replace(rec, **{f: getattr(rec, f)[keep] for f in fields}))
    return out


def write_submission(path: str | Path, frames, predictions: list[FramePredictions]) -> Path:
    """The predictions as an official Waymo ``Objects`` ``.bin`` file (atomic write)."""
    from pointformer.data.formats.waymo_objects import write_objects

    write_objects(path, waymo_predictions(frames, predictions))
    return Path(path)


def write_predictions_json(path: str | Path, predictions: list[FramePredictions]) -> Path:
    """``{frame_id: {"boxes": [[x, y, z, dx, dy, dz, heading], ...], "scores": [...], "names": [...]}}``;
    one frame's entry is what ``tools/visualize.py frame --pred`` reads."""
    from pointformer.utils.atomic import write_atomic

    data = {
        p.frame_id: {"boxes": p.boxes[:, :7].tolist(), "scores": p.scores.tolist(), "names": p.names.tolist()}
        for p in predictions
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(data).encode())
    return path
