"""nuScenes detection metrics (mAP, TP errors, NDS), equal to nuscenes-devkit 1.2.0's
``DetectionEval`` with the ``detection_cvpr_2019`` configuration, vectorized with numpy.

Pipeline (``evaluate``), as the devkit defines it:

1. Samples: those of the split's scenes, in the sample table's order. For a custom split
   (``splits.json``) every split sample must have an entry in the results (extra entries are
   ignored) and predictions are taken in split order; for a predefined split (``mini_val``...) the
   results must list exactly the split's samples and keep the file's order. A sample may hold at
   most ``max_boxes_per_sample`` (500) predictions; predictions and ground truth must both hold at
   least one box.
2. Filters, on ground truth and predictions separately: keep boxes whose bird's-eye distance to the
   ego (the pose of the sample's LIDAR_TOP keyframe) is below the class range; drop boxes with
   ``num_pts == 0`` (ground truth: lidar + radar points; predictions: -1, never dropped); drop
   bicycles and motorcycles whose centre lies in a ``static_object.bicycle_rack`` box of the
   sample (inclusive bounds along the rack's three edges).
3. Matching, per class and distance threshold (0.5, 1, 2, 4 m): predictions by score, highest
   first, ties broken by the later position in the prediction list (samples in order, then list
   order); each takes the nearest (bird's-eye centre distance) ground truth of its sample and
   class not yet taken, the first in annotation order on equal distances, if that distance is
   below the threshold (strict); otherwise it is a false positive.
4. Precision at 101 recall points (``np.interp`` of the raw curve, 0 beyond the reached recall),
   AP = mean of ``max(p - 0.1, 0)`` over recalls 0.11..1 divided by 0.9. TP errors (ATE, ASE,
   AOE, AVE, AAE; at 2 m) as NaN-ignoring cumulative means of the matches, interpolated at the
   confidences of those recall points and averaged from recall 0.11 to the highest reached one
   (1 if never reached); orientation error modulo pi for barriers; AVE and AAE not defined (NaN)
   for barriers and AOE, AVE, AAE not for traffic cones; a class without ground truth or matches
   has AP 0 and errors 1.
5. mAP = mean over classes of the mean AP over thresholds; mTP = NaN-mean over classes;
   TP score = max(0, 1 - mTP); NDS = (5 mAP + sum of TP scores) / 10.

Ground truth comes from a nuScenes dataroot through pointformer's table reader
(``load_ground_truth``); predictions from the official results JSON (``nuscenes_results``).
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter, methodcaller
from pathlib import Path

import numpy as np

from pointformer.data.formats.errors import DataFormatError
from pointformer.data.formats.nuscenes import MAX_VELOCITY_TIME_DIFF, NuScenesReader
from pointformer.data.formats.nuscenes_tables import (
    ATTRIBUTE_NAMES,
    CATEGORY_TO_DETECTION,
    DETECTION_NAMES,
    DEVKIT_SPLITS,
    NuScenesTables,
    quaternions_to_matrices,
)
from pointformer.evaluation.nuscenes_results import (
    DEFAULT_META,
    DetectionBoxes,
    NuScenesEvalError,
    NuScenesResults,
    _float_rows,
    default_attribute,
    read_results,
    results_from_json,
    results_from_lidar_boxes,
    write_results,
)

__all__ = [
    "DEFAULT_META",
    "DetectionBoxes",
    "DetectionConfig",
    "NuScenesEvalError",
    "NuScenesGroundTruth",
    "NuScenesMetrics",
    "LoadTimes",
    "NuScenesResults",
    "TP_METRICS",
    "default_attribute",
    "evaluate",
    "evaluate_files",
    "load_ground_truth",
    "read_results",
    "results_from_json",
    "results_from_lidar_boxes",
    "write_results",
    "load_inputs",
]

BICYCLE_RACK = "static_object.bicycle_rack"
TP_METRICS: tuple[str, ...] = ("trans_err", "scale_err", "orient_err", "vel_err", "attr_err")
TP_METRIC_LABELS = {"trans_err": "mATE", "scale_err": "mASE", "orient_err": "mAOE", "vel_err": "mAVE",
                    "attr_err": "mAAE"}  # fmt: skip
# Recall points of the interpolated curves (the devkit's DetectionMetricData.nelem).
NUM_RECALL_POINTS = 101
# TP errors a class does not define (NaN): cones have no orientation, velocity or attribute;
# barriers no velocity or attribute.
UNDEFINED_TP = {"traffic_cone": ("attr_err", "vel_err", "orient_err"), "barrier": ("attr_err", "vel_err")}
_CYCLE_CLASSES = ("bicycle", "motorcycle")


@dataclass(frozen=True)
class DetectionConfig:
    """The evaluation settings; the defaults are ``detection_cvpr_2019``."""

    class_range: dict[str, float] = field(
        default_factory=lambda: {
            "car": 50,
            "truck": 50,
            "bus": 50,
            "trailer": 50,
            "construction_vehicle": 50,
            "pedestrian": 40,
            "motorcycle": 40,
            "bicycle": 40,
            "traffic_cone": 30,
            "barrier": 30,
        }  # fmt: skip
    )
    dist_fcn: str = "center_distance"
    dist_ths: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    dist_th_tp: float = 2.0
    min_recall: float = 0.1
    min_precision: float = 0.1
    max_boxes_per_sample: int = 500
    mean_ap_weight: int = 5

    def __post_init__(self) -> None:
        if self.dist_fcn != "center_distance":
            raise ValueError(f"only dist_fcn 'center_distance' is implemented, not {self.dist_fcn!r}")
        if self.dist_th_tp not in self.dist_ths:
            raise ValueError(f"dist_th_tp {self.dist_th_tp} must be one of dist_ths {self.dist_ths}")
        unknown = set(self.class_range) - set(DETECTION_NAMES)
        if unknown:
            raise ValueError(f"class_range names unknown classes {sorted(unknown)}")

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.class_range)

    def serialize(self) -> dict:
        """The devkit's ``DetectionConfig.serialize()``."""
        return {
            "class_range": dict(self.class_range),
            "dist_fcn": self.dist_fcn,
            "dist_ths": list(self.dist_ths),
            "dist_th_tp": self.dist_th_tp,
            "min_recall": self.min_recall,
            "min_precision": self.min_precision,
            "max_boxes_per_sample": self.max_boxes_per_sample,
            "mean_ap_weight": self.mean_ap_weight,
        }


@dataclass(frozen=True, eq=False)
class NuScenesGroundTruth:
    """Ground truth of one split.

    Attributes:
        boxes: detection-class annotations per split sample (samples in the sample table's
            order, each sample's boxes in annotation order), ``num_pts`` = lidar + radar points.
        ego_translation: ``(S, 3)`` float64 global translation of each sample's ego pose (its
            LIDAR_TOP keyframe).
        racks: sample index -> ``(K, 10)`` float64 bicycle racks ``[translation(3), size wlh(3),
            rotation wxyz(4)]``.
        split: the split name; ``predefined``: whether the devkit predefines it (then the
            results must list exactly its samples, in any order).
    """

    boxes: DetectionBoxes
    ego_translation: np.ndarray
    racks: dict[int, np.ndarray]
    split: str
    predefined: bool

    @property
    def sample_tokens(self) -> tuple[str, ...]:
        return self.boxes.sample_tokens


def load_ground_truth(dataroot: str | os.PathLike, version: str, split: str) -> NuScenesGroundTruth:
    """Ground truth of ``split``: one the devkit predefines (``mini_train``/``mini_val``;
    ``train``/``val``/``test``... with nuscenes-devkit installed for their scene names), or a
    ``splits.json`` custom split.

    Built column by column from the annotation table (no Python object per box): the annotations
    of the split's samples whose category has a detection class, velocities as
    ``NuScenesReader.box_velocity`` (the devkit's ``box_velocity``) computed for all at once.

    Raises:
        NuScenesEvalError: an annotation with several attributes, a sample without a LIDAR_TOP
            keyframe, a predefined split on a version without its suffix (``mini`` for the mini
            splits, ``trainval`` for train/val, ``test`` for test).
        DataFormatError: malformed tables (from the reader), prev/next annotations not later in
            time.
    """
    required = DEVKIT_SPLITS.get(split)
    predefined = required is not None
    if predefined and not version.endswith(required):
        raise NuScenesEvalError(f"split {split!r} requires a version ending in {required!r}, not {version!r}")
    reader = NuScenesReader(dataroot, version)
    t = reader.tables
    scenes = set(reader.split_scene_names(split))
    scene_name = {s["token"]: s["name"] for s in t.tables["scene"]}
    tokens = [s["token"] for s in t.tables["sample"] if scene_name.get(s["scene_token"]) in scenes]
    if not tokens:
        raise NuScenesEvalError(f"split {split!r} has no samples in {Path(dataroot) / version}")
    index = {tok: i for i, tok in enumerate(tokens)}
    # Instance -> detection class index, -2 for a bicycle rack, -1 for other categories.
    code_of_category = {BICYCLE_RACK: -2, **{c: DETECTION_NAMES.index(n) for c, n in CATEGORY_TO_DETECTION.items()}}
    code_of_instance = {
        r["token"]: code_of_category.get(t.get("category", r["category_token"])["name"], -1)
        for r in t.tables["instance"]
    }
    anns = t.tables["sample_annotation"]
    m = len(anns)
    sample = np.fromiter(map(index.get, map(itemgetter("sample_token"), anns), repeat(-1)), np.int64, m)
    code = np.fromiter(map(code_of_instance.__getitem__, map(itemgetter("instance_token"), anns)), np.int64, m)
    for a in np.flatnonzero(sample >= 0).tolist():
        if len(anns[a]["attribute_tokens"]) > 1:  # the table reader refuses these already
            raise NuScenesEvalError(f"sample_annotation {anns[a]['token']!r} has several attributes (at most 1)")
    # Split annotations grouped by sample (sample order), annotation order kept within a sample.
    order = np.argsort(sample, kind="stable")
    order = order[sample[order] >= 0]
    boxes_at, racks_at = order[code[order] >= 0], order[code[order] == -2]
    box_anns = [anns[a] for a in boxes_at.tolist()]
    attribute_name = {r["token"]: r["name"] for r in t.tables["attribute"]}
    n = len(box_anns)
    boxes = DetectionBoxes(
        sample_tokens=tuple(tokens),
        offsets=np.searchsorted(sample[boxes_at], np.arange(len(tokens) + 1)).astype(np.int64),
        translation=_annotation_rows(box_anns, "translation", 3),
        size=_annotation_rows(box_anns, "size", 3),
        rotation=_annotation_rows(box_anns, "rotation", 4),
        velocity=_box_velocities(t, box_anns)[:, :2],
        names=np.array(DETECTION_NAMES)[code[boxes_at]] if n else np.zeros(0, "<U1"),
        attributes=np.array(
            [attribute_name[a[0]] if a else "" for a in map(itemgetter("attribute_tokens"), box_anns)], dtype=str
        ),  # fmt: skip
        scores=np.full(n, -1.0),
        num_pts=sum(
            np.fromiter(map(int, map(methodcaller("get", k, 0), box_anns)), np.int64, n)
            for k in ("num_lidar_pts", "num_radar_pts")
        ),  # fmt: skip
    )
    boxes.validate(ground_truth=True)
    rack_anns = [anns[a] for a in racks_at.tolist()]
    rack_rows = np.concatenate(
        [_annotation_rows(rack_anns, k, w) for k, w in (("translation", 3), ("size", 3), ("rotation", 4))], axis=1
    )
    rack_sample = sample[racks_at]
    racks = {int(s): rack_rows[rack_sample == s] for s in np.unique(rack_sample).tolist()}
    ego = np.zeros((len(tokens), 3))
    for s, tok in enumerate(tokens):
        lidar = reader.keyframe_lidar_token(tok)
        if lidar is None:
            raise NuScenesEvalError(f"sample {tok!r} has no LIDAR_TOP keyframe (its ego pose places the boxes)")
        ego[s] = t.get("ego_pose", t.get("sample_data", lidar)["ego_pose_token"])["translation"]
    return NuScenesGroundTruth(boxes, ego, racks, split, predefined)


def _annotation_rows(anns: list[dict], key: str, width: int) -> np.ndarray:
    """``(len(anns), width)`` float64 of an annotation field; DataFormatError naming the first
    annotation whose field is not ``width`` numbers."""
    try:
        return _float_rows(anns, key, width)
    except (KeyError, TypeError, ValueError):
        for a in anns:
            v = a.get(key)
            try:
                if not isinstance(v, list) or len(v) != width:
                    raise ValueError
                np.array(v, np.float64)
            except (TypeError, ValueError):
                raise DataFormatError(
                    f"sample_annotation {a.get('token')!r}: {key} must be a list of {width} numbers, not {v!r}"
                ) from None
        raise


def _box_velocities(t: NuScenesTables, anns: list[dict]) -> np.ndarray:
    """``(N, 3)`` float64 global velocities of annotations, each exactly as
    ``NuScenesReader.box_velocity`` (the devkit's ``box_velocity``) gives it: the translation
    difference of the prev and next annotations (or of one of them and the annotation itself)
    over their samples' time, NaN without either or beyond 1.5 s (3 s for prev to next)."""
    n = len(anns)
    if n == 0:
        return np.zeros((0, 3))
    by_token = t.index["sample_annotation"]
    prev = list(map(itemgetter("prev"), anns))
    nxt = list(map(itemgetter("next"), anns))
    has_prev = np.fromiter(map(bool, prev), bool, n)
    has_next = np.fromiter(map(bool, nxt), bool, n)
    first = [by_token[p] if p else a for p, a in zip(prev, anns, strict=True)]
    last = [by_token[q] if q else a for q, a in zip(nxt, anns, strict=True)]
    sample_time = {r["token"]: r["timestamp"] for r in t.tables["sample"]}

    def seconds(records):
        times = np.fromiter(map(sample_time.__getitem__, map(itemgetter("sample_token"), records)), np.float64, n)
        return 1e-6 * times

    dt = seconds(last) - seconds(first)
    max_dt = np.where(has_prev & has_next, 2 * MAX_VELOCITY_TIME_DIFF, MAX_VELOCITY_TIME_DIFF)
    known = (has_prev | has_next) & ~(dt > max_dt)
    bad = known & (dt <= 0)
    if bad.any():
        a = anns[int(np.flatnonzero(bad)[0])]
        raise DataFormatError(f"sample_annotation {a['token']!r}: prev/next annotations are not later in time")
    out = np.full((n, 3), np.nan)
    diff = _annotation_rows(last, "translation", 3) - _annotation_rows(first, "translation", 3)
    out[known] = diff[known] / dt[known, None]
    return out


# --- geometry -------------------------------------------------------------------------------------


def _yaw(q: np.ndarray) -> np.ndarray:
    """Yaw (rad) of quaternions: the angle of the rotated x axis in the x-y plane."""
    r = quaternions_to_matrices(q)
    return np.arctan2(r[:, 1, 0], r[:, 0, 0])


def _in_racks(points: np.ndarray, point_sample: np.ndarray, racks: dict[int, np.ndarray]) -> np.ndarray:
    """``(N,)`` bool: points ``(N, 3)`` inside any rack box ``(K, 10)`` of their sample
    (``point_sample``, keys of ``racks``), bounds inclusive along the box's length, width and
    height edges measured from one corner (the devkit's ``points_in_box``)."""
    inside = np.zeros(len(points), bool)
    if not racks or not len(points):
        return inside
    keys = sorted(racks)
    rows = np.concatenate([racks[s] for s in keys])
    rack_sample = np.repeat(keys, [len(racks[s]) for s in keys])
    rot = quaternions_to_matrices(rows[:, 6:10])
    half = rows[:, [4, 3, 5]] / 2  # [length, width, height] from wlh
    corner = np.einsum("kij,kj->ki", rot, half) + rows[:, :3]
    # The three edges leaving that corner: along -length, -width, -height.
    edges = [np.einsum("kij,kj->ki", rot, half * sign) + rows[:, :3] - corner
             for sign in ((-1, 1, 1), (1, -1, 1), (1, 1, -1))]  # fmt: skip
    # Every (point, rack of its sample) pair.
    first = np.searchsorted(rack_sample, point_sample, "left")
    count = np.searchsorted(rack_sample, point_sample, "right") - first
    pair_point = np.repeat(np.arange(len(points)), count)
    pair_rack = np.repeat(first - np.cumsum(count) + count, count) + np.arange(len(pair_point))
    v = points[pair_point] - corner[pair_rack]
    ok = np.ones(len(pair_point), bool)
    for e in edges:
        e = e[pair_rack]
        proj = v[:, 0] * e[:, 0] + v[:, 1] * e[:, 1] + v[:, 2] * e[:, 2]
        ok &= (proj >= 0) & (proj <= e[:, 0] * e[:, 0] + e[:, 1] * e[:, 1] + e[:, 2] * e[:, 2])
    inside[pair_point[ok]] = True
    return inside


# --- selection and filters ------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Flat:
    """Boxes after filtering: per box its sample (index into the ground truth's samples) and the
    arrays needed for matching."""

    sample: np.ndarray
    cls: np.ndarray  # index into the config's class names
    xy: np.ndarray
    size: np.ndarray
    yaw: np.ndarray
    velocity: np.ndarray
    attributes: np.ndarray  # int: index into ATTRIBUTE_NAMES, -1 for ""
    scores: np.ndarray


def _predictions_for_split(
    gt: NuScenesGroundTruth, results: NuScenesResults, max_boxes: int
) -> tuple[DetectionBoxes, np.ndarray]:
    """The predictions of the split's samples in evaluation order, and each box's ground-truth
    sample index."""
    pb = results.boxes
    counts = pb.counts()
    where = {tok: i for i, tok in enumerate(pb.sample_tokens)}
    if len(where) != len(pb.sample_tokens):
        raise NuScenesEvalError("the results list a sample token twice")
    gt_index = {tok: i for i, tok in enumerate(gt.sample_tokens)}
    if gt.predefined:
        if set(where) != set(gt_index):
            missing, extra = set(gt_index) - set(where), set(where) - set(gt_index)
            raise NuScenesEvalError(
                f"the results must list exactly the {len(gt_index)} samples of split {gt.split!r}: "
                f"{len(missing)} missing (e.g. {sorted(missing)[:3]}), {len(extra)} extra (e.g. {sorted(extra)[:3]})"
            )
        order = list(range(len(pb.sample_tokens)))
    else:
        missing = [tok for tok in gt.sample_tokens if tok not in where]
        if missing:
            raise NuScenesEvalError(
                f"the results have no entry for {len(missing)} samples of split {gt.split!r} (e.g. {missing[:3]}); "
                "give every sample a (possibly empty) list"
            )
        order = [where[tok] for tok in gt.sample_tokens]
    too_many = [pb.sample_tokens[i] for i in order if counts[i] > max_boxes]
    if too_many:
        raise NuScenesEvalError(
            f"{len(too_many)} samples have more than {max_boxes} predicted boxes (e.g. {too_many[0]!r})"
        )
    idx = np.concatenate([np.arange(pb.offsets[i], pb.offsets[i + 1]) for i in order] or [np.zeros(0, np.int64)])
    sample_of_box = np.repeat(np.array([gt_index[pb.sample_tokens[i]] for i in order], np.int64), counts[order])
    return _take(pb, idx), sample_of_box


def _take(b: DetectionBoxes, idx: np.ndarray) -> DetectionBoxes:
    idx = idx.astype(np.int64)
    return DetectionBoxes(("",), np.array([0, len(idx)], np.int64), b.translation[idx], b.size[idx],
                          b.rotation[idx], b.velocity[idx], b.names[idx], b.attributes[idx], b.scores[idx],
                          b.num_pts[idx])  # fmt: skip


def _index_in(values: np.ndarray, vocabulary) -> np.ndarray:
    """``(N,)`` int64 position of each string of ``values`` in ``vocabulary`` (-1 if absent);
    one vectorized comparison per word (the vocabularies have at most ten)."""
    out = np.full(len(values), -1, np.int64)
    for i, word in enumerate(vocabulary):
        out[values == word] = i
    return out


def _filter(gt: NuScenesGroundTruth, boxes: DetectionBoxes, sample: np.ndarray, cfg: DetectionConfig) -> _Flat:
    """The distance, point-count and bicycle-rack filters, then the matching arrays."""
    ego = boxes.translation - gt.ego_translation[sample]
    dist = np.sqrt(ego[:, 0] ** 2 + ego[:, 1] ** 2)
    cls = _index_in(boxes.names, cfg.class_names)
    rng = np.array([cfg.class_range[n] for n in cfg.class_names] + [-np.inf], np.float64)
    keep = (dist < rng[cls]) & (boxes.num_pts != 0)
    # Bicycles and motorcycles in a rack of their sample.
    cycles = np.flatnonzero((_index_in(boxes.names, _CYCLE_CLASSES) >= 0) & keep)
    keep[cycles[_in_racks(boxes.translation[cycles], sample[cycles], gt.racks)]] = False
    k = np.flatnonzero(keep)
    return _Flat(
        sample=sample[k],
        cls=cls[k],
        xy=boxes.translation[k, :2],
        size=boxes.size[k],
        yaw=_yaw(boxes.rotation[k]) if len(k) else np.zeros(0),
        velocity=boxes.velocity[k],
        attributes=_index_in(boxes.attributes[k], ATTRIBUTE_NAMES),
        scores=boxes.scores[k],
    )


# --- matching and curves --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MetricData:
    """One class at one distance threshold: the curves at the 101 recall points (the devkit's
    ``DetectionMetricData``)."""

    recall: np.ndarray
    precision: np.ndarray
    confidence: np.ndarray
    trans_err: np.ndarray
    vel_err: np.ndarray
    scale_err: np.ndarray
    orient_err: np.ndarray
    attr_err: np.ndarray

    @classmethod
    def no_predictions(cls) -> MetricData:
        n = NUM_RECALL_POINTS
        ones = np.ones(n)
        return cls(np.linspace(0, 1, n), np.zeros(n), np.zeros(n), ones, ones, ones, ones, ones)

    @property
    def max_recall_ind(self) -> int:
        nz = np.flatnonzero(self.confidence)
        return int(nz[-1]) if len(nz) else 0


def _cummean(x: np.ndarray) -> np.ndarray:
    """Cumulative mean ignoring NaN (0 before the first value); all ones if every value is NaN."""
    nan = np.isnan(x)
    if nan.all():
        return np.ones(len(x))
    sums = np.nancumsum(x.astype(float))
    counts = np.cumsum(~nan)
    return np.divide(sums, counts, out=np.zeros_like(sums), where=counts != 0)


def _greedy(pair_pred: list[int], pair_gt: list[int], num_pred: int, num_gt: int) -> np.ndarray:
    """Greedy assignment over candidate pairs sorted by prediction rank, then distance, then
    ground-truth order: each prediction takes its first candidate not yet taken. Returns ``(P,)``
    the matched ground-truth position per prediction rank, -1 if none."""
    match = [-1] * num_pred
    taken = bytearray(num_gt)
    last = -1
    for r, g in zip(pair_pred, pair_gt, strict=True):
        if r == last or taken[g]:
            continue
        taken[g] = 1
        match[r] = g
        last = r
    return np.array(match, np.int64)


def _accumulate_class(gt: _Flat, pred: _Flat, c: int, cfg: DetectionConfig, period: float) -> dict[float, MetricData]:
    """Metric data of class ``c`` at every distance threshold (the devkit's ``accumulate``)."""
    gi = np.flatnonzero(gt.cls == c)
    npos = len(gi)
    if npos == 0:
        return {th: MetricData.no_predictions() for th in cfg.dist_ths}
    pi = np.flatnonzero(pred.cls == c)
    # Score descending; equal scores: the later box first (the devkit sorts (score, index) pairs
    # and reverses them).
    ranked = pi[np.lexsort((-np.arange(len(pi)), -pred.scores[pi]))]
    num_pred = len(ranked)
    # Ground truth of the class grouped by sample, annotation order kept within a sample.
    gs = gi[np.argsort(gt.sample[gi], kind="stable")]
    num_samples = int(max(gt.sample.max(initial=-1), pred.sample.max(initial=-1))) + 1
    start = np.searchsorted(gt.sample[gs], np.arange(num_samples), "left")
    end = np.searchsorted(gt.sample[gs], np.arange(num_samples), "right")
    ps = pred.sample[ranked]
    cnt = end[ps] - start[ps]
    pair_pred = np.repeat(np.arange(num_pred), cnt)
    first = (
        np.repeat(start[ps] - np.concatenate([[0], np.cumsum(cnt)[:-1]]), cnt) if num_pred else np.zeros(0, np.int64)
    )
    pair_gt = first + np.arange(len(pair_pred))  # position in gs
    d = pred.xy[ranked[pair_pred]] - gt.xy[gs[pair_gt]]
    dist = np.sqrt(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1])
    near = dist < max(cfg.dist_ths)
    pair_pred, pair_gt, dist = pair_pred[near], pair_gt[near], dist[near]
    o = np.lexsort((pair_gt, dist, pair_pred))
    pair_pred, pair_gt, dist = pair_pred[o], pair_gt[o], dist[o]

    out = {}
    rec_interp = np.linspace(0, 1, NUM_RECALL_POINTS)
    for th in cfg.dist_ths:
        m = dist < th
        match = _greedy(pair_pred[m].tolist(), pair_gt[m].tolist(), num_pred, len(gs))
        is_tp = match >= 0
        if not is_tp.any():
            out[th] = MetricData.no_predictions()
            continue
        conf = pred.scores[ranked]
        tp = np.cumsum(is_tp.astype(np.int64)).astype(float)
        fp = np.cumsum((~is_tp).astype(np.int64)).astype(float)
        prec = tp / (fp + tp)
        rec = tp / float(npos)
        prec_i = np.interp(rec_interp, rec, prec, right=0)
        conf_i = np.interp(rec_interp, rec, conf, right=0)
        # Errors of the matches, in rank order.
        mp, mg = ranked[is_tp], gs[match[is_tp]]
        dxy = pred.xy[mp] - gt.xy[mg]
        dv = pred.velocity[mp] - gt.velocity[mg]
        if (pred.size[mp] <= 0).any() or (gt.size[mg] <= 0).any():
            raise NuScenesEvalError(f"a matched {cfg.class_names[c]} box has a size component <= 0")
        inter = np.prod(np.minimum(gt.size[mg], pred.size[mp]), axis=1)
        union = np.prod(gt.size[mg], axis=1) + np.prod(pred.size[mp], axis=1) - inter
        diff = (gt.yaw[mg] - pred.yaw[mp] + period / 2) % period - period / 2
        diff = np.where(diff > np.pi, diff - 2 * np.pi, diff)
        ga, pa = gt.attributes[mg], pred.attributes[mp]
        errors = {
            "trans_err": np.sqrt(dxy[:, 0] * dxy[:, 0] + dxy[:, 1] * dxy[:, 1]),
            "vel_err": np.sqrt(dv[:, 0] * dv[:, 0] + dv[:, 1] * dv[:, 1]),
            "scale_err": 1 - inter / union,
            "orient_err": np.abs(diff),
            "attr_err": np.where(ga < 0, np.nan, 1 - (ga == pa).astype(float)),
        }
        match_conf = conf[is_tp]
        curves = {k: np.interp(conf_i[::-1], match_conf[::-1], _cummean(v)[::-1])[::-1] for k, v in errors.items()}
        out[th] = MetricData(rec_interp, prec_i, conf_i, **curves)
    return out


def _calc_ap(md: MetricData, min_recall: float, min_precision: float) -> float:
    prec = md.precision[round(100 * min_recall) + 1 :] - min_precision
    prec[prec < 0] = 0
    return float(np.mean(prec)) / (1.0 - min_precision)


def _calc_tp(md: MetricData, min_recall: float, metric: str) -> float:
    first, last = round(100 * min_recall) + 1, md.max_recall_ind
    if last < first:
        return 1.0
    return float(np.mean(getattr(md, metric)[first : last + 1]))


# --- results --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class NuScenesMetrics:
    """Evaluation results (the devkit's ``DetectionMetrics``).

    Attributes:
        label_aps: class -> distance threshold -> AP.
        label_tp_errors: class -> TP metric name -> error (NaN where the class does not define it).
        eval_time: seconds taken by ``evaluate``.
        config: the settings.
        meta: the results file's ``meta``.
        metric_data: ``(class, threshold)`` -> the 101-point curves.
    """

    label_aps: dict[str, dict[float, float]]
    label_tp_errors: dict[str, dict[str, float]]
    eval_time: float
    config: DetectionConfig
    meta: dict
    metric_data: dict[tuple[str, float], MetricData]

    @property
    def mean_dist_aps(self) -> dict[str, float]:
        return {c: float(np.mean(list(d.values()))) for c, d in self.label_aps.items()}

    @property
    def mean_ap(self) -> float:
        return float(np.mean(list(self.mean_dist_aps.values())))

    @property
    def tp_errors(self) -> dict[str, float]:
        return {m: float(np.nanmean([self.label_tp_errors[c][m] for c in self.config.class_names])) for m in TP_METRICS}

    @property
    def tp_scores(self) -> dict[str, float]:
        return {m: max(0.0, 1.0 - e) for m, e in self.tp_errors.items()}

    @property
    def nd_score(self) -> float:
        scores = self.tp_scores
        total = float(self.config.mean_ap_weight * self.mean_ap + np.sum(list(scores.values())))
        return total / float(self.config.mean_ap_weight + len(scores))

    def serialize(self) -> dict:
        """The devkit's ``metrics_summary.json`` content (``DetectionMetrics.serialize()`` plus
        ``meta``); ``label_aps`` keyed by float thresholds, which JSON writes as ``"0.5"``..."""
        return {
            "label_aps": {c: dict(d) for c, d in self.label_aps.items()},
            "mean_dist_aps": self.mean_dist_aps,
            "mean_ap": self.mean_ap,
            "label_tp_errors": {c: dict(d) for c, d in self.label_tp_errors.items()},
            "tp_errors": self.tp_errors,
            "tp_scores": self.tp_scores,
            "nd_score": self.nd_score,
            "eval_time": self.eval_time,
            "cfg": self.config.serialize(),
            "meta": dict(self.meta),
        }

    def write_summary(self, path: str | os.PathLike) -> Path:
        """Writes ``metrics_summary.json`` (indent 2, as the devkit)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.serialize(), f, indent=2)
        return path

    def summary(self) -> str:
        """The devkit's printed summary: mAP, the mean TP errors, NDS, time, per-class table."""
        lines = [f"mAP: {self.mean_ap:.4f}"]
        lines += [f"{TP_METRIC_LABELS[m]}: {e:.4f}" for m, e in self.tp_errors.items()]
        lines += [f"NDS: {self.nd_score:.4f}", f"Eval time: {self.eval_time:.1f}s", "", "Per-class results:"]
        lines.append(
            "\t".join(["Object Class".ljust(20)] + [h.ljust(6) for h in ("AP", "ATE", "ASE", "AOE", "AVE", "AAE")])
        )
        aps, tps = self.mean_dist_aps, self.label_tp_errors
        for c in self.config.class_names:
            vals = [aps[c]] + [tps[c][m] for m in TP_METRICS]
            lines.append("\t".join([c.ljust(20)] + [f"{v:<6.3f}" for v in vals]))
        return "\n".join(lines)


def evaluate(
    gt: NuScenesGroundTruth, results: NuScenesResults, config: DetectionConfig | None = None
) -> NuScenesMetrics:
    """nuScenes detection metrics of ``results`` on ``gt`` (see the module docstring).

    Raises:
        NuScenesEvalError: samples of the split missing from the results (or, for a predefined
            split, not exactly its samples), more than ``max_boxes_per_sample`` boxes in a sample,
            no predicted box or no ground-truth box at all, a matched box with a size <= 0.
    """
    cfg = config or DetectionConfig()
    start = time.perf_counter()
    preds, pred_sample = _predictions_for_split(gt, results, cfg.max_boxes_per_sample)
    if len(preds) == 0:
        raise NuScenesEvalError(
            f"the results hold no box for the {len(gt.sample_tokens)} samples of split {gt.split!r}"
        )
    if len(gt.boxes) == 0:
        raise NuScenesEvalError(f"split {gt.split!r} has no ground-truth box of a detection class")
    gt_flat = _filter(gt, gt.boxes, gt.boxes.sample_index, cfg)
    pred_flat = _filter(gt, preds, pred_sample, cfg)
    label_aps: dict[str, dict[float, float]] = {}
    label_tp: dict[str, dict[str, float]] = {}
    metric_data: dict[tuple[str, float], MetricData] = {}
    for c, name in enumerate(cfg.class_names):
        period = np.pi if name == "barrier" else 2 * np.pi
        per_th = _accumulate_class(gt_flat, pred_flat, c, cfg, period)
        for th, md in per_th.items():
            metric_data[(name, th)] = md
        label_aps[name] = {th: _calc_ap(per_th[th], cfg.min_recall, cfg.min_precision) for th in cfg.dist_ths}
        undefined = UNDEFINED_TP.get(name, ())
        label_tp[name] = {
            m: float("nan") if m in undefined else _calc_tp(per_th[cfg.dist_th_tp], cfg.min_recall, m)
            for m in TP_METRICS
        }
    return NuScenesMetrics(label_aps, label_tp, time.perf_counter() - start, cfg, dict(results.meta), metric_data)


@dataclass(frozen=True)
class LoadTimes:
    """Seconds spent loading the inputs of ``load_inputs``: ``tables`` (ground truth from the
    tables) and ``results`` (the results JSON) ran at the same time; ``total`` is the wall time of
    both together."""

    tables: float
    results: float
    total: float


def load_inputs(
    results_path: str | os.PathLike, dataroot: str | os.PathLike, version: str, split: str
) -> tuple[NuScenesGroundTruth, NuScenesResults, LoadTimes]:
    """The split's ground truth and the results file, read at the same time.

    The results are read in a second thread while this one parses the tables: the results reader
    spends its time in the compiled scanner, which releases the GIL, so the two loads overlap on a
    second core (or take a second share of a busy machine) instead of adding up. An error of either
    load is raised (the tables' first)."""
    start = time.perf_counter()

    def timed_results() -> tuple[NuScenesResults, float]:
        t = time.perf_counter()
        results = read_results(results_path)
        return results, time.perf_counter() - t

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nuscenes-results") as pool:
        pending = pool.submit(timed_results)
        try:
            gt = load_ground_truth(dataroot, version, split)
        except BaseException:
            pending.cancel()
            raise
        tables_s = time.perf_counter() - start
        results, results_s = pending.result()
    return gt, results, LoadTimes(tables_s, results_s, time.perf_counter() - start)


def evaluate_files(
    results_path: str | os.PathLike,
    dataroot: str | os.PathLike,
    version: str,
    split: str,
    config: DetectionConfig | None = None,
) -> NuScenesMetrics:
    """``evaluate`` of a results JSON against a dataroot's split (eval_time covers both loads,
    which run at the same time: ``load_inputs``)."""
    start = time.perf_counter()
    gt, results, _ = load_inputs(results_path, dataroot, version, split)
    metrics = evaluate(gt, results, config)
    return NuScenesMetrics(metrics.label_aps, metrics.label_tp_errors, time.perf_counter() - start, metrics.config,
                           metrics.meta, metrics.metric_data)  # fmt: skip
