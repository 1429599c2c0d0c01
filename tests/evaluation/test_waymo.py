"""Waymo detection metrics: the official AP unit vectors, hand-built cases, the Hungarian
procedure, builders and proto round trips."""

from __future__ import annotations

import itertools
import math
import types

import numpy as np
import pytest

from pointformer.data.formats.waymo_objects import WaymoObjects, read_objects, write_objects
from pointformer.evaluation.waymo import (
    BREAKDOWN_NAMES,
    _kuhn_munkres,
    evaluate,
    ground_truth_from_frames,
    heading_accuracy,
    mean_average_precision,
    predictions_from_arrays,
)

VEH_L1, VEH_L2 = "OBJECT_TYPE_TYPE_VEHICLE_LEVEL_1", "OBJECT_TYPE_TYPE_VEHICLE_LEVEL_2"


def box(x, y=0.0, heading=0.0, length=4.0, width=2.0, height=2.0):
    return [x, y, 0.0, length, width, height, heading]


def objects(boxes, types=1, scores=None, frame=0, **columns):
    boxes = np.asarray(boxes, np.float64).reshape(-1, 7)
    n = len(boxes)
    return WaymoObjects.from_arrays("ctx", frame, boxes, np.broadcast_to(types, (n,)), scores, **columns)


def gt_objects(boxes, points=100, difficulty=1, **kw):
    n = len(boxes)
    return objects(
        boxes,
        num_lidar_points_in_box=np.broadcast_to(points, (n,)),
        detection_difficulty=np.broadcast_to(difficulty, (n,)),
        **kw,
    )


# --- official unit vectors (metrics_utils_test.cc) -----------------------------------------------


def test_ap_unit_vectors():
    assert mean_average_precision([], [], 0.05) == 0.0
    assert mean_average_precision([0.1], [0.2], 0.05) == pytest.approx(0.02, abs=1e-6)
    third = 0.05 * 0.8 + 0.1 * 0.2 + (0.1 - 0.05) * 0.5 * 0.05
    assert mean_average_precision([0.1, 0.05], [0.2, 1.0], 0.05) == pytest.approx(third, abs=1e-6)
    assert mean_average_precision([0.1, 0.05], [0.2, 1.0], 1.0) == pytest.approx(0.2 * 0.1 + 0.5 * 0.15 * 0.8, abs=1e-6)
    assert mean_average_precision([0.1, 0.0, 0.05], [0.2, 0.4, 1.0], 0.05) == pytest.approx(third, abs=1e-6)


def test_heading_accuracy_official_values():
    assert heading_accuracy(np.array(0.1), np.array(-0.1)) == pytest.approx(1 - 0.2 / math.pi, abs=1e-6)
    assert heading_accuracy(np.array(math.pi - 0.1), np.array(-math.pi + 0.1)) == pytest.approx(
        1 - 0.2 / math.pi, abs=1e-6
    )
    assert heading_accuracy(np.array(math.pi), np.array(0.0)) == 0.0


# --- Hungarian ----------------------------------------------------------------------------------


def test_kuhn_munkres_is_optimal():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 6))
        w = rng.integers(0, 4, (n, n)) * rng.integers(0, 2, (n, n))
        perm = _kuhn_munkres(w.astype(np.int64))
        assert sorted(perm.tolist()) == list(range(n))
        best = max(sum(w[i, p[i]] for i in range(n)) for p in itertools.permutations(range(n)))
        assert sum(w[i, perm[i]] for i in range(n)) == best


def test_kuhn_munkres_ties_go_to_the_first_row():
    assert _kuhn_munkres(np.array([[5, 0], [5, 0]], np.int64)).tolist() == [0, 1]


# --- hand-built cases ---------------------------------------------------------------------------


def test_identical_boxes():
    boxes = [box(10), box(-20, 5, 1.0), box(60, heading=-2.0)]
    m = evaluate(objects(boxes, scores=[0.9, 0.8, 0.7]), gt_objects(boxes))
    assert m[VEH_L1] == pytest.approx((1.0, 1.0)) and m[VEH_L2] == pytest.approx((1.0, 1.0))
    # float32 ramps can integrate to 1 + 1 ulp, as in the official code (printed "1").
    assert m["RANGE_TYPE_VEHICLE_[50, +inf)_LEVEL_1"] == pytest.approx((1.0, 1.0))
    assert m["OBJECT_TYPE_TYPE_PEDESTRIAN_LEVEL_1"] == (0.0, 0.0)


def test_heading_off_by_pi_gives_aph_zero():
    m = evaluate(objects([box(10, heading=0.3 + math.pi)], scores=[0.9]), gt_objects([box(10, heading=0.3)]))
    assert m[VEH_L1] == pytest.approx((1.0, 0.0), abs=1e-6)


def test_missed_level2_box_counts_at_level2_only():
    gt = gt_objects([box(10), box(20)], difficulty=[1, 2])
    m = evaluate(objects([box(10)], scores=[0.9]), gt)
    assert m[VEH_L1][0] == pytest.approx(1.0)
    assert m[VEH_L2][0] == pytest.approx(0.5, abs=1e-6)
    # A prediction matched to a LEVEL_2 box is a TP at LEVEL_1 too.
    m = evaluate(objects([box(20)], scores=[0.9]), gt)
    i = m.index(VEH_L1)
    assert m.tp[i, 0] == 1 and m.fn[i, 0] == 1


def test_rematching_at_every_cutoff():
    # p0 (score 0.9) overlaps g0 (IoU 0.82) and g1 (0.74); p1 (score 0.5) only g0 (0.86). Greedy by
    # score would give p0-g0 and leave p1 unmatched; per-cutoff Hungarian matches both at <= 0.5.
    gt = gt_objects([box(0.0), box(1.0)])
    pred = objects([box(0.4), box(-0.3)], scores=[0.9, 0.5])
    m = evaluate(pred, gt)
    i = m.index(VEH_L1)
    assert (m.tp[i, 50], m.fp[i, 50], m.fn[i, 50]) == (2, 0, 0)
    assert (m.tp[i, 51], m.fp[i, 51], m.fn[i, 51]) == (1, 0, 1)
    assert m[VEH_L1][0] == pytest.approx(1.0)


def test_ties_resolve_to_the_earlier_prediction():
    gt = gt_objects([box(10)])
    good, flipped = box(10), box(10, heading=math.pi)
    first_good = evaluate(objects([good, flipped], scores=[0.5, 0.5]), gt)
    first_flipped = evaluate(objects([flipped, good], scores=[0.5, 0.5]), gt)
    i = first_good.index(VEH_L1)
    assert first_good.tp[i, 0] == first_flipped.tp[i, 0] == 1
    assert first_good.sum_ha[i, 0] == pytest.approx(1.0) and first_flipped.sum_ha[i, 0] == pytest.approx(0.0)


def test_zero_point_ground_truth_dropped():
    gt = gt_objects([box(10), box(30, 20)], points=[50, 0])
    m = evaluate(objects([box(10)], scores=[0.9]), gt)
    assert m[VEH_L2][0] == pytest.approx(1.0)
    assert m.fn[m.index(VEH_L2), 0] == 0


@pytest.mark.parametrize(("points", "fn_l1"), [(3, 0), (5, 0), (6, 1)])
def test_unset_difficulty_from_the_five_point_rule(points, fn_l1):
    gt = gt_objects([box(10), box(20, 20)], points=[50, points], difficulty=0)
    m = evaluate(objects([box(10)], scores=[0.9]), gt)
    assert m.fn[m.index(VEH_L1), 0] == fn_l1
    assert m.fn[m.index(VEH_L2), 0] == 1


def test_range_breakdown_membership():
    # Centres at 29.99, 30 and 50 m; a prediction just inside 30 m cannot match a box just outside.
    gt = gt_objects([box(29.99), box(0, 30.0), box(0, -50.0), box(30.05, 0.0)])
    pred = objects([box(29.99), box(0, 30.0), box(0, -50.0), box(29.95, 0.0)], scores=[0.9] * 4)
    m = evaluate(pred, gt)

    def counts(name):
        i = m.index(name)
        return int(m.tp[i, 0]), int(m.fp[i, 0]), int(m.fn[i, 0])

    assert counts(VEH_L1) == (4, 0, 0)
    assert counts("RANGE_TYPE_VEHICLE_[0, 30)_LEVEL_1") == (1, 1, 0)
    assert counts("RANGE_TYPE_VEHICLE_[30, 50)_LEVEL_1") == (1, 0, 1)
    assert counts("RANGE_TYPE_VEHICLE_[50, +inf)_LEVEL_1") == (1, 0, 0)


def test_types_and_frames_do_not_mix():
    gt = gt_objects([box(10)], types=2)
    m = evaluate(objects([box(10)], types=1, scores=[0.9]), gt)
    assert m.tp.max() == 0
    m = evaluate(objects([box(10)], types=2, scores=[0.9], frame=1), gt)
    assert m.tp.max() == 0 and m.num_frames == 2


def test_nlz_predictions_are_not_false_positives():
    pred = objects([box(10), box(40, 40)], scores=[0.9, 0.9], overlap_with_nlz=[False, True])
    m = evaluate(pred, gt_objects([box(10)]))
    assert m.fp.max() == 0 and m[VEH_L1][0] == pytest.approx(1.0)


# --- files, builders ----------------------------------------------------------------------------


def _random_case(seed=0, frames=6):
    rng = np.random.default_rng(seed)
    gts, pds = [], []
    for f in range(frames):
        n = 30
        b = np.zeros((n, 7))
        b[:, :2] = rng.uniform(-60, 60, (n, 2))
        b[:, 3:6] = rng.uniform(1, 4, (n, 3))
        b[:, 6] = rng.uniform(-3, 3, n)
        t = rng.integers(1, 5, n)
        gts.append((f, b, t, rng.integers(0, 20, n)))
        p = np.concatenate([b + rng.normal(0, 0.15, b.shape), b + rng.normal(0, 1.0, b.shape)])
        p[:, 3:6] = np.abs(p[:, 3:6])
        pds.append((f, p, np.concatenate([t, t]), rng.uniform(0, 1, 2 * n)))
    cat = lambda xs, k: np.concatenate([x[k] for x in xs])  # noqa: E731
    gt = WaymoObjects.from_arrays(
        "ctx", np.repeat([g[0] for g in gts], 30), cat(gts, 1), cat(gts, 2), num_lidar_points_in_box=cat(gts, 3)
    )
    pred = WaymoObjects.from_arrays("ctx", np.repeat([p[0] for p in pds], 60), cat(pds, 1), cat(pds, 2), cat(pds, 3))
    return pred, gt


def test_proto_round_trip_equals_in_memory(tmp_path):
    pred, gt = _random_case()
    write_objects(tmp_path / "pred.bin", pred)
    write_objects(tmp_path / "gt.bin", gt)
    a = evaluate(pred, gt)
    b = evaluate(read_objects(tmp_path / "pred.bin"), read_objects(tmp_path / "gt.bin"))
    np.testing.assert_array_equal(a.ap, b.ap)
    np.testing.assert_array_equal(a.aph, b.aph)
    np.testing.assert_array_equal(a.tp, b.tp)
    assert 0.0 < a[VEH_L2][0] < 1.0


def test_builders():
    frames = types.SimpleNamespace(
        sequence=["seg_a", "seg_b"],
        timestamp_micros=np.array([10, 20], np.int64),
        box_offsets=np.array([0, 2, 3]),
        boxes=np.array([box(10) + [0, 0], box(20) + [0, 0], box(5) + [1, 1]], np.float32),
        names=np.array(["Vehicle", "Pedestrian", "Cyclist"]),
        difficulty=np.array([0, 2, 1], np.int8),
        tracking_difficulty=np.zeros(3, np.int8),
        num_points_in_box=np.array([10, 3, 7], np.int32),
        object_ids=np.array(["a", "b", "c"]),
    )
    gt = ground_truth_from_frames(frames)
    assert gt.context_names.tolist() == ["seg_a", "seg_a", "seg_b"]
    assert gt.types.tolist() == [1, 2, 4] and gt.frame_timestamps_micros.tolist() == [10, 10, 20]
    pred = predictions_from_arrays(
        ["seg_a", "seg_b"],
        [10, 20],
        [np.asarray(frames.boxes[:2]), np.asarray(frames.boxes[2:])],
        [np.array([0.9, 0.8]), np.array([0.7])],
        [np.array(["Vehicle", "Pedestrian"]), np.array(["Cyclist"])],
    )
    m = evaluate(pred, gt)
    for name in ("VEHICLE", "PEDESTRIAN", "CYCLIST"):
        assert m[f"OBJECT_TYPE_TYPE_{name}_LEVEL_2"][0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown class"):
        predictions_from_arrays(["s"], [1], [np.zeros((1, 7))], [np.ones(1)], [np.array(["Car"])])


def test_breakdown_names_official_order():
    assert len(BREAKDOWN_NAMES) == 32
    assert BREAKDOWN_NAMES[:2] == (VEH_L1, VEH_L2)
    assert BREAKDOWN_NAMES[8] == "RANGE_TYPE_VEHICLE_[0, 30)_LEVEL_1"
    assert BREAKDOWN_NAMES[-1] == "RANGE_TYPE_CYCLIST_[50, +inf)_LEVEL_2"
