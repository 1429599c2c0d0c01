"""The Waymo evaluation refuses inputs that would give a silently wrong metric (issue 18)."""

from __future__ import annotations

import numpy as np
import pytest

from pointformer.data.formats.errors import DataFormatError
from pointformer.data.formats.waymo_objects import WaymoObjects
from pointformer.evaluation.waymo import evaluate


def _objects(scores, points, boxes=None) -> WaymoObjects:
    n = len(scores)
    if boxes is None:
        boxes = np.concatenate(
            [np.arange(n * 3, dtype=float).reshape(n, 3) * 5, np.full((n, 3), 3.0), np.zeros((n, 1))], 1
        )
    return WaymoObjects.from_arrays("ctx", 1, boxes, np.ones(n, np.int8), np.asarray(scores, np.float32),
                                    num_lidar_points_in_box=np.asarray(points, np.int32))  # fmt: skip


GT = _objects([1.0] * 3, [30, 30, 30])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_scores(bad):
    with pytest.raises(DataFormatError, match="predictions: 1 of 3 scores are NaN or infinite"):
        evaluate(_objects([0.9, bad, 0.3], [0, 0, 0]), GT)


def test_nan_would_have_ranked_first():
    # Why it is refused: the metric would count the NaN prediction as above every cutoff.
    assert np.searchsorted(np.float32([0.0, 0.5, 1.0]), np.float32(np.nan), side="right") == 3


def test_non_finite_box_fields_name_the_field():
    boxes = _objects([1, 1, 1], [1, 1, 1]).boxes.copy()
    boxes[1, 6] = np.nan
    with pytest.raises(DataFormatError, match=r"ground truth: 1 of 3 objects .* \[heading \(1\)\]"):
        evaluate(_objects([0.9, 0.8, 0.3], [0, 0, 0]), _objects([1, 1, 1], [5, 5, 5], boxes))


def test_scores_outside_0_1_warn_and_evaluate():
    with pytest.warns(UserWarning, match=r"predictions: 1 of 3 scores are outside \[0, 1\]"):
        metrics = evaluate(_objects([0.9, 1.7, 0.3], [0, 0, 0]), GT)
    assert metrics["OBJECT_TYPE_TYPE_VEHICLE_LEVEL_1"][0] == pytest.approx(1.0)


def test_ground_truth_without_point_counts_and_swapped_files():
    predictions = _objects([0.9, 0.8, 0.3], [0, 0, 0])
    with pytest.raises(DataFormatError, match="were the two files swapped"):
        evaluate(GT, predictions)  # swapped: the "ground truth" has no point counts
    with pytest.raises(DataFormatError, match="is it a predictions file"):
        evaluate(predictions, predictions)
    # Already prepared ground truth is not checked for point counts (prepare=False).
    evaluate(predictions, _objects([1.0] * 3, [0, 0, 0]), prepare=False)


def test_predictions_that_look_like_ground_truth_warn():
    with pytest.warns(UserWarning, match="looks like ground truth|as ground truth has"):
        evaluate(GT, GT)
