"""pointformer's Waymo metrics held to the official metric op's outputs, without TensorFlow.

``data/waymo_official_cases.npz`` holds generated cases of every kind of
``pointformer.evaluation.waymo_crosscheck`` with what the official op
(``waymo-open-dataset-tf-2-12-0==1.6.7``) computed for them: mAP and mAPH of the 32 breakdowns,
and per breakdown and score cutoff the TP, FP and FN counts and the summed heading accuracy.
Regenerate it with ``make crosscheck-waymo CROSSCHECK_ARGS="--save-regression
tests/evaluation/data/waymo_official_cases.npz"``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pointformer.evaluation.waymo import BREAKDOWN_NAMES
from pointformer.evaluation.waymo_crosscheck import (
    KINDS,
    case_arrays,
    cases_from_arrays,
    compare,
    evaluate_case,
    generate_case,
    read_cases,
)

DATA = Path(__file__).parent / "data" / "waymo_official_cases.npz"


@pytest.fixture(scope="module")
def regression():
    return read_cases(DATA)


def test_regression_set_covers_every_kind(regression):
    cases, official = regression
    assert {c.kind for c in cases} == set(KINDS)
    assert tuple(official["names"].tolist()) == BREAKDOWN_NAMES
    assert official["tp"].shape == (len(cases), len(BREAKDOWN_NAMES), 101)
    # The set holds real work: matches, misses, false positives and non-trivial APs.
    assert official["tp"].sum() > 1000 and official["fn"].sum() > 100 and official["fp"].sum() > 1000
    assert 0.05 < np.mean(official["ap"]) < 0.95


def test_equals_the_official_op(regression):
    cases, official = regression
    differences, worst = compare(cases, official, tolerance=1e-6)
    assert not differences, "\n".join(str(d) for d in differences[:20])
    assert worst <= 1e-6


def test_compare_catches_a_difference(regression):
    """The comparison is not vacuous: one changed official count is reported."""
    cases, official = regression
    changed = dict(official)
    changed["tp"] = official["tp"].copy()
    changed["tp"][0, 0, 0] += 1
    differences, _ = compare(cases[:1], changed)
    assert [d.quantity for d in differences] == ["tp"]


def test_huge_boxes_never_match():
    """The official IoU is 0 when a box has an extent >= 1e6 m, even for identical boxes."""
    case = generate_case(3, "degenerate")
    pd, gt = dict(case.pd), dict(case.gt)
    box = np.array([[10.0, 0.0, 0.0, 4.0, 2.0, 2e6, 0.0]], np.float32)
    pd.update(boxes=box, types=np.array([1], np.uint8), scores=np.array([0.9], np.float32),
              frames=np.zeros(1, np.int64), nlz=np.zeros(1, bool))  # fmt: skip
    gt.update(boxes=box, types=np.array([1], np.uint8), frames=np.zeros(1, np.int64),
              points=np.array([50], np.int32), difficulty=np.zeros(1, np.uint8))  # fmt: skip
    metrics = evaluate_case(type(case)("degenerate", 0, pd, gt))
    i = BREAKDOWN_NAMES.index("OBJECT_TYPE_TYPE_VEHICLE_LEVEL_1")
    assert metrics.tp[i].max() == 0 and metrics.fp[i, 0] == 1 and metrics.fn[i, 0] == 1


def test_case_arrays_round_trip():
    cases = [generate_case(s) for s in range(len(KINDS))]
    back = cases_from_arrays(case_arrays(cases))
    assert [(c.kind, c.seed) for c in back] == [(c.kind, c.seed) for c in cases]
    for a, b in zip(cases, back, strict=True):
        for side in ("pd", "gt"):
            for k, v in getattr(a, side).items():
                np.testing.assert_array_equal(getattr(b, side)[k], v)
                assert getattr(b, side)[k].dtype == v.dtype
