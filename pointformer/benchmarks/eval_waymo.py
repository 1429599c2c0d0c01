"""The Waymo part of the ``eval`` benchmark: our ``pointformer.evaluation.waymo.evaluate`` on
synthetic frames (1,000 frames x 100 ground-truth and 200 predicted boxes; quick: 50 frames).

Ground truth: boxes of the four types spread over +-75 m, 1-5 m extents, random headings, point
counts 0-49 (some dropped, some LEVEL_2 by the 5-point rule). Predictions: a noisy copy of every
ground-truth box and a second, noisier copy (mostly false positives), scores uniform in [0, 1].
The official op runs here only in its own TensorFlow environment (``make crosscheck-waymo``, which
checks equality, not speed), so there is no baseline row; the target is 10 s on the 2-core
development machine.
"""

from __future__ import annotations

import numpy as np
import torch

from pointformer.benchmarks.core import Report, Row, RunConfig
from pointformer.data.formats.waymo_objects import WaymoObjects
from pointformer.evaluation.waymo import evaluate

TARGET_S = 10.0


def synthetic_objects(frames: int, gt_per_frame: int = 100, pd_per_frame: int = 200, seed: int = 0):
    """``(predictions, ground_truth)`` ``WaymoObjects`` of ``frames`` synthetic frames."""
    rng = np.random.default_rng(seed)
    n = frames * gt_per_frame
    boxes = np.zeros((n, 7))
    boxes[:, :2] = rng.uniform(-75, 75, (n, 2))
    boxes[:, 2] = rng.uniform(-1, 2, n)
    boxes[:, 3:6] = rng.uniform(1, 5, (n, 3))
    boxes[:, 6] = rng.uniform(-np.pi, np.pi, n)
    types = rng.integers(1, 5, n)
    frame = np.repeat(np.arange(frames), gt_per_frame)
    gt = WaymoObjects.from_arrays(
        np.char.add("ctx_", (frame // 200).astype(str)),
        frame,
        boxes,
        types,
        num_lidar_points_in_box=rng.integers(0, 50, n),
        detection_difficulty=rng.choice([0, 0, 0, 2], n),
    )
    copies = -(-pd_per_frame // gt_per_frame)
    noise = np.array([0.2, 0.2, 0.1, 0.2, 0.2, 0.1, 0.3])
    parts = [boxes + rng.normal(0, 1, boxes.shape) * noise * (1 + 4 * k) for k in range(copies)]
    pd_boxes = np.stack(parts, axis=1).reshape(frames, copies * gt_per_frame, 7)[:, :pd_per_frame].reshape(-1, 7)
    pd_types = np.repeat(types.reshape(frames, gt_per_frame), copies, axis=1)[:, :pd_per_frame].reshape(-1)
    pd_frame = np.repeat(np.arange(frames), pd_per_frame)
    pd_boxes[:, 3:6] = np.abs(pd_boxes[:, 3:6])
    pred = WaymoObjects.from_arrays(
        np.char.add("ctx_", (pd_frame // 200).astype(str)),
        pd_frame,
        pd_boxes,
        pd_types,
        rng.uniform(0, 1, len(pd_frame)).astype(np.float32),
    )
    return pred, gt


def waymo_eval_report(cfg: RunConfig, quick: bool) -> Report:
    """Time of ``evaluate`` on synthetic frames (torch limited to one thread for the IoUs)."""
    frames = 50 if quick else 1000
    pred, gt = synthetic_objects(frames)
    evaluate(pred, gt)  # compiles (or loads) the numba functions outside the timing
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        timing, metrics = cfg.time_slow(lambda: evaluate(pred, gt))
    finally:
        torch.set_num_threads(threads)
    vehicle = metrics["OBJECT_TYPE_TYPE_VEHICLE_LEVEL_2"]
    case = f"{frames} frames x 100 GT + 200 pred (32 breakdowns, 101 cutoffs)"
    note = f"vehicle L2 mAP {vehicle[0]:.4f} mAPH {vehicle[1]:.4f}"
    seconds = timing.median_ms / 1e3
    met = "met" if seconds < TARGET_S else "NOT met"
    footnote = (
        f"Waymo target: {frames} frames in under {TARGET_S:.0f} s on the 2-core machine "
        f"(the issue's target is stated for 1,000 frames): {seconds:.2f} s, {met}."
    )
    return Report(rows=[Row(case, "pointformer waymo evaluate (CPU)", timing, note)], footnotes=[footnote])
