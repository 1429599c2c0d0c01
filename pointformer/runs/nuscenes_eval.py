"""nuScenes evaluation of a detector's predictions on a converted split (``eval.metric: nuscenes``).

The converted layout keeps nuScenes' frames: points and boxes in each keyframe's LIDAR_TOP frame,
the row's ``pose`` the LIDAR_TOP -> global matrix and its ``sample_token`` column the sample
(``pointformer.data.convert.nuscenes``). Predictions (``[x, y, z, l, w, h, yaw, vx, vy]`` in that
frame, velocity in m/s) therefore go into the official results JSON with
``results_from_lidar_boxes`` and the row's pose, no ego-frame step in between; the attributes are
the devkit's customary defaults from the global velocity. The metrics are
``pointformer.evaluation.nuscenes.evaluate`` (equal to the devkit's ``DetectionEval``,
``detection_cvpr_2019``) against the annotations of the raw dataroot, which the conversion
records in ``meta.json`` (``dataset.nuscenes_dataroot`` / ``nuscenes_version`` /
``nuscenes_eval_split`` in a config override them).

Two departures from submitting the file to the devkit, both only where the devkit would refuse:

* evaluating a part of a split (``eval.max_frames``, ``--max-frames``): the ground truth is that of
  the evaluated samples only (the devkit requires every sample of the split);
* results without any box (an untrained model): AP 0 and TP errors 1 (NDS 0) instead of the
  devkit's assertion.

A split without annotations (``v1.0-test``) gives the results only (no metrics).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pointformer.config import Config, ConfigError
from pointformer.data.formats.nuscenes_tables import DETECTION_NAMES
from pointformer.data.layout import FrameRecord, read_frame_columns, read_meta
from pointformer.evaluation.nuscenes import (
    TP_METRIC_LABELS,
    TP_METRICS,
    UNDEFINED_TP,
    DetectionBoxes,
    DetectionConfig,
    NuScenesGroundTruth,
    NuScenesMetrics,
    NuScenesResults,
    evaluate,
    load_ground_truth,
    results_from_lidar_boxes,
)
from pointformer.runs.inference import FramePredictions


@dataclass(frozen=True)
class NuScenesSource:
    """Where the annotations of an evaluated split are: ``dataroot/version`` tables, devkit
    ``split`` (predefined, or one of ``splits.json``)."""

    dataroot: Path
    version: str
    split: str


def nuscenes_source(cfg: Config, split: str) -> NuScenesSource:
    """The annotations that the converted ``split`` of ``cfg.data.root`` is evaluated against
    (see the module docstring).

    Raises:
        ConfigError: not a converted nuScenes layout, classes that are not nuScenes detection
            classes, no dataroot recorded or configured, or no ``<dataroot>/<version>`` folder.
    """
    meta = read_meta(cfg.data.root)
    where = cfg.path or "<config>"
    if meta.get("dataset") != "nuscenes":
        raise ConfigError(
            f"{where}: eval.metric nuscenes needs a converted nuScenes dataset; {cfg.data.root} holds "
            f"{meta.get('dataset')!r} (tools/create_data.py --dataset nuscenes)"
        )
    unknown = [n for n in cfg.class_names if n not in DETECTION_NAMES]
    if unknown:
        raise ConfigError(
            f"{where}: eval.metric nuscenes evaluates the detection classes {list(DETECTION_NAMES)}; "
            f"dataset.class_names has {unknown}"
        )
    dataroot = cfg.data.nuscenes_dataroot or meta.get("dataroot")
    if not dataroot:
        raise ConfigError(
            f"{where}: eval.metric nuscenes reads the annotations from the raw nuScenes dataroot, which "
            f"{cfg.data.root}/meta.json does not record; set dataset.nuscenes_dataroot=PATH"
        )
    version = cfg.data.nuscenes_version or meta.get("version")
    if not version:
        raise ConfigError(f"{where}: no nuScenes version in {cfg.data.root}/meta.json; set dataset.nuscenes_version")
    if not (Path(dataroot) / version).is_dir():
        raise ConfigError(
            f"{where}: eval.metric nuscenes: no {Path(dataroot) / version} (the annotations of the converted data); "
            "set dataset.nuscenes_dataroot / nuscenes_version"
        )
    eval_split = cfg.data.nuscenes_eval_split if cfg.data.nuscenes_eval_split and split == cfg.data.val_split else split
    return NuScenesSource(Path(dataroot), str(version), str(eval_split))


@functools.lru_cache(maxsize=1)
def _ground_truth(dataroot: str, version: str, split: str) -> NuScenesGroundTruth:
    # Training evaluates the same split every few epochs; the trainval annotation table is large.
    return load_ground_truth(dataroot, version, split)


def ground_truth(source: NuScenesSource) -> NuScenesGroundTruth:
    """The split's ground truth (``load_ground_truth``), cached for the last source."""
    return _ground_truth(str(source.dataroot.resolve()), source.version, source.split)


def restrict_ground_truth(gt: NuScenesGroundTruth, tokens: Sequence[str]) -> NuScenesGroundTruth:
    """``gt`` of the samples ``tokens`` only (in ``gt``'s sample order); ``gt`` itself when they
    are all of its samples. Raises ValueError for a token outside the split."""
    if set(tokens) == set(gt.sample_tokens):
        return gt
    index = {t: i for i, t in enumerate(gt.sample_tokens)}
    outside = [t for t in tokens if t not in index]
    if outside:
        raise ValueError(f"{len(outside)} evaluated samples are not in split {gt.split!r} (e.g. {outside[0]!r})")
    keep = np.array(sorted({index[t] for t in tokens}), np.int64)
    b = gt.boxes
    counts = b.counts()[keep]
    idx = np.concatenate([np.arange(b.offsets[s], b.offsets[s + 1]) for s in keep.tolist()] or [np.zeros(0, np.int64)])
    idx = idx.astype(np.int64)
    boxes = DetectionBoxes(
        sample_tokens=tuple(gt.sample_tokens[s] for s in keep.tolist()),
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        translation=b.translation[idx],
        size=b.size[idx],
        rotation=b.rotation[idx],
        velocity=b.velocity[idx],
        names=b.names[idx],
        attributes=b.attributes[idx],
        scores=b.scores[idx],
        num_pts=b.num_pts[idx],
    )
    racks = {new: gt.racks[old] for new, old in enumerate(keep.tolist()) if old in gt.racks}
    return NuScenesGroundTruth(boxes, gt.ego_translation[keep], racks, gt.split, gt.predefined)


def sample_tokens(root: str | Path, split: str, frames: Sequence[FrameRecord]) -> list[str]:
    """The sample token of each of ``frames`` (rows of ``split``'s frame table)."""
    columns = read_frame_columns(root, split, ["frame_id", "sample_token"])
    token_of = dict(zip(columns["frame_id"], columns["sample_token"], strict=True))
    return [token_of[f.frame_id] for f in frames]


def nuscenes_results(
    frames: Sequence[FrameRecord],
    tokens: Sequence[str],
    predictions: Sequence[FramePredictions],
    max_boxes_per_sample: int = DetectionConfig.max_boxes_per_sample,
) -> NuScenesResults:
    """The official results of ``predictions`` on ``frames`` (sample ``tokens``): each frame's
    boxes moved by its LIDAR_TOP -> global ``pose``; the ``max_boxes_per_sample`` highest-scoring
    boxes of a frame (the devkit's limit); a model without velocity reports ``(0, 0)`` m/s."""
    by_id = {p.frame_id: p for p in predictions}
    missing = [f.frame_id for f in frames if f.frame_id not in by_id]
    if missing:
        raise ValueError(f"no predictions for frames {missing[:5]} ({len(missing)} missing)")
    samples = []
    for rec, token in zip(frames, tokens, strict=True):
        p = by_id[rec.frame_id]
        boxes = np.asarray(p.boxes, np.float64)
        if boxes.shape[1] == 7:
            boxes = np.concatenate([boxes, np.zeros((len(boxes), 2))], axis=1)
        order = np.argsort(-np.asarray(p.scores, np.float64), kind="stable")[:max_boxes_per_sample]
        samples.append((token, boxes[order, :9], p.scores[order], p.names[order], rec.pose))
    return results_from_lidar_boxes(samples)


def empty_metrics(results: NuScenesResults, config: DetectionConfig | None = None) -> NuScenesMetrics:
    """The metrics of results without any box: AP 0, TP errors 1 (NaN where a class defines none)."""
    cfg = config or DetectionConfig()
    aps = {c: dict.fromkeys(cfg.dist_ths, 0.0) for c in cfg.class_names}
    tps = {c: {m: float("nan") if m in UNDEFINED_TP.get(c, ()) else 1.0 for m in TP_METRICS} for c in cfg.class_names}
    return NuScenesMetrics(aps, tps, 0.0, cfg, dict(results.meta), {})


def summary_scalars(metrics: NuScenesMetrics) -> dict[str, float]:
    """``NDS``, ``mAP``, the mean TP errors (``mATE``...) and ``<class>/AP`` (TensorBoard scalars)."""
    out = {"NDS": metrics.nd_score, "mAP": metrics.mean_ap}
    out.update({TP_METRIC_LABELS[m]: e for m, e in metrics.tp_errors.items()})
    out.update({f"{c}/AP": ap for c, ap in metrics.mean_dist_aps.items()})
    return {k: float(v) for k, v in out.items()}


@dataclass(frozen=True, eq=False)
class NuScenesEvaluation:
    """The results file's content, its metrics (None for a split without annotations) and the
    printed summary lines."""

    results: NuScenesResults
    metrics: NuScenesMetrics | None
    scalars: dict[str, float]
    lines: list[str]


def evaluate_nuscenes(
    frames: Sequence[FrameRecord],
    tokens: Sequence[str],
    predictions: Sequence[FramePredictions],
    source: NuScenesSource,
) -> NuScenesEvaluation:
    """The devkit's metrics of ``predictions`` on ``frames`` (see the module docstring)."""
    results = nuscenes_results(frames, tokens, predictions)
    gt = ground_truth(source)
    partial = set(tokens) != set(gt.sample_tokens)
    gt = restrict_ground_truth(gt, tokens)
    notes = []
    if len(gt.boxes) == 0:
        return NuScenesEvaluation(results, None, {}, [
            f"(split {source.split!r} of {source.version} has no annotations: results only, no metrics)"
        ])  # fmt: skip
    if partial:
        notes.append(f"(ground truth of the {len(tokens)} evaluated samples of the {source.split!r} split only)")
    if len(results.boxes) == 0:
        metrics = empty_metrics(results)
        notes.append("(no predicted box: AP 0 and TP errors 1; the devkit refuses such results)")
    else:
        metrics = evaluate(gt, results)
    return NuScenesEvaluation(results, metrics, summary_scalars(metrics), notes + metrics.summary().splitlines())
