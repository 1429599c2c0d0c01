#!/usr/bin/env python
"""Runs the official Waymo detection-metrics TF op on a file of cases; the oracle side of
``tools/crosscheck_waymo.py`` (``make crosscheck-waymo``).

python tools/waymo_official_op.py CASES.npz OUT.npz

Runs in the separate environment that holds ``waymo-open-dataset-tf-2-12-0==1.6.7`` and
TensorFlow 2.13 (numpy < 2), so it imports neither pointformer nor torch: only numpy, TensorFlow
and the official package. Input layout (``pointformer.evaluation.waymo_crosscheck`` writes it):
per-object columns ``pd_*`` / ``gt_*`` of every case concatenated, with ``pd_offsets`` /
``gt_offsets`` ``(C + 1,)`` case boundaries. Output: per case the op's 32 breakdowns of the
official tool's configuration (OBJECT_TYPE and RANGE, LEVEL_1 and LEVEL_2, the 101 cutoffs):
``ap``, ``aph`` ``(C, 32)``; ``pr`` ``(C, 32, 101, 5)`` = precision, recall, TP, FP, FN;
``pr_ha`` ``(C, 32, 101, 2)``; ``sum_ha`` ``(C, 32, 101)`` from ``detection_metrics_state``; and
the breakdown names.

The op takes prepared ground truth; the preparation of the official command-line tool
(``compute_detection_metrics_main``: drop objects with no lidar point, unset difficulty from the
5-point rule) is applied here to the raw columns, before the op.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from waymo_open_dataset import label_pb2  # noqa: E402
from waymo_open_dataset.metrics.ops import py_metrics_ops  # noqa: E402
from waymo_open_dataset.metrics.python import config_util_py  # noqa: E402
from waymo_open_dataset.protos import breakdown_pb2, metrics_pb2  # noqa: E402


def official_config() -> metrics_pb2.Config:
    """The configuration of ``compute_detection_metrics_main`` (``GetConfig``)."""
    config = metrics_pb2.Config()
    for generator in (breakdown_pb2.Breakdown.OBJECT_TYPE, breakdown_pb2.Breakdown.RANGE):
        config.breakdown_generator_ids.append(generator)
        difficulty = config.difficulties.add()
        difficulty.levels.append(label_pb2.Label.LEVEL_1)
        difficulty.levels.append(label_pb2.Label.LEVEL_2)
    config.matcher_type = metrics_pb2.MatcherProto.TYPE_HUNGARIAN
    config.iou_thresholds.extend([0.0, 0.7, 0.5, 0.5, 0.5])
    config.box_type = label_pb2.Label.Box.TYPE_3D
    config.score_cutoffs.extend([i * 0.01 for i in range(100)] + [1.0])
    return config


def prepare_ground_truth(points: np.ndarray, difficulty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The tool's preparation: keep mask (points > 0) and the difficulty with 0 set by the 5-point rule."""
    keep = points > 0
    level = np.where(difficulty == 0, np.where(points <= 5, 2, 1), difficulty).astype(np.uint8)
    return keep, level


def run_case(config_str: bytes, pd: dict, gt: dict) -> dict:
    keep, level = prepare_ground_truth(gt["points"], gt["difficulty"])
    args = dict(
        prediction_bbox=tf.constant(pd["boxes"].reshape(-1, 7), tf.float32),
        prediction_type=tf.constant(pd["types"], tf.uint8),
        prediction_score=tf.constant(pd["scores"], tf.float32),
        prediction_frame_id=tf.constant(pd["frames"], tf.int64),
        prediction_overlap_nlz=tf.constant(pd["nlz"], tf.bool),
        ground_truth_bbox=tf.constant(gt["boxes"][keep].reshape(-1, 7), tf.float32),
        ground_truth_type=tf.constant(gt["types"][keep], tf.uint8),
        ground_truth_frame_id=tf.constant(gt["frames"][keep], tf.int64),
        ground_truth_difficulty=tf.constant(level[keep], tf.uint8),
        config=config_str,
    )
    ap, aph, _apl, pr, pr_ha, _pr_l, _breakdown = py_metrics_ops.detection_metrics(**args)
    state = py_metrics_ops.detection_metrics_state(**args).numpy()  # (B, K, 5): fp, tp, fn, sum_ha, sum_la
    out = {"ap": ap.numpy(), "aph": aph.numpy(), "pr": pr.numpy(), "pr_ha": pr_ha.numpy()}
    out["sum_ha"] = state[:, :, 3]
    if not (np.array_equal(state[:, :, 1], out["pr"][:, :, 2]) and np.array_equal(state[:, :, 0], out["pr"][:, :, 3])):
        raise RuntimeError("detection_metrics_state and detection_metrics disagree on TP/FP counts")
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.splitlines()[3], file=sys.stderr)
        return 2
    data = np.load(argv[0])
    config = official_config()
    config_str = config.SerializeToString()
    names = config_util_py.get_breakdown_names_from_config(config)
    pd_off, gt_off = data["pd_offsets"], data["gt_offsets"]
    results: dict[str, list[np.ndarray]] = {}
    for c in range(len(pd_off) - 1):
        ps, gs = slice(pd_off[c], pd_off[c + 1]), slice(gt_off[c], gt_off[c + 1])
        pd = {k: data[f"pd_{k}"][ps] for k in ("boxes", "types", "scores", "frames", "nlz")}
        gt = {k: data[f"gt_{k}"][gs] for k in ("boxes", "types", "frames", "points", "difficulty")}
        for key, value in run_case(config_str, pd, gt).items():
            results.setdefault(key, []).append(value)
    arrays = {k: np.stack(v) for k, v in results.items()}
    np.savez_compressed(argv[1], names=np.asarray(names, np.str_), **arrays)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
