"""nuScenes metrics on hand-built cases: the devkit's own unit cases (formats reference B.8, from
``eval/detection/tests/test_algo.py``) with their expected values, each also compared with the
devkit's ``accumulate``/``calc_ap``/``calc_tp`` on the same boxes; the class range at exactly its
distance (strict ``<``); a barrier turned by pi (orientation period pi)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pointformer.data.formats.nuscenes_tables import yaw_to_quaternion
from pointformer.evaluation.nuscenes import (
    TP_METRICS,
    DetectionBoxes,
    NuScenesGroundTruth,
    evaluate,
    results_from_json,
)

FIELDS = ("recall", "precision", "confidence", "trans_err", "vel_err", "scale_err", "orient_err", "attr_err")
DEFAULTS = {"trans": (0, 0, 0), "size": (1, 1, 1), "yaw": 0.0, "vel": (0, 0), "attr": "vehicle.parked",
            "score": -1.0, "name": "car"}  # fmt: skip
CAR1 = {"trans": (1, 1, 1), "name": "car", "score": 1.0}
CAR2 = {"trans": (3, 3, 1), "name": "car", "score": 0.7}
BICYCLE1 = {"trans": (5, 5, 1), "name": "bicycle", "score": 1.0, "attr": "cycle.with_rider"}
GT1 = {"trans": (1, 1, 1)}
GT2 = {"trans": (10, 10, 1), "size": (2, 2, 2)}
GT3 = {"trans": (20, 20, 1), "size": (2, 4, 2)}
PRED1 = {"trans": (1, 1, 1), "score": 1.0}
PRED2 = {"trans": (11, 10, 1), "size": (2, 2, 2), "score": 0.9}
PRED3 = {"trans": (40, 10, 1), "size": (2, 2, 2), "score": 0.8}  # the devkit's is 100 m away: out of range
PRED4 = {"trans": (20, 20, 1), "size": (2, 4, 2), "score": 0.7}
PRED5 = {"trans": (21, 20, 1), "size": (2, 4, 2), "score": 0.7}


def _record(box: dict, token: str) -> dict:
    b = {**DEFAULTS, **box}
    return {"sample_token": token, "translation": list(map(float, b["trans"])), "size": list(map(float, b["size"])),
            "rotation": yaw_to_quaternion(b["yaw"]).tolist(), "velocity": list(map(float, b["vel"])),
            "detection_name": b["name"], "detection_score": float(b["score"]), "attribute_name": b["attr"],
            "num_pts": 10}  # fmt: skip


def _ours(gts: dict, preds: dict):
    """Our metrics with the ego at the origin and no racks (the unit cases skip those filters)."""
    boxes = DetectionBoxes.from_records([(t, [_record(b, t) for b in bs]) for t, bs in gts.items()], ground_truth=True)
    gt = NuScenesGroundTruth(boxes, np.zeros((len(gts), 3)), {}, "hand", False)
    results = results_from_json({"meta": {}, "results": {t: [_record(b, t) for b in bs] for t, bs in preds.items()}})
    return evaluate(gt, results)


def _devkit_metric_data(gts: dict, preds: dict, name: str, dist_th: float):
    try:
        from nuscenes.eval.common.data_classes import EvalBoxes
        from nuscenes.eval.common.utils import center_distance
        from nuscenes.eval.detection.algo import accumulate
        from nuscenes.eval.detection.data_classes import DetectionBox
    except ImportError as e:
        pytest.skip(f"nuscenes-devkit 1.2.0 oracle unavailable ({e.name})")

    def eval_boxes(data, score: bool):
        out = EvalBoxes()
        for token, boxes in data.items():
            recs = [_record(b, token) for b in boxes]
            out.add_boxes(token, [DetectionBox(sample_token=token, translation=r["translation"], size=r["size"],
                                               rotation=r["rotation"], velocity=r["velocity"],
                                               detection_name=r["detection_name"], attribute_name=r["attribute_name"],
                                               detection_score=r["detection_score"] if score else -1.0)
                                  for r in recs])  # fmt: skip
        return out

    return accumulate(eval_boxes(gts, False), eval_boxes(preds, True), name, center_distance, dist_th)


def _check(gts, preds, name="car", dist_th=2.0, target_ap=None, target_err=None, metric="trans_err"):
    from nuscenes.eval.detection.algo import calc_ap, calc_tp  # skipped above when missing

    ours = _ours(gts, preds)
    md = _devkit_metric_data(gts, preds, name, dist_th)
    mine = ours.metric_data[(name, dist_th)]
    for f in FIELDS:
        np.testing.assert_allclose(getattr(mine, f), getattr(md, f), atol=1e-9, rtol=0, err_msg=f)
    ap = ours.label_aps[name][dist_th]
    assert ap == pytest.approx(calc_ap(md, 0.1, 0.1), abs=1e-9)
    if target_ap is not None:
        assert abs(ap - target_ap) <= 0.01  # the devkit's own tolerance: 101 recall points
    if dist_th == 2.0:
        for m in TP_METRICS:
            if not math.isnan(ours.label_tp_errors[name][m]):
                assert ours.label_tp_errors[name][m] == pytest.approx(calc_tp(md, 0.1, m), abs=1e-9), m
    if target_err is not None:
        assert abs(ours.label_tp_errors[name][metric] - target_err) <= 0.01
    return ours


@pytest.mark.parametrize(
    "gts, preds, target",
    [
        ({"s1": [CAR1]}, {"s1": [CAR1]}, 1.0),
        ({"s1": [CAR1, CAR2]}, {"s1": [CAR1]}, 0.4 / 0.9),
        ({"s1": [CAR1]}, {"s1": [CAR1, CAR2]}, 1.0),
        ({"s1": [CAR2]}, {"s1": [CAR1, CAR2]}, ((0.8 * 0.4) / 2) / (0.9 * 0.9)),
        ({"s1": [CAR1]}, {"s1": [CAR1, BICYCLE1]}, 1.0),
        ({"s1": [CAR1], "s2": [CAR2]}, {"s1": [CAR1], "s2": [CAR2]}, 1.0),
        ({"s1": [CAR1], "s2": []}, {"s1": [CAR1], "s2": []}, 1.0),
        ({"s1": [CAR1], "s2": [CAR2]}, {"s1": [CAR1], "s2": []}, 0.4 / 0.9),
    ],
)
def test_devkit_ap_cases(gts, preds, target):
    _check(gts, preds, target_ap=target)


@pytest.mark.parametrize(
    "gts, preds, target",
    [
        ({"s1": [GT2]}, {"s1": [PRED2]}, 1.0),
        ({"s1": [GT1, GT2]}, {"s1": [PRED1, PRED2]}, ((0 + 0) / 2 + (0 + 0.5) / 2) / (2 * 0.9)),
        ({"s1": [GT1, GT2]}, {"s1": [PRED1, PRED2, PRED3]}, ((0 + 0) / 2 + (0 + 0.5) / 2) / (2 * 0.9)),
        ({"s1": [GT1, GT2, GT3]}, {"s1": [PRED1, PRED2, PRED4]},
         ((0 + 0) / 2 + (0 + 0.5) / 2 + (0.5 + 0.33) / 2) / (3 * 0.9)),
        ({"s1": [GT2, GT3]}, {"s1": [PRED2, PRED5]}, 1.0),
        ({"s1": [GT1], "s2": [GT2], "s3": []}, {"s1": [PRED1], "s2": [PRED2, PRED3], "s3": []},
         ((0 + 0) / 2 + (0 + 0.5) / 2) / (2 * 0.9)),
        ({"s1": [GT2, GT3], "s2": [GT3]}, {"s1": [PRED2], "s2": [PRED5]}, 1.0),
    ],
)  # fmt: skip
def test_devkit_translation_error_cases(gts, preds, target):
    _check(gts, preds, target_err=target)


def test_perfect_and_unmatched_errors():
    car = {"trans": (1, 1, 1), "score": 1.0}
    low = {"trans": (1, 1, 1), "score": 0.3}
    for pred in (car, low):
        ours = _check({"s1": [car]}, {"s1": [pred]})
        assert all(ours.label_tp_errors["car"][m] == pytest.approx(0.0, abs=1e-12) for m in TP_METRICS)
    far = {"trans": (3, 3, 1), "score": 1.0}
    ours = _check({"s1": [car]}, {"s1": [far]})
    assert all(ours.label_tp_errors["car"][m] == 1.0 for m in TP_METRICS)


def test_class_range_is_strict():
    """A car exactly 50 m from the ego (3-4-5 triangle) is out of range, ground truth and
    prediction alike; 1 cm closer it is in."""
    at_range = {"trans": (30, 40, 1), "score": 0.9}
    near = {"trans": (3, 4, 1), "score": 0.5}
    # Missed ground truth at 50 m: ignored, so AP 1 (it would be 0.4 / 0.9 if kept).
    ours = _ours({"s1": [near, at_range]}, {"s1": [near]})
    assert ours.label_aps["car"][2.0] == pytest.approx(1.0, abs=1e-12)
    # A false positive at 50 m, scored above the true positive: ignored, so AP 1.
    ours = _ours({"s1": [near]}, {"s1": [near, at_range]})
    assert ours.label_aps["car"][2.0] == pytest.approx(1.0, abs=1e-12)
    inside = {"trans": (29.994, 39.992, 1), "score": 0.9}  # 49.99 m
    ours = _ours({"s1": [near, inside]}, {"s1": [near]})
    assert ours.label_aps["car"][2.0] == pytest.approx(0.4 / 0.9, abs=0.01)


@pytest.mark.parametrize("name, expected", [("barrier", 0.0), ("car", math.pi)])
def test_orientation_period(name, expected):
    """Turned by pi, a barrier has no orientation error (period pi); a car has pi."""
    gt = {"trans": (5, 5, 0.5), "name": name, "yaw": 0.3, "attr": "" if name == "barrier" else "vehicle.parked"}
    pred = {**gt, "yaw": 0.3 + math.pi, "score": 0.8}
    ours = _check({"s1": [gt]}, {"s1": [pred]}, name=name)
    assert ours.label_tp_errors[name]["orient_err"] == pytest.approx(expected, abs=1e-9)
