"""Differential testing of ``pointformer.evaluation.waymo`` against the official Waymo metric op.

Generated cases (seeded) probe each rule of the official metric: boxes near the IoU thresholds,
centres near the 30 m and 50 m range borders, score ties and scores on the cutoffs, many
predictions per ground-truth box (exact IoU ties included), headings near +-pi and errors near
pi/2, tiny, degenerate and huge boxes, extreme values (extents of 1e-14 or 3.6e7 m, negative
extents, far centres, headings of thousands of radians), ground truth with few or no lidar points and every
difficulty, empty frames, frames with predictions only or ground truth only, several object types
(TYPE_UNKNOWN included) per frame, predictions in a no-label zone, and large frames.

A case is ``Case``: the prediction and ground-truth columns the official op takes (boxes in
float32, as the op reads them), the ground truth raw (point counts and labelled difficulty; the
official tool's preparation is part of what is compared). ``write_cases`` / ``read_cases`` store
cases as one ``.npz`` of concatenated columns with case offsets (no object arrays, no pickle),
the layout ``tools/waymo_official_op.py`` reads in the official op's environment.
``compare`` holds ``evaluate`` to the op's outputs (``ap``, ``aph``, and per breakdown and cutoff
precision, recall, TP, FP, FN, heading-weighted precision and the summed heading accuracy).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pointformer.data.formats.waymo_objects import WaymoObjects
from pointformer.evaluation.waymo import BREAKDOWN_NAMES, IOU_THRESHOLDS, WaymoMetrics, evaluate
from pointformer.utils.atomic import atomic_file

__all__ = [
    "KINDS",
    "Case",
    "Difference",
    "compare",
    "evaluate_case",
    "generate_case",
    "generate_cases",
    "read_cases",
    "write_cases",
]

CONTEXT = "crosscheck"
_PD_COLUMNS = {"boxes": np.float32, "types": np.uint8, "scores": np.float32, "frames": np.int64, "nlz": np.bool_}
_GT_COLUMNS = {"boxes": np.float32, "types": np.uint8, "frames": np.int64, "points": np.int32, "difficulty": np.uint8}


@dataclass(frozen=True, eq=False)
class Case:
    """One differential case: ``P`` predictions and ``G`` ground-truth objects over some frames.

    Attributes:
        kind: the generator that made it (``KINDS``), seed: its seed.
        pd: ``boxes (P, 7) float32 [x, y, z, length, width, height, heading]`` (vehicle frame, m,
            rad), ``types (P,) uint8`` Label.Type, ``scores (P,) float32``, ``frames (P,) int64``,
            ``nlz (P,) bool`` overlap with a no-label zone.
        gt: ``boxes (G, 7) float32``, ``types (G,) uint8``, ``frames (G,) int64``,
            ``points (G,) int32`` lidar points in the box, ``difficulty (G,) uint8`` labelled
            detection difficulty (0 = unset).
    """

    kind: str
    seed: int
    pd: dict[str, np.ndarray] = field(repr=False)
    gt: dict[str, np.ndarray] = field(repr=False)

    def objects(self) -> tuple[WaymoObjects, WaymoObjects]:
        """``(predictions, ground truth)`` as ``evaluate`` takes them (frame ``f`` is timestamp ``f``)."""
        pd, gt = self.pd, self.gt
        predictions = WaymoObjects.from_arrays(
            CONTEXT,
            pd["frames"],
            pd["boxes"].astype(np.float64),
            pd["types"].astype(np.int8),
            pd["scores"],
            overlap_with_nlz=pd["nlz"],
        )
        ground_truth = WaymoObjects.from_arrays(
            CONTEXT,
            gt["frames"],
            gt["boxes"].astype(np.float64),
            gt["types"].astype(np.int8),
            num_lidar_points_in_box=gt["points"],
            detection_difficulty=gt["difficulty"].astype(np.int8),
        )
        return predictions, ground_truth


def evaluate_case(case: Case) -> WaymoMetrics:
    """pointformer's metrics of one case (with the official ground-truth preparation)."""
    return evaluate(*case.objects())


# --- generation ---------------------------------------------------------------------------------

# Typical (length, width, height) per Label.Type (0: TYPE_UNKNOWN borrows a vehicle's).
_SIZES = {0: (4.5, 2.0, 1.6), 1: (4.5, 2.0, 1.6), 2: (0.9, 0.9, 1.8), 3: (0.6, 0.2, 0.9), 4: (1.8, 0.7, 1.7)}


class _Builder:
    """Accumulates the objects of one case."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.pd: dict[str, list] = {k: [] for k in _PD_COLUMNS}
        self.gt: dict[str, list] = {k: [] for k in _GT_COLUMNS}

    def add_gt(self, frame: int, box, typ: int, points: int | None = None, difficulty: int | None = None) -> None:
        rng = self.rng
        if points is None:
            points = int(rng.choice([1, 3, 5, 6, 20, 300]))
        if difficulty is None:
            difficulty = int(rng.choice([0, 0, 1, 2]))
        for k, v in zip(_GT_COLUMNS, (box, typ, frame, points, difficulty), strict=True):
            self.gt[k].append(v)

    def add_pd(self, frame: int, box, typ: int, score: float | None = None, nlz: bool = False) -> None:
        if score is None:
            score = float(self.rng.random())
        for k, v in zip(_PD_COLUMNS, (box, typ, score, frame, nlz), strict=True):
            self.pd[k].append(v)

    def random_box(self, typ: int, max_range: float = 80.0) -> np.ndarray:
        rng = self.rng
        r, a = max_range * math.sqrt(rng.random()), rng.uniform(-math.pi, math.pi)
        size = np.asarray(_SIZES[typ]) * rng.uniform(0.7, 1.3, 3)
        return np.array([r * math.cos(a), r * math.sin(a), rng.normal(1.0, 0.5), *size, rng.uniform(-math.pi, math.pi)])

    def jitter(self, box: np.ndarray, scale: float) -> np.ndarray:
        """A prediction near ``box``: centre, size and heading noise of relative size ``scale``."""
        rng = self.rng
        out = box.copy()
        out[:3] += rng.normal(0, scale, 3) * box[3:6]
        out[3:6] *= np.exp(rng.normal(0, scale, 3))
        out[6] += rng.normal(0, 3 * scale)
        return out

    def case(self, kind: str, seed: int) -> Case:
        def column(values, dtype, width=None):
            arr = np.asarray(values, dtype=dtype)
            return arr.reshape(-1, width) if width else arr.reshape(-1)

        pd = {k: column(self.pd[k], d, 7 if k == "boxes" else None) for k, d in _PD_COLUMNS.items()}
        gt = {k: column(self.gt[k], d, 7 if k == "boxes" else None) for k, d in _GT_COLUMNS.items()}
        return Case(kind, seed, pd, gt)


def _shift_for_iou(length: float, iou: float) -> float:
    """Shift along the length that gives ``iou`` between two equal boxes: (L - d) / (L + d) = iou."""
    return length * (1.0 - iou) / (1.0 + iou)


def _along(box: np.ndarray, d: float) -> np.ndarray:
    out = box.copy()
    out[0] += d * math.cos(box[6])
    out[1] += d * math.sin(box[6])
    return out


def _gen_iou_threshold(b: _Builder) -> None:
    """Predictions whose IoU with their ground truth is the type's threshold times (1 + eps)."""
    rng = b.rng
    for frame in range(int(rng.integers(1, 4))):
        for _ in range(int(rng.integers(1, 8))):
            typ = int(rng.integers(1, 5))
            gt = b.random_box(typ)
            b.add_gt(frame, gt, typ)
            for _ in range(int(rng.integers(1, 4))):
                eps = float(rng.choice([0.0, 1e-7, -1e-7, 1e-6, -1e-6, 1e-5, -1e-5, 1e-3, -1e-3, 0.05, -0.05]))
                target = min(IOU_THRESHOLDS[typ] * (1.0 + eps), 1.0)
                pd = gt.copy()
                if rng.random() < 0.5:  # along the heading
                    pd = _along(gt, _shift_for_iou(gt[3], target))
                else:  # along z: the height overlap alone sets the IoU
                    pd[2] += _shift_for_iou(gt[5], target)
                b.add_pd(frame, pd, typ)


def _gen_range_border(b: _Builder) -> None:
    """Ground truth and predictions with centres within a hair of 30 m and 50 m (x, y and z)."""
    rng = b.rng
    for frame in range(int(rng.integers(1, 4))):
        for _ in range(int(rng.integers(2, 10))):
            typ = int(rng.integers(1, 5))
            border = float(rng.choice([30.0, 50.0]))
            r = border + float(rng.choice([0.0, 1e-6, -1e-6, 1e-4, -1e-4, 0.01, -0.01, 0.3, -0.3]))
            direction = rng.normal(size=3)
            direction[2] *= 0.05
            centre = r * direction / np.linalg.norm(direction)
            size = np.asarray(_SIZES[typ]) * rng.uniform(0.8, 1.2, 3)
            gt = np.array([*centre, *size, rng.uniform(-math.pi, math.pi)])
            b.add_gt(frame, gt, typ)
            for _ in range(int(rng.integers(0, 3))):
                # A prediction on the other side of the border (radial shift), or a jittered one.
                if rng.random() < 0.5:
                    shift = float(rng.choice([-0.2, -0.02, 0.02, 0.2])) * centre / r
                    pd = gt.copy()
                    pd[:3] += shift
                else:
                    pd = b.jitter(gt, 0.03)
                b.add_pd(frame, pd, typ)


def _gen_score_ties(b: _Builder) -> None:
    """Scores from a handful of values, on and beside the cutoffs, 0 and 1."""
    rng = b.rng
    cut = np.float32(rng.integers(1, 100) * 0.01)
    values = [cut, np.nextafter(cut, np.float32(0)), np.nextafter(cut, np.float32(1)), 0.0, 1.0, 0.5, 0.25]
    for frame in range(int(rng.integers(1, 5))):
        for _ in range(int(rng.integers(1, 10))):
            typ = int(rng.integers(1, 5))
            gt = b.random_box(typ)
            b.add_gt(frame, gt, typ)
            for _ in range(int(rng.integers(0, 4))):
                b.add_pd(frame, b.jitter(gt, 0.05), typ, float(rng.choice(values)))
        for _ in range(int(rng.integers(0, 4))):
            typ = int(rng.integers(1, 5))
            b.add_pd(frame, b.random_box(typ), typ, float(rng.choice(values)))


def _gen_crowd(b: _Builder) -> None:
    """Many predictions per ground truth, identical duplicates (equal IoU) and overlapping ground truth."""
    rng = b.rng
    for frame in range(int(rng.integers(1, 3))):
        for _ in range(int(rng.integers(1, 6))):
            typ = int(rng.integers(1, 5))
            gt = b.random_box(typ, 40.0)
            b.add_gt(frame, gt, typ)
            if rng.random() < 0.5:  # a second ground truth overlapping the first
                b.add_gt(frame, _along(gt, float(rng.uniform(0.1, 0.6)) * gt[3]), typ)
            dup = b.jitter(gt, 0.02)
            for _ in range(int(rng.integers(2, 12))):
                r = rng.random()
                if r < 0.3:
                    pd = dup  # identical boxes: exactly equal quantized IoUs
                elif r < 0.5:
                    pd = gt  # perfect boxes
                else:
                    pd = b.jitter(gt, float(rng.choice([0.01, 0.05, 0.1])))
                score = float(rng.choice([0.5, 0.8])) if rng.random() < 0.4 else None
                b.add_pd(frame, pd, typ, score)


def _gen_heading(b: _Builder) -> None:
    """Headings near +-pi and beyond, errors near pi / 2 and pi."""
    rng = b.rng
    specials = [math.pi, -math.pi, math.pi - 1e-6, -math.pi + 1e-6, 3 * math.pi, -3 * math.pi, 7.0, -7.0]
    for frame in range(int(rng.integers(1, 3))):
        for _ in range(int(rng.integers(1, 8))):
            typ = int(rng.integers(1, 5))
            gt = b.random_box(typ)
            gt[6] = float(rng.choice(specials)) if rng.random() < 0.6 else gt[6]
            b.add_gt(frame, gt, typ)
            for _ in range(int(rng.integers(1, 4))):
                pd = b.jitter(gt, 0.01)
                err = float(rng.choice([math.pi / 2, -math.pi / 2, math.pi, 2 * math.pi, 1e-6, 0.0]))
                pd[6] = gt[6] + err + float(rng.choice([0.0, 1e-6, -1e-6, 1e-3]))
                if typ != 1 or abs(math.remainder(err, math.pi)) > 1e-3:
                    # A square footprint keeps the IoU high whatever the heading error.
                    pd[4] = pd[3] = gt[3] = max(gt[3], gt[4])
                b.add_pd(frame, pd, typ)


def _gen_degenerate(b: _Builder) -> None:
    """Extents at, below and above 0.01 m, zero, and huge (>= 1e6 m) boxes."""
    rng = b.rng
    extents = [0.0, 0.005, 0.01, float(np.nextafter(np.float32(0.01), np.float32(1))), 0.011, 0.05, 1e6, 2e6]
    for frame in range(int(rng.integers(1, 3))):
        for _ in range(int(rng.integers(1, 8))):
            typ = int(rng.integers(1, 5))
            gt = b.random_box(typ)
            if rng.random() < 0.5:
                gt[3 + int(rng.integers(0, 3))] = float(rng.choice(extents))
            b.add_gt(frame, gt, typ)
            for _ in range(int(rng.integers(1, 3))):
                pd = gt.copy() if rng.random() < 0.5 else b.jitter(gt, 0.01)
                if rng.random() < 0.5:
                    pd[3 + int(rng.integers(0, 3))] = float(rng.choice(extents))
                b.add_pd(frame, pd, typ)
            if rng.random() < 0.3:  # tiny box on a tiny box
                tiny = gt.copy()
                tiny[3:6] = float(rng.choice([0.02, 0.05]))
                b.add_gt(frame, tiny, typ)
                b.add_pd(frame, tiny, typ)


def _gen_extreme(b: _Builder) -> None:
    """Values a random or broken model writes: extents of 1e-14 or 3.6e7 m or negative, centres
    kilometres away or below the ground, headings of thousands of radians, each on a box that
    otherwise copies a ground truth (so that only the extreme value decides the match)."""
    rng = b.rng
    # Not between about 1e4 and 1e6 m: there the official polygon intersection loses its precision
    # (an IoU of 495266 for a 1e5 m wide box over a copy 0.2 m wide) and the op aborts on its
    # "IoU <= 1" check, so such cases have no official answer to compare with.
    extents = [1e-14, 1e-3, -1.0, -1e-3, 3.6e7, 1e6, 2e6]
    for frame in range(int(rng.integers(1, 3))):
        for _ in range(int(rng.integers(2, 10))):
            typ = int(rng.integers(1, 5))
            gt = b.random_box(typ)
            r = rng.random()
            if r < 0.2:
                gt[:2] *= float(rng.choice([100.0, 1e4]))
            elif r < 0.3:
                gt[2] = float(rng.choice([-30.0, 40.0]))
            if rng.random() < 0.3:
                gt[3 + int(rng.integers(0, 3))] = float(rng.choice(extents))
            b.add_gt(frame, gt, typ, points=int(rng.choice([1, 50])))
            for _ in range(int(rng.integers(1, 3))):
                pd = gt.copy()
                k = int(rng.integers(0, 3))
                if k == 0:
                    pd[3 + int(rng.integers(0, 3))] = float(rng.choice(extents))
                elif k == 1:
                    pd[6] += float(rng.choice([1e3, -1e3, 2 * math.pi * 1000, 1e4 + 0.3]))
                else:
                    pd = b.jitter(gt, 0.02)
                b.add_pd(frame, pd, typ)


def _gen_points(b: _Builder) -> None:
    """Ground truth with 0, 1..6 or many points, negative counts, every labelled difficulty."""
    rng = b.rng
    for frame in range(int(rng.integers(1, 4))):
        for _ in range(int(rng.integers(1, 10))):
            typ = int(rng.integers(1, 5))
            gt = b.random_box(typ)
            points = int(rng.choice([-1, 0, 1, 2, 4, 5, 6, 7, 50]))
            b.add_gt(frame, gt, typ, points=points, difficulty=int(rng.choice([0, 1, 2])))
            if rng.random() < 0.7:
                b.add_pd(frame, b.jitter(gt, 0.03), typ)


def _gen_empty(b: _Builder) -> None:
    """Frames with nothing, predictions only, ground truth only; sometimes a whole empty case."""
    rng = b.rng
    if rng.random() < 0.15:
        return
    for frame in range(int(rng.integers(1, 6))):
        mode = int(rng.integers(0, 4))
        for _ in range(int(rng.integers(1, 6))):
            typ = int(rng.integers(1, 5))
            box = b.random_box(typ)
            if mode in (0, 2):
                b.add_gt(frame, box, typ)
            if mode in (1, 2):
                b.add_pd(frame, b.jitter(box, 0.03), typ)


def _gen_types(b: _Builder) -> None:
    """Every type (TYPE_UNKNOWN too) in a frame; predictions of the wrong type on a ground truth."""
    rng = b.rng
    for frame in range(int(rng.integers(1, 3))):
        for _ in range(int(rng.integers(2, 12))):
            typ = int(rng.integers(0, 5))
            gt = b.random_box(typ)
            b.add_gt(frame, gt, typ)
            pd_type = typ if rng.random() < 0.6 else int(rng.integers(0, 5))
            b.add_pd(frame, b.jitter(gt, 0.03), pd_type)


def _gen_nlz(b: _Builder) -> None:
    """Predictions flagged as overlapping a no-label zone, matched or not."""
    rng = b.rng
    for frame in range(int(rng.integers(1, 3))):
        for _ in range(int(rng.integers(1, 8))):
            typ = int(rng.integers(1, 5))
            gt = b.random_box(typ)
            b.add_gt(frame, gt, typ)
            b.add_pd(frame, b.jitter(gt, 0.03), typ, nlz=bool(rng.random() < 0.5))
            b.add_pd(frame, b.random_box(typ), typ, nlz=bool(rng.random() < 0.5))


def _gen_large(b: _Builder) -> None:
    """Large frames: 200 ground-truth boxes and 500 predictions (kept per frame in some cases)."""
    rng = b.rng
    num_frames = int(rng.integers(1, 3))
    for frame in range(num_frames):
        n_gt = 200 if frame == 0 else int(rng.integers(20, 100))
        n_pd = 500 if frame == 0 else int(rng.integers(20, 200))
        gts = []
        for _ in range(n_gt):
            typ = int(rng.choice([1, 1, 1, 2, 2, 3, 4]))
            box = b.random_box(typ, 75.0)
            gts.append((box, typ))
            b.add_gt(frame, box, typ)
        for _ in range(n_pd):
            box, typ = gts[int(rng.integers(0, n_gt))]
            if rng.random() < 0.6:
                b.add_pd(frame, b.jitter(box, float(rng.choice([0.02, 0.05, 0.1]))), typ)
            else:
                t = int(rng.integers(1, 5))
                b.add_pd(frame, b.random_box(t, 75.0), t)


def _gen_dense(b: _Builder) -> None:
    """A car park: rows of touching or overlapping vehicles and a swarm of predictions over them, so
    that one prediction can match several ground truths and matching components grow large."""
    rng = b.rng
    for frame in range(int(rng.integers(1, 3))):
        x0, y0 = rng.uniform(-60, 60, 2)
        gap = float(rng.choice([-0.5, 0.0, 0.3, 1.0]))  # negative: overlapping ground truth
        rows, cols = int(rng.integers(1, 4)), int(rng.integers(2, 8))
        gts = []
        for r in range(rows):
            for k in range(cols):
                box = np.array([x0 + k * (2.0 + gap), y0 + r * 5.5, 1.0, 4.5, 2.0, 1.6, math.pi / 2])
                box[:2] += rng.normal(0, 0.05, 2)
                gts.append(box)
                b.add_gt(frame, box, 1)
        for _ in range(int(rng.integers(len(gts), 4 * len(gts)))):
            box = gts[int(rng.integers(0, len(gts)))]
            pd = b.jitter(box, float(rng.choice([0.01, 0.03, 0.08])))
            if rng.random() < 0.3:  # between two neighbours
                pd[0] += (2.0 + gap) / 2
            score = float(np.float32(rng.integers(0, 20) / 20)) if rng.random() < 0.3 else None
            b.add_pd(frame, pd, 1, score)


_GENERATORS: dict[str, Callable[[_Builder], None]] = {
    "iou_threshold": _gen_iou_threshold,
    "range_border": _gen_range_border,
    "score_ties": _gen_score_ties,
    "crowd": _gen_crowd,
    "heading": _gen_heading,
    "degenerate": _gen_degenerate,
    "extreme": _gen_extreme,
    "points": _gen_points,
    "empty": _gen_empty,
    "types": _gen_types,
    "nlz": _gen_nlz,
    "large": _gen_large,
    "dense": _gen_dense,
}
KINDS = (*_GENERATORS, "mixed")


def generate_case(seed: int, kind: str | None = None) -> Case:
    """The case of ``seed``: of ``kind`` (default ``KINDS[seed % len(KINDS)]``); ``mixed`` runs
    two to four other generators into the same frames."""
    kind = KINDS[seed % len(KINDS)] if kind is None else kind
    if kind not in KINDS:
        raise ValueError(f"unknown case kind {kind!r}; known: {', '.join(KINDS)}")
    rng = np.random.default_rng([seed, 17])
    b = _Builder(rng)
    if kind == "mixed":
        names = [k for k in _GENERATORS if k not in ("large", "empty")]
        for name in rng.choice(names, size=int(rng.integers(2, 5)), replace=False):
            _GENERATORS[str(name)](b)
    else:
        _GENERATORS[kind](b)
    return b.case(kind, seed)


def generate_cases(seeds: Sequence[int]) -> list[Case]:
    return [generate_case(int(s)) for s in seeds]


# --- storage ------------------------------------------------------------------------------------


def _concat(cases: Sequence[Case], side: str, columns: dict) -> dict[str, np.ndarray]:
    out = {}
    for k, dtype in columns.items():
        parts = [getattr(c, side)[k] for c in cases]
        empty = np.zeros((0, 7) if k == "boxes" else 0, dtype)
        out[f"{side}_{k}"] = np.concatenate(parts).astype(dtype) if parts else empty
    sizes = [len(getattr(c, side)["types"]) for c in cases]
    out[f"{side}_offsets"] = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return out


def case_arrays(cases: Sequence[Case]) -> dict[str, np.ndarray]:
    """The cases as the flat arrays of the ``.npz`` layout (see the module docstring)."""
    arrays = {**_concat(cases, "pd", _PD_COLUMNS), **_concat(cases, "gt", _GT_COLUMNS)}
    arrays["kinds"] = np.asarray([c.kind for c in cases], np.str_)
    arrays["seeds"] = np.asarray([c.seed for c in cases], np.int64)
    return arrays


def write_cases(path: str | os.PathLike, cases: Sequence[Case], **extra: np.ndarray) -> None:
    """Writes ``cases`` (and ``extra`` arrays, e.g. the official outputs) as one compressed ``.npz``
    (atomically, at exactly ``path``)."""
    with atomic_file(path) as f:
        np.savez_compressed(f, **case_arrays(cases), **extra)


def cases_from_arrays(data) -> list[Case]:
    """Inverse of ``case_arrays`` (``data``: a mapping such as an opened ``.npz``)."""
    pd_off, gt_off = data["pd_offsets"], data["gt_offsets"]
    kinds, seeds = data["kinds"], data["seeds"]
    pd_cols = {k: data[f"pd_{k}"] for k in _PD_COLUMNS}
    gt_cols = {k: data[f"gt_{k}"] for k in _GT_COLUMNS}
    cases = []
    for c in range(len(kinds)):
        ps, gs = slice(pd_off[c], pd_off[c + 1]), slice(gt_off[c], gt_off[c + 1])
        pd = {k: v[ps] for k, v in pd_cols.items()}
        gt = {k: v[gs] for k, v in gt_cols.items()}
        cases.append(Case(str(kinds[c]), int(seeds[c]), pd, gt))
    return cases


def read_cases(path: str | os.PathLike) -> tuple[list[Case], dict[str, np.ndarray]]:
    """``(cases, other arrays)`` of a file written by ``write_cases`` (no pickle allowed)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return cases_from_arrays(arrays), {k: v for k, v in arrays.items() if not k.startswith(("pd_", "gt_"))}


# --- comparison ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """The largest difference of one quantity between pointformer and the official op in a case."""

    case: int
    kind: str
    seed: int
    quantity: str
    breakdown: str
    cutoff: int | None
    ours: float
    official: float

    @property
    def error(self) -> float:
        return abs(self.ours - self.official)

    def __str__(self) -> str:
        where = self.breakdown + (f" cutoff #{self.cutoff}" if self.cutoff is not None else "")
        return (
            f"case {self.case} ({self.kind}, seed {self.seed}) {self.quantity} {where}: "
            f"pointformer {self.ours:.9g} official {self.official:.9g}"
        )


def official_quantities(official: dict[str, np.ndarray], c: int) -> dict[str, np.ndarray]:
    """The op's outputs of case ``c`` by quantity: ``ap``, ``aph`` ``(B,)``; ``precision``,
    ``recall``, ``tp``, ``fp``, ``fn``, ``precision_ha``, ``recall_ha``, ``sum_ha`` ``(B, K)``
    (the ones present in ``official``)."""
    out = {"ap": official["ap"][c], "aph": official["aph"][c]}
    if "pr" in official:
        pr = official["pr"][c]
        out.update(precision=pr[..., 0], recall=pr[..., 1], tp=pr[..., 2], fp=pr[..., 3], fn=pr[..., 4])
    else:
        for k in ("tp", "fp", "fn"):
            if k in official:
                out[k] = official[k][c]
    if "pr_ha" in official:
        out.update(precision_ha=official["pr_ha"][c][..., 0], recall_ha=official["pr_ha"][c][..., 1])
    if "sum_ha" in official:
        out["sum_ha"] = official["sum_ha"][c]
    return out


def ours_quantities(metrics: WaymoMetrics) -> dict[str, np.ndarray]:
    return {
        "ap": metrics.ap,
        "aph": metrics.aph,
        "precision": metrics.precision,
        "recall": metrics.recall,
        "tp": metrics.tp,
        "fp": metrics.fp,
        "fn": metrics.fn,
        "precision_ha": metrics.precision_ha,
        "recall_ha": metrics.recall,
        "sum_ha": metrics.sum_ha,
    }


def compare(
    cases: Sequence[Case],
    official: dict[str, np.ndarray],
    tolerance: float = 1e-6,
    ours: Sequence[WaymoMetrics] | None = None,
) -> tuple[list[Difference], float]:
    """Every quantity of every case and breakdown against the op's outputs.

    Returns the differences larger than ``tolerance`` (the largest per case and quantity) and the
    largest difference seen over all. The breakdown names must be the official ones, in order.
    """
    if "names" in official and tuple(str(n) for n in official["names"]) != BREAKDOWN_NAMES:
        raise ValueError("the official breakdown names differ from pointformer's")
    differences, worst = [], 0.0
    for c, case in enumerate(cases):
        metrics = evaluate_case(case) if ours is None else ours[c]
        mine = ours_quantities(metrics)
        for name, theirs in official_quantities(official, c).items():
            a = np.asarray(mine[name], np.float64)
            b = np.asarray(theirs, np.float64)
            err = np.abs(a - b)
            i = np.unravel_index(int(np.argmax(err)), err.shape)
            worst = max(worst, float(err[i]))
            if err[i] > tolerance:
                differences.append(
                    Difference(
                        c,
                        case.kind,
                        case.seed,
                        name,
                        BREAKDOWN_NAMES[i[0]],
                        int(i[1]) if len(i) > 1 else None,
                        float(a[i]),
                        float(b[i]),
                    )
                )
    return differences, worst
