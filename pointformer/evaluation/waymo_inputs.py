"""Checks of the Waymo evaluation's inputs, so that a bad file gives an error, not a wrong mAP.

The official tool ranks predictions by score and drops ground truth without lidar points; on
inputs it does not expect both fail silently: a NaN score sorts above every cutoff (the metric
then counts it as the most confident prediction), a NaN box never matches, and a ground-truth
file without ``num_lidar_points_in_box`` (a predictions file, say, passed in its place) has every
box dropped, so every mAP is 0. ``check_inputs`` refuses the first two and the last with a
``DataFormatError`` that says which input and field, and warns about scores outside [0, 1] (legal
for the metric, which only compares them with the cutoffs, but a sign of logits passed as scores)
and about a predictions file that looks like ground truth.
"""

from __future__ import annotations

import warnings

import numpy as np

from pointformer.data.formats.errors import DataFormatError
from pointformer.data.formats.waymo_objects import WaymoObjects

__all__ = ["BOX_FIELDS", "check_inputs", "check_objects"]

# The Label.Box fields, in the column order of ``WaymoObjects.boxes``.
BOX_FIELDS = ("center_x", "center_y", "center_z", "length", "width", "height", "heading")


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def check_objects(objects: WaymoObjects, role: str, scored: bool) -> None:
    """Refuses non-finite box fields (and, when ``scored``, non-finite scores) of ``objects``;
    ``role`` names the input in the message (``"predictions"``). Warns about scores outside [0, 1]."""
    bad_boxes = ~np.isfinite(objects.boxes)
    if bad_boxes.any():
        counts = bad_boxes.sum(axis=0)
        fields = ", ".join(f"{name} ({int(n)})" for name, n in zip(BOX_FIELDS, counts, strict=True) if n)
        i = _first(bad_boxes.any(axis=1))
        raise DataFormatError(
            f"{role}: {int(bad_boxes.any(axis=1).sum())} of {len(objects)} objects have NaN or infinite box fields "
            f"[{fields}] (first: object {i}, {objects.context_names[i]} at {objects.frame_timestamps_micros[i]}); "
            "expected finite metres and radians"
        )
    if not scored:
        return
    scores = objects.scores
    bad = ~np.isfinite(scores)
    if bad.any():
        i = _first(bad)
        raise DataFormatError(
            f"{role}: {int(bad.sum())} of {len(objects)} scores are NaN or infinite (first: object {i}, score "
            f"{scores[i]}); expected finite scores in [0, 1] (a NaN would rank above every score cutoff)"
        )
    outside = (scores < 0) | (scores > 1)
    if outside.any():
        warnings.warn(
            f"{role}: {int(outside.sum())} of {len(objects)} scores are outside [0, 1] (min {float(scores.min()):.4g}, "
            f"max {float(scores.max()):.4g}): the metric compares them with the cutoffs 0.00-1.00 as they are "
            "(scores above 1 count as 1, below 0 are never kept); were logits passed as scores?",
            stacklevel=3,
        )


def check_inputs(predictions: WaymoObjects, ground_truth: WaymoObjects, prepared: bool = False) -> None:
    """Checks both inputs of ``evaluate`` (see the module docstring). ``prepared``: the ground truth
    went through ``prepare_ground_truth`` already (its point counts are then not checked)."""
    check_objects(predictions, "predictions", scored=True)
    check_objects(ground_truth, "ground truth", scored=False)
    if not prepared and len(ground_truth) and not (ground_truth.num_lidar_points_in_box > 0).any():
        looks_swapped = len(predictions) and (predictions.num_lidar_points_in_box > 0).any()
        raise DataFormatError(
            f"ground truth: none of its {len(ground_truth)} objects has num_lidar_points_in_box > 0, so the "
            "official preparation would drop every box as empty and report mAP 0; expected a ground-truth "
            "Objects file with lidar point counts"
            + (
                " (the predictions have point counts: were the two files swapped? the order is PRED.bin GT.bin)"
                if looks_swapped
                else " (is it a predictions file?)"
            )
        )
    if len(predictions) and (predictions.num_lidar_points_in_box > 0).all() and (predictions.scores == 1).all():
        warnings.warn(
            "predictions: every object has lidar point counts and score 1, as ground truth has: if this is the "
            "ground-truth file, the order is PRED.bin GT.bin",
            stacklevel=3,
        )
