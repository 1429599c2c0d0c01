"""Waymo Open Dataset 3D detection metrics (mAP, mAPH), as the official C++ tool computes them.

This reimplements, from its specification (shared reference ``formats-and-metrics.md`` C.4 and the
behaviour of ``compute_detection_metrics_main``), the configuration the official command-line tool
uses: breakdowns ``OBJECT_TYPE`` and ``RANGE`` ([0, 30), [30, 50), [50, +inf) metres from the
vehicle-frame origin, by box centre), each at ``LEVEL_1`` and ``LEVEL_2``; Hungarian matching on
3D IoU; per-type IoU thresholds (vehicle 0.7, pedestrian / sign / cyclist 0.5); the 101 score
cutoffs 0.00, 0.01, ..., 1.00; ``desired_recall_delta`` 0.05.

The steps, per frame (a frame is the key ``(context name, camera name, timestamp)``):

* Ground truth: objects with ``num_lidar_points_in_box <= 0`` are dropped; an unset detection
  difficulty (0) becomes LEVEL_2 when the box has at most 5 points, LEVEL_1 otherwise.
* Every breakdown shard (a type; a type and range bucket) takes the predictions and ground truths
  of that shard (each sharded by its own type and range; TYPE_UNKNOWN is in no shard). For every
  score cutoff the predictions with ``score >= cutoff`` are matched again from scratch: a pair can
  match when ``float32(IoU) >= threshold``; the edge weight is ``round(1e6 * IoU)``; a maximum-weight
  assignment is found with the Kuhn-Munkres procedure of the official ``hungarian.cc`` (same
  initial labels, same search order, so equal-weight ties resolve as there: the earlier prediction
  in file order wins).
* TP: a matched prediction (whatever the difficulty of its ground truth), adding its heading
  accuracy ``1 - |dheading| / pi`` (headings wrapped to [-pi, pi), the difference to [0, pi]); FP:
  an unmatched prediction not flagged ``overlap_with_nlz``; FN at level L: an unmatched ground
  truth with difficulty <= L. Counts add over frames, the heading-accuracy sums in float32 in
  frame order as the official merge does.
* Per cutoff, in float32: ``P = TP / (TP + FP)``, ``PH = sum_ha / (TP + FP)`` (0 when no
  predictions), ``R = TP / (TP + FN)`` (recall is not heading weighted); ``P`` (``PH``) is set to 1
  where ``R == 0``. AP integrates the precision envelope over recall with ramps at most 0.05 wide
  (``mean_average_precision``); APH the same on ``(PH, R)``.

Matching is done per connected component of the "can match" graph: the maximum total weight
splits over components, so the matched pairs equal the official ones; the one possible difference
is which of several equal-weight optimal assignments spanning two components is taken, which needs
exactly equal quantized IoUs across components.

Verified against the official metric op (``waymo-open-dataset-tf-2-12-0==1.6.7``) by the
differential test ``make crosscheck-waymo`` (``waymo_crosscheck``): thousands of generated cases
equal it on every breakdown, cutoff, count and AP (to float32 rounding); a saved subset with the
op's outputs runs in the tests. The rule it found missing: a box with an extent of at least 1e6 m
has IoU 0 with everything (``_iou_3d``).

Speed: IoUs and heading accuracies are computed once per frame and type (exact rotated 3D IoU,
``pointformer.ops.boxes_iou_3d``, float64), and the per-cutoff matching and counting run in one
numba function per frame, type and breakdown, which rematches only when the set of predictions
above the cutoff changes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
import torch

from pointformer.data.formats.waymo_objects import WaymoObjects
from pointformer.evaluation.waymo_inputs import check_inputs
from pointformer.ops import boxes_iou_3d

__all__ = [
    "BREAKDOWN_NAMES",
    "IOU_THRESHOLDS",
    "SCORE_CUTOFFS",
    "TYPE_NAMES",
    "WaymoMetrics",
    "breakdown_names",
    "ground_truth_from_frames",
    "predictions_from_arrays",
    "evaluate",
    "heading_accuracy",
    "mean_average_precision",
    "prepare_ground_truth",
]

# Label.Type -> name (TYPE_UNKNOWN = 0 is in no breakdown).
TYPE_NAMES = {1: "VEHICLE", 2: "PEDESTRIAN", 3: "SIGN", 4: "CYCLIST"}
# 3D IoU threshold per Label.Type (index 0: TYPE_UNKNOWN), as the official tool's config.
IOU_THRESHOLDS = (0.0, 0.7, 0.5, 0.5, 0.5)
# The official cutoffs, i * 0.01 computed in double and stored as float32 (a proto float), then 1.
SCORE_CUTOFFS = np.asarray([i * 0.01 for i in range(100)] + [1.0], dtype=np.float32)
RANGE_NAMES = ("[0, 30)", "[30, 50)", "[50, +inf)")
LEVELS = (1, 2)
RECALL_DELTA = 0.05
LEVEL2_MAX_POINTS = 5  # ground truth with at most this many points and no difficulty is LEVEL_2
MIN_BOX_EXTENT = 0.01  # official IoU is 0 for a box with any extent <= this
MAX_BOX_EXTENT = 1e6  # ... and for a box with any extent >= this (``ComputeIoU``'s "huge box" rule)
NUM_TYPES = len(TYPE_NAMES)
NUM_SHARDS = NUM_TYPES + 3 * NUM_TYPES  # OBJECT_TYPE shards, then RANGE shards


def breakdown_names() -> list[str]:
    """The official breakdown names, in output order: per OBJECT_TYPE shard then per RANGE shard,
    LEVEL_1 before LEVEL_2 (e.g. ``OBJECT_TYPE_TYPE_VEHICLE_LEVEL_1``,
    ``RANGE_TYPE_VEHICLE_[0, 30)_LEVEL_2``)."""
    shards = [f"OBJECT_TYPE_TYPE_{t}" for t in TYPE_NAMES.values()]
    shards += [f"RANGE_TYPE_{t}_{r}" for t in TYPE_NAMES.values() for r in RANGE_NAMES]
    return [f"{s}_LEVEL_{level}" for s in shards for level in LEVELS]


BREAKDOWN_NAMES = tuple(breakdown_names())


# --- metrics ------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class WaymoMetrics:
    """Metrics of every breakdown (``B = 32`` rows in ``names`` order) at ``K`` score cutoffs.

    Attributes:
        names: ``B`` breakdown names (``BREAKDOWN_NAMES``).
        ap, aph: ``(B,)`` float32 mAP and mAPH.
        score_cutoffs: ``(K,)`` float32.
        precision, precision_ha, recall: ``(B, K)`` float32, as the official ``DetectionMetrics``
            (precision set to 1 where recall is 0).
        tp, fp, fn: ``(B, K)`` int64 counts summed over frames.
        sum_ha: ``(B, K)`` float32 summed heading accuracy of the true positives.
        num_frames: frames (keys) seen in predictions or ground truth.
    """

    names: tuple[str, ...]
    ap: np.ndarray
    aph: np.ndarray
    score_cutoffs: np.ndarray
    precision: np.ndarray
    precision_ha: np.ndarray
    recall: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    sum_ha: np.ndarray
    num_frames: int

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no breakdown {name!r}; known: {', '.join(self.names)}") from None

    def __getitem__(self, name: str) -> tuple[float, float]:
        """``(mAP, mAPH)`` of one breakdown."""
        i = self.index(name)
        return float(self.ap[i]), float(self.aph[i])

    def lines(self) -> list[str]:
        """One line per breakdown in the official tool's format, e.g.
        ``OBJECT_TYPE_TYPE_VEHICLE_LEVEL_1: [mAP 0.208277] [mAPH 0.162823]`` (6 significant
        digits, as C++ ``ostream`` prints a float)."""
        return [
            f"{n}: [mAP {_cpp_float(a)}] [mAPH {_cpp_float(h)}]"
            for n, a, h in zip(self.names, self.ap, self.aph, strict=True)
        ]

    def as_dict(self) -> dict[str, float]:
        """``{"<breakdown>/AP": ..., "<breakdown>/APH": ...}`` as the official TF op's keys."""
        out = {}
        for n, a, h in zip(self.names, self.ap, self.aph, strict=True):
            out[f"{n}/AP"] = float(a)
            out[f"{n}/APH"] = float(h)
        return out


def _cpp_float(value: float) -> str:
    """``std::ostream << float`` with the default precision (6 significant digits, ``%g``)."""
    return f"{float(value):.6g}"


def mean_average_precision(precisions: Sequence[float], recalls: Sequence[float], delta: float = RECALL_DELTA) -> float:
    """Area under the precision envelope of a P/R curve, as the official
    ``ComputeMeanAveragePrecision`` (float32 arithmetic).

    The points (plus a fake ``(r=0, p=1)``) are keyed by recall (max precision per recall) and
    walked from high recall to low, taking the running maximum precision; gaps wider than ``delta``
    are filled with points every ``delta`` carrying the running maximum; the fake point takes the
    precision of the next one; the result is the trapezoidal integral over recall.
    """
    f32 = np.float32
    if len(precisions) != len(recalls):
        raise ValueError(f"{len(precisions)} precisions but {len(recalls)} recalls")
    if not 0.0 < delta <= 1.0:
        raise ValueError(f"delta must be in (0, 1], got {delta}")
    if len(precisions) == 0:
        return 0.0
    best: dict[float, np.float32] = {0.0: f32(1.0)}
    for p, r in zip(np.asarray(precisions, np.float32), np.asarray(recalls, np.float32), strict=True):
        key = float(r)
        best[key] = max(best.get(key, f32(0.0)), p)
    delta32, slack = f32(delta), f32(delta) + f32(1e-6)
    curve: list[list[np.float32]] = []  # [p, r], recall descending
    last = f32(min(best))
    max_p = f32(0.0)
    for r in sorted(best, reverse=True):
        r32 = f32(r)
        while last - r32 > slack:
            last = f32(last - delta32)
            curve.append([max_p, last])
        max_p = max(best[r], max_p)
        curve.append([max_p, r32])
        last = r32
    if len(curve) >= 2:
        curve[-1][0] = curve[-2][0]
    total = f32(0.0)
    for (p0, r0), (p1, r1) in zip(curve[:-1], curve[1:], strict=True):
        # float - float and float + float stay float32; 0.5 * ... is double; += rounds to float32.
        total = f32(float(total) + 0.5 * float(f32(r0 - r1)) * float(f32(p0 + p1)))
    return float(total)


def _normalize_angle(rad: np.ndarray) -> np.ndarray:
    """Wraps to [-pi, pi) in double as the official ``NormalizeAngle`` (truncating modulo)."""
    x = np.asarray(rad, np.float64) + math.pi
    y = 2.0 * math.pi
    modulo = x - np.trunc(x * (1.0 / y)) * y
    shifted = y + modulo
    return np.where(modulo >= 0, modulo, np.where(shifted >= y, 0.0, shifted)) - math.pi


def heading_accuracy(pd_heading: np.ndarray, gt_heading: np.ndarray) -> np.ndarray:
    """Official heading accuracy, float32, broadcasting: ``clamp(1 - d / pi, 0, 1)`` where ``d`` is
    the wrapped absolute heading difference in [0, pi] (0.1 vs -0.1 gives 1 - 0.2 / pi; pi vs 0
    gives 0)."""
    pd = _normalize_angle(pd_heading).astype(np.float32)
    gt = _normalize_angle(gt_heading).astype(np.float32)
    diff = np.abs(pd - gt)
    diff = np.where(diff > math.pi, (2.0 * math.pi - diff.astype(np.float64)).astype(np.float32), diff)
    return np.clip(1.0 - diff.astype(np.float64) / math.pi, 0.0, 1.0).astype(np.float32)


def _iou_3d(pd_boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    """``(P, G)`` float64 official 3D IoU: exact rotated overlap, clamped to [0, 1]; 0 for a box with
    an extent <= 0.01 m (tiny) or >= 1e6 m (huge).

    The official ``ComputeIoU`` returns 0 for a pair in which either box has a length, width or
    height of at least 1e6 before it looks at the geometry, so two identical huge boxes do not
    match (found by the differential tests: pointformer counted them as true positives)."""
    iou = boxes_iou_3d(torch.from_numpy(pd_boxes), torch.from_numpy(gt_boxes)).numpy()
    extents_pd, extents_gt = pd_boxes[:, 3:6], gt_boxes[:, 3:6]
    iou[((extents_pd <= MIN_BOX_EXTENT) | (extents_pd >= MAX_BOX_EXTENT)).any(axis=1)] = 0.0
    iou[:, ((extents_gt <= MIN_BOX_EXTENT) | (extents_gt >= MAX_BOX_EXTENT)).any(axis=1)] = 0.0
    return np.clip(iou, 0.0, 1.0)


def _range_shard(boxes: np.ndarray) -> np.ndarray:
    r = np.sqrt(boxes[:, 0] * boxes[:, 0] + boxes[:, 1] * boxes[:, 1] + boxes[:, 2] * boxes[:, 2])
    return np.where(r < 30.0, 0, np.where(r < 50.0, 1, 2)).astype(np.int64)


# --- matching (numba) ---------------------------------------------------------------------------


@numba.njit(cache=True)
def _add_neighbours(i, idx, w, lx, ly, in_n, n_list, n_parent, nn):
    """Appends to N (in column order) the columns joined to row ``i`` by a tight edge."""
    for j in range(w.shape[0]):
        if not in_n[j] and lx[i] + ly[j] == w[i, j]:
            in_n[j] = True
            n_list[nn] = j
            n_parent[nn] = idx
            nn += 1
    return nn


@numba.njit(cache=True)
def _kuhn_munkres(w):
    """Maximum-weight perfect matching of a square int64 matrix; ``row -> column``.

    The procedure of the official ``hungarian.cc``: labels start at ``lx = row max``, ``ly = 0``;
    the lowest unmatched row roots an alternating tree grown through tight edges, columns taken in
    the order they became reachable; when no new column is reachable the labels drop by the least
    slack; a free column augments the matching along the tree.
    """
    n = w.shape[0]
    lx = np.zeros(n, np.int64)
    ly = np.zeros(n, np.int64)
    for i in range(n):
        for j in range(n):
            lx[i] = max(lx[i], w[i, j])
    row_to_col = np.full(n, -1, np.int64)
    col_to_row = np.full(n, -1, np.int64)
    s_list = np.empty(n, np.int64)
    t_list = np.empty(n, np.int64)
    t_parent = np.empty(n, np.int64)
    in_t = np.zeros(n, np.bool_)
    n_list = np.empty(n, np.int64)
    n_parent = np.empty(n, np.int64)
    in_n = np.zeros(n, np.bool_)
    while True:
        root = -1
        for i in range(n):
            if row_to_col[i] == -1:
                root = i
                break
        if root == -1:
            return row_to_col
        ns = 1
        s_list[0] = root
        nt = 0
        in_t[:] = False
        in_n[:] = False
        nn = _add_neighbours(root, 0, w, lx, ly, in_n, n_list, n_parent, 0)
        while True:
            if nn == nt:  # every reachable column is in the tree: relax the labels
                a = np.iinfo(np.int64).max
                for ii in range(ns):
                    i = s_list[ii]
                    for j in range(n):
                        if not in_t[j]:
                            a = min(a, lx[i] + ly[j] - w[i, j])
                for ii in range(ns):
                    lx[s_list[ii]] -= a
                for k in range(nt):
                    ly[t_list[k]] += a
                in_n[:] = False
                nn = 0
                for ii in range(ns):
                    nn = _add_neighbours(s_list[ii], ii, w, lx, ly, in_n, n_list, n_parent, nn)
            jj = 0
            while in_t[n_list[jj]]:
                jj += 1
            j = n_list[jj]
            in_t[j] = True
            t_list[nt] = j
            t_parent[nt] = n_parent[jj]
            nt += 1
            z = col_to_row[j]
            if z == -1:  # augment along the tree from the free column back to the root
                for k in range(nt - 1, -1, -1):
                    if t_list[k] == j:
                        ii = t_parent[k]
                        i = s_list[ii]
                        previous = row_to_col[i]
                        row_to_col[i] = j
                        col_to_row[j] = i
                        j = previous
                        if ii == 0:
                            break
                break
            s_list[ns] = z
            ns += 1
            nn = _add_neighbours(z, ns - 1, w, lx, ly, in_n, n_list, n_parent, nn)


@numba.njit(cache=True)
def _find(parent, x):
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@numba.njit(cache=True)
def _match(rows, gts, can, weight, pd_match):
    """Matches predictions ``rows`` to ground truths ``gts`` (indices into ``can``/``weight``),
    component by component; writes the matched ground-truth index (or -1) to ``pd_match[row]``."""
    k, m = rows.shape[0], gts.shape[0]
    parent = np.arange(k + m)
    for a in range(k):
        pd_match[rows[a]] = -1
        for b in range(m):
            if can[rows[a], gts[b]]:
                ra, rb = _find(parent, a), _find(parent, k + b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    roots = np.empty(k + m, np.int64)
    for x in range(k + m):
        roots[x] = _find(parent, x)
    comp_rows = np.empty(k, np.int64)
    comp_cols = np.empty(m, np.int64)
    for a in range(k):
        if roots[a] != a:  # each component is handled from its first (lowest) prediction
            continue
        nr = 0
        for a2 in range(a, k):
            if roots[a2] == a:
                comp_rows[nr] = rows[a2]
                nr += 1
        nc = 0
        for b in range(m):
            if roots[k + b] == a:
                comp_cols[nc] = gts[b]
                nc += 1
        if nc == 0:
            continue
        if nr == 1 and nc == 1:
            pd_match[comp_rows[0]] = comp_cols[0]
            continue
        size = max(nr, nc)
        w = np.zeros((size, size), np.int64)
        for r in range(nr):
            for c in range(nc):
                w[r, c] = weight[comp_rows[r], comp_cols[c]]
        assignment = _kuhn_munkres(w)
        for r in range(nr):
            c = assignment[r]
            if c < nc and can[comp_rows[r], comp_cols[c]]:
                pd_match[comp_rows[r]] = comp_cols[c]


@numba.njit(cache=True)
def _shard_measurements(can, weight, ha, pd_passes, pd_nlz, pd_shard, gt_shard, gt_level, num_shards, num_cutoffs):
    """Per shard and score cutoff: TP, FP, FN at LEVEL_1 and LEVEL_2, and the float32 sum of the
    TPs' heading accuracies (in prediction order), for one frame and object type."""
    tp = np.zeros((num_shards, num_cutoffs), np.int64)
    fp = np.zeros((num_shards, num_cutoffs), np.int64)
    fn1 = np.zeros((num_shards, num_cutoffs), np.int64)
    fn2 = np.zeros((num_shards, num_cutoffs), np.int64)
    sum_ha = np.zeros((num_shards, num_cutoffs), np.float32)
    num_pd, num_gt = pd_shard.shape[0], gt_shard.shape[0]
    pd_match = np.full(num_pd, -1, np.int64)
    gt_matched = np.zeros(num_gt, np.bool_)
    for s in range(num_shards):
        pds = np.empty(num_pd, np.int64)
        n_all = 0
        for i in range(num_pd):
            if pd_shard[i] == s:
                pds[n_all] = i
                n_all += 1
        gts = np.empty(num_gt, np.int64)
        m = 0
        for j in range(num_gt):
            if gt_shard[j] == s:
                gts[m] = j
                m += 1
        gts = gts[:m]
        rows = np.empty(n_all, np.int64)
        previous = -1
        for c in range(num_cutoffs):
            k = 0
            for a in range(n_all):
                if pd_passes[pds[a]] > c:
                    rows[k] = pds[a]
                    k += 1
            if k == previous:  # same predictions as the previous cutoff: same matching
                tp[s, c], fp[s, c], fn1[s, c], fn2[s, c] = tp[s, c - 1], fp[s, c - 1], fn1[s, c - 1], fn2[s, c - 1]
                sum_ha[s, c] = sum_ha[s, c - 1]
                continue
            previous = k
            _match(rows[:k], gts, can, weight, pd_match)
            for j in gts:
                gt_matched[j] = False
            total = np.float32(0.0)
            for a in range(k):
                i = rows[a]
                if pd_match[i] >= 0:
                    tp[s, c] += 1
                    total += ha[i, pd_match[i]]
                    gt_matched[pd_match[i]] = True
                elif not pd_nlz[i]:
                    fp[s, c] += 1
            sum_ha[s, c] = total
            for j in gts:
                if not gt_matched[j]:
                    if gt_level[j] <= 1:
                        fn1[s, c] += 1
                    if gt_level[j] <= 2:
                        fn2[s, c] += 1
    return tp, fp, fn1, fn2, sum_ha


# --- evaluation ---------------------------------------------------------------------------------


def prepare_ground_truth(gt: WaymoObjects) -> WaymoObjects:
    """The official tool's ground-truth preparation: drops objects with no lidar points and sets an
    unset detection difficulty (0) to LEVEL_2 for at most 5 points, LEVEL_1 otherwise."""
    points = gt.num_lidar_points_in_box
    keep = points > 0
    difficulty = gt.detection_difficulty.copy()
    unset = difficulty == 0
    difficulty[unset] = np.where(points[unset] <= LEVEL2_MAX_POINTS, 2, 1)
    columns = {name: getattr(gt, name) for name in gt.__dataclass_fields__}
    columns["detection_difficulty"] = difficulty
    return WaymoObjects(**{name: value[keep] for name, value in columns.items()})


def _frame_groups(objects: WaymoObjects) -> dict[tuple[str, int], np.ndarray]:
    """Object indices per frame key ``("<context>_<camera>", timestamp)``, in file order."""
    groups: dict[tuple[str, int], list[int]] = {}
    keys = zip(
        objects.context_names.tolist(),
        objects.camera_names.tolist(),
        objects.frame_timestamps_micros.tolist(),
        strict=True,
    )
    for i, (context, camera, timestamp) in enumerate(keys):
        groups.setdefault((f"{context}_{camera}", timestamp), []).append(i)
    return {k: np.asarray(v, np.int64) for k, v in groups.items()}


def evaluate(
    predictions: WaymoObjects,
    ground_truth: WaymoObjects,
    score_cutoffs: np.ndarray | None = None,
    prepare: bool = True,
) -> WaymoMetrics:
    """Waymo detection metrics of ``predictions`` against ``ground_truth``, as the official
    ``compute_detection_metrics_main`` (see the module docstring).

    Args:
        predictions, ground_truth: objects of any number of frames, matched by frame key
            ``(context name, camera name, timestamp)``; boxes in each frame's vehicle frame.
        score_cutoffs: ascending float32 cutoffs (default ``SCORE_CUTOFFS``, the official 101).
        prepare: apply the official ground-truth preparation (``prepare_ground_truth``); pass
            False for ground truth already prepared.
    """
    cutoffs = SCORE_CUTOFFS if score_cutoffs is None else np.asarray(score_cutoffs, np.float32)
    if cutoffs.ndim != 1 or cutoffs.size == 0 or np.any(np.diff(cutoffs) <= 0):
        raise ValueError("score_cutoffs must be a non-empty strictly ascending 1-D array")
    check_inputs(predictions, ground_truth, prepared=not prepare)  # DataFormatError instead of a wrong metric
    gt = prepare_ground_truth(ground_truth) if prepare else ground_truth
    num_cutoffs = cutoffs.size
    tp = np.zeros((NUM_SHARDS, num_cutoffs), np.int64)
    fp = np.zeros_like(tp)
    fn1 = np.zeros_like(tp)
    fn2 = np.zeros_like(tp)
    sum_ha = np.zeros((NUM_SHARDS, num_cutoffs), np.float32)

    pd_groups, gt_groups = _frame_groups(predictions), _frame_groups(gt)
    keys = sorted(set(pd_groups) | set(gt_groups))
    empty = np.zeros(0, np.int64)
    pd_passes_all = np.searchsorted(cutoffs, predictions.scores, side="right").astype(np.int64)
    pd_range_all = _range_shard(predictions.boxes)
    gt_range_all = _range_shard(gt.boxes)
    for key in keys:
        pd_idx, gt_idx = pd_groups.get(key, empty), gt_groups.get(key, empty)
        pd_types, gt_types = predictions.types[pd_idx], gt.types[gt_idx]
        for t in TYPE_NAMES:
            p = pd_idx[pd_types == t]
            g = gt_idx[gt_types == t]
            if p.size == 0 and g.size == 0:
                continue
            pd_boxes, gt_boxes = predictions.boxes[p], gt.boxes[g]
            if p.size and g.size:
                iou = _iou_3d(pd_boxes, gt_boxes).astype(np.float32)
                can = iou >= np.float32(IOU_THRESHOLDS[t])
                weight = np.where(can, np.floor(iou.astype(np.float64) * 1e6 + 0.5), 0).astype(np.int64)
                ha = heading_accuracy(pd_boxes[:, 6:7], gt_boxes[None, :, 6])
            else:
                can = np.zeros((p.size, g.size), bool)
                weight = np.zeros((p.size, g.size), np.int64)
                ha = np.zeros((p.size, g.size), np.float32)
            common = (can, weight, ha, pd_passes_all[p], predictions.overlap_with_nlz[p])
            level = gt.detection_difficulty[g].astype(np.int64)
            by_type = _shard_measurements(
                *common, np.zeros(p.size, np.int64), np.zeros(g.size, np.int64), level, 1, num_cutoffs
            )
            by_range = _shard_measurements(*common, pd_range_all[p], gt_range_all[g], level, 3, num_cutoffs)
            rows = (slice(t - 1, t), slice(NUM_TYPES + 3 * (t - 1), NUM_TYPES + 3 * t))
            for row, result in zip(rows, (by_type, by_range), strict=True):
                for acc, value in zip((tp, fp, fn1, fn2), result[:4], strict=True):
                    acc[row] += value
                sum_ha[row] = sum_ha[row] + result[4]  # float32, frame by frame as the official merge
    return _metrics(cutoffs, tp, fp, fn1, fn2, sum_ha, len(keys))


def _metrics(cutoffs, tp, fp, fn1, fn2, sum_ha, num_frames) -> WaymoMetrics:
    """Precision, recall and AP per breakdown (shard-major, LEVEL_1 then LEVEL_2)."""
    b = 2 * NUM_SHARDS
    tps = np.repeat(tp, 2, axis=0)
    fps = np.repeat(fp, 2, axis=0)
    has = np.repeat(sum_ha, 2, axis=0)
    fns = np.empty_like(tps)
    fns[0::2], fns[1::2] = fn1, fn2
    detections = tps + fps
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(detections > 0, tps.astype(np.float32) / detections.astype(np.float32), 0.0)
        precision_ha = np.where(detections > 0, has / detections.astype(np.float32), 0.0)
        relevant = tps + fns
        recall = np.where(relevant > 0, tps.astype(np.float32) / relevant.astype(np.float32), 0.0)
    precision = precision.astype(np.float32)
    precision_ha = precision_ha.astype(np.float32)
    recall = recall.astype(np.float32)
    precision[recall == 0] = 1.0
    precision_ha[recall == 0] = 1.0
    ap = np.asarray([mean_average_precision(precision[i], recall[i]) for i in range(b)], np.float32)
    aph = np.asarray([mean_average_precision(precision_ha[i], recall[i]) for i in range(b)], np.float32)
    return WaymoMetrics(
        names=BREAKDOWN_NAMES,
        ap=ap,
        aph=aph,
        score_cutoffs=cutoffs.copy(),
        precision=precision,
        precision_ha=precision_ha,
        recall=recall,
        tp=tps,
        fp=fps,
        fn=fns,
        sum_ha=has,
        num_frames=num_frames,
    )


# --- inputs from pointformer's frame tables and model outputs ------------------------------------

# Frame-table class names (``pointformer.data.convert.waymo.WAYMO_CLASS_NAMES``) -> Label.Type.
CLASS_TYPES = {"Vehicle": 1, "Pedestrian": 2, "Sign": 3, "Cyclist": 4}


def _types_of(names: np.ndarray) -> np.ndarray:
    unknown = sorted(set(np.asarray(names, np.str_).tolist()) - set(CLASS_TYPES))
    if unknown:
        raise ValueError(f"unknown class names {unknown}; Waymo classes are {list(CLASS_TYPES)}")
    return np.asarray([CLASS_TYPES[n] for n in np.asarray(names, np.str_).tolist()], np.int8)


def ground_truth_from_frames(frames) -> WaymoObjects:
    """Ground truth of a converted Waymo split (``pointformer.data.layout.FrameRecords``): the
    sequence name is the context name, boxes the first 7 columns (vehicle frame), with the labelled
    detection difficulty and point counts (``evaluate`` applies the official preparation)."""
    counts = np.diff(frames.box_offsets)
    return WaymoObjects.from_arrays(
        np.repeat(np.asarray(frames.sequence, np.str_), counts),
        np.repeat(frames.timestamp_micros, counts),
        np.asarray(frames.boxes[:, :7], np.float64),
        _types_of(frames.names),
        detection_difficulty=frames.difficulty,
        tracking_difficulty=frames.tracking_difficulty,
        num_lidar_points_in_box=frames.num_points_in_box,
        ids=frames.object_ids,
    )


def predictions_from_arrays(
    context_names: Sequence[str],
    timestamps_micros: Sequence[int],
    boxes: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    names: Sequence[np.ndarray],
) -> WaymoObjects:
    """Predictions of ``F`` frames from a model's per-frame outputs.

    Args:
        context_names, timestamps_micros: ``F`` frame keys (the frame table's ``sequence`` and
            ``timestamp_micros``).
        boxes: ``F`` arrays ``(N_f, >=7)`` ``[x, y, z, dx, dy, dz, heading, ...]`` in the vehicle
            frame (extra columns such as velocity are ignored).
        scores: ``F`` arrays ``(N_f,)`` in [0, 1].
        names: ``F`` arrays ``(N_f,)`` of class names (``Vehicle``, ``Pedestrian``, ``Sign``,
            ``Cyclist``).
    """
    lengths = [len(b) for b in boxes]
    if not len(context_names) == len(timestamps_micros) == len(boxes) == len(scores) == len(names):
        raise ValueError("context_names, timestamps_micros, boxes, scores and names need one entry per frame")
    for f, (b, s, n) in enumerate(zip(boxes, scores, names, strict=True)):
        if np.ndim(b) != 2 or np.shape(b)[1] < 7 or len(s) != len(b) or len(n) != len(b):
            raise ValueError(f"frame {f}: boxes must be (N, >=7) with N scores and N names")
    flat_scores = np.concatenate([np.asarray(s, np.float32).reshape(-1) for s in scores]) if boxes else np.zeros(0)
    flat_names = np.concatenate([np.asarray(n, np.str_).reshape(-1) for n in names]) if boxes else np.zeros(0, np.str_)
    flat_boxes = np.concatenate([np.asarray(b, np.float64)[:, :7] for b in boxes]) if boxes else np.zeros((0, 7))
    return WaymoObjects.from_arrays(
        np.repeat(np.asarray(context_names, np.str_), lengths),
        np.repeat(np.asarray(timestamps_micros, np.int64), lengths),
        flat_boxes,
        _types_of(flat_names),
        flat_scores,
    )
