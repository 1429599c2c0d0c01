"""nuScenes detection boxes as flat arrays, and the official results JSON (read, write, build).

``DetectionBoxes`` holds the boxes of several samples in one set of arrays (samples in order, each
sample's boxes contiguous, ``offsets`` as in CSR): global-frame centre ``translation`` (m),
``size`` ``[w, l, h]`` (m), ``rotation`` quaternion ``[w, x, y, z]``, global 2-D ``velocity``
(m/s, NaN when unknown), detection class name, attribute name (``""`` for none), score and number
of points (``-1`` when unknown, as for predictions).

The results JSON (nuScenes detection challenge)::

    {"meta": {"use_camera": false, "use_lidar": true, ...},
     "results": {"<sample_token>": [{"sample_token", "translation", "size", "rotation",
                                     "velocity", "detection_name", "detection_score",
                                     "attribute_name"}, ...], ...}}

``results_from_lidar_boxes`` builds it from pointformer predictions: boxes
``[x, y, z, l, w, h, yaw, vx, vy]`` in a sample's LIDAR_TOP frame, moved into the global frame
with the sample's ``lidar_to_global`` matrix; the attribute follows the customary default rule
(``default_attribute``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter, methodcaller
from pathlib import Path

import numpy as np

from pointformer.data.formats.nuscenes_tables import ATTRIBUTE_NAMES, DETECTION_NAMES, matrix_to_quaternion
from pointformer.evaluation.nuscenes_results_scan import scan_results
from pointformer.utils.atomic import atomic_file
from pointformer.utils.errors import InputError
from pointformer.utils.jsonio import loads_json


class NuScenesEvalError(InputError, ValueError):
    """Input that the nuScenes detection evaluation refuses (the devkit would crash or assert)."""


DEFAULT_META = {"use_camera": False, "use_lidar": True, "use_radar": False, "use_map": False, "use_external": False}
# Speed (m/s) above which a detection is given a "moving" attribute by ``default_attribute``.
MOVING_SPEED = 0.2
_VEHICLES = frozenset({"car", "truck", "bus", "trailer", "construction_vehicle"})
_CYCLES = frozenset({"bicycle", "motorcycle"})
# The attribute of a class when its speed does not decide it ("" for classes without attributes).
_STATIC_ATTRIBUTE = {
    "car": "vehicle.parked",
    "truck": "vehicle.parked",
    "trailer": "vehicle.parked",
    "construction_vehicle": "vehicle.parked",
    "bus": "vehicle.stopped",
    "pedestrian": "pedestrian.standing",
    "bicycle": "cycle.without_rider",
    "motorcycle": "cycle.without_rider",
    "traffic_cone": "",
    "barrier": "",
}


def default_attribute(name: str, velocity) -> str:
    """The customary attribute of a detection from its class and global velocity ``(vx, vy)``:
    vehicles ``vehicle.moving`` above 0.2 m/s, else ``vehicle.parked`` (``vehicle.stopped`` for a
    bus); cycles ``cycle.with_rider`` above 0.2 m/s, else ``cycle.without_rider``; pedestrians
    ``pedestrian.moving`` above 0.2 m/s, else ``pedestrian.standing``; ``""`` for barriers and
    traffic cones. A NaN velocity counts as not moving."""
    if name not in _STATIC_ATTRIBUTE:
        raise NuScenesEvalError(f"detection name {name!r} is not one of {list(DETECTION_NAMES)}")
    speed = math.hypot(float(velocity[0]), float(velocity[1]))
    if speed > MOVING_SPEED:  # False for NaN
        if name in _VEHICLES:
            return "vehicle.moving"
        if name in _CYCLES:
            return "cycle.with_rider"
        if name == "pedestrian":
            return "pedestrian.moving"
    return _STATIC_ATTRIBUTE[name]


def _float_rows(boxes: list, key: str, width: int) -> np.ndarray:
    """``(len(boxes), width)`` float64 of the ``key`` lists of ``boxes`` (C-level iteration: the
    results of a val split hold millions of boxes). ValueError if a list has another length."""
    lists = list(map(itemgetter(key), boxes))
    if any(n != width for n in map(len, lists)):
        raise ValueError(f"{key} lengths")
    return np.fromiter(chain.from_iterable(lists), np.float64, len(lists) * width).reshape(len(lists), width)


def _check_each(per_sample) -> None:
    """Raises NuScenesEvalError naming the first malformed box dict."""
    for token, boxes in per_sample:
        for b in boxes:
            if not isinstance(b, Mapping):
                raise NuScenesEvalError(f"sample {token!r}: a box must be a dict, not {type(b).__name__}")
            try:
                lengths = tuple(len(b[k]) for k in ("translation", "size", "rotation", "velocity"))
                if lengths != (3, 3, 4, 2):
                    raise NuScenesEvalError(
                        f"sample {token!r}: a box needs translation[3], size[3], rotation[4], velocity[2]: {b}"
                    )
                np.array([*b["translation"], *b["size"], *b["rotation"], *b["velocity"]], np.float64)
                if not isinstance(b["detection_name"], str) or not isinstance(b.get("attribute_name", ""), str):
                    raise NuScenesEvalError(f"sample {token!r}: detection_name and attribute_name must be strings: {b}")
                if b.get("sample_token", token) != token:
                    raise NuScenesEvalError(
                        f"sample {token!r}: a box lists sample_token {b['sample_token']!r}, not its sample's"
                    )
                float(b.get("detection_score", -1.0))
                int(b.get("num_pts", -1))
            except KeyError as e:
                raise NuScenesEvalError(f"sample {token!r}: a box has no {e.args[0]!r}: {b}") from None
            except (TypeError, ValueError) as e:
                if isinstance(e, NuScenesEvalError):
                    raise
                raise NuScenesEvalError(f"sample {token!r}: malformed box {b}: {e}") from None


@dataclass(frozen=True, eq=False)
class DetectionBoxes:
    """Boxes of several samples (see the module docstring for units and frames).

    Attributes:
        sample_tokens: ``(S,)`` the samples, in order.
        offsets: ``(S + 1,)`` int64; sample ``i`` owns boxes ``offsets[i]:offsets[i + 1]``.
        translation: ``(N, 3)`` float64 global centre (m).
        size: ``(N, 3)`` float64 ``[w, l, h]`` (m).
        rotation: ``(N, 4)`` float64 ``[w, x, y, z]``.
        velocity: ``(N, 2)`` float64 global m/s, NaN where unknown.
        names: ``(N,)`` str detection names.
        attributes: ``(N,)`` str attribute names (``""`` for none).
        scores: ``(N,)`` float64 (``-1`` for ground truth).
        num_pts: ``(N,)`` int64 lidar + radar points (``-1`` when unknown).
    """

    sample_tokens: tuple[str, ...]
    offsets: np.ndarray
    translation: np.ndarray
    size: np.ndarray
    rotation: np.ndarray
    velocity: np.ndarray
    names: np.ndarray
    attributes: np.ndarray
    scores: np.ndarray
    num_pts: np.ndarray

    def __len__(self) -> int:
        return int(self.translation.shape[0])

    @property
    def sample_index(self) -> np.ndarray:
        """``(N,)`` int64 index into ``sample_tokens`` of every box."""
        return np.repeat(np.arange(len(self.sample_tokens)), np.diff(self.offsets))

    def counts(self) -> np.ndarray:
        """``(S,)`` boxes per sample."""
        return np.diff(self.offsets)

    @classmethod
    def from_records(
        cls, per_sample: Iterable[tuple[str, Sequence[Mapping]]], *, ground_truth: bool = False
    ) -> DetectionBoxes:
        """Boxes from ``(sample_token, [box dict, ...])`` pairs (the results JSON's box dicts;
        ``detection_score`` defaults to -1 and ``num_pts`` to -1, as the devkit reads them).

        Raises:
            NuScenesEvalError on a missing key, a wrong length, NaN or infinite geometry or score, a
            bad detection or attribute name, or a box whose ``sample_token`` differs from its sample.
        """
        tokens, counts, flat = [], [], []
        for token, boxes in per_sample:
            tokens.append(token)
            counts.append(len(boxes))
            flat.extend(boxes)
        n = len(flat)
        # Field by field over all boxes (fast); any malformed box sends us to the per-box check,
        # which names it.
        try:
            fields = (("translation", 3), ("size", 3), ("rotation", 4), ("velocity", 2))
            arrays = [_float_rows(flat, k, d) for k, d in fields]
            names = list(map(itemgetter("detection_name"), flat))
            attrs = list(map(methodcaller("get", "attribute_name", ""), flat))
            scores = np.fromiter(map(float, map(methodcaller("get", "detection_score", -1.0), flat)), np.float64, n)
            npts = np.fromiter(map(int, map(methodcaller("get", "num_pts", -1), flat)), np.int64, n)
            own = list(map(methodcaller("get", "sample_token"), flat))
            starts = np.concatenate([[0], np.cumsum(counts)]).tolist()
            for token, a, b in zip(tokens, starts[:-1], starts[1:], strict=True):
                if not set(own[a:b]) <= {None, token}:
                    raise ValueError("sample token")
            if not all(isinstance(x, str) for x in names + attrs):
                raise ValueError("names")
        except (KeyError, TypeError, ValueError, AttributeError):
            _check_each(
                zip(tokens, np.split(np.array(flat + [None], object)[:-1], np.cumsum(counts)[:-1]), strict=True)
            )
            raise
        out = cls(
            sample_tokens=tuple(tokens),
            offsets=np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64),
            translation=arrays[0],
            size=arrays[1],
            rotation=arrays[2],
            velocity=arrays[3],
            names=np.array(names, dtype=str) if n else np.zeros(0, "<U1"),
            attributes=np.array(attrs, dtype=str) if n else np.zeros(0, "<U1"),
            scores=scores,
            num_pts=npts,
        )
        out.validate(ground_truth=ground_truth)
        return out

    def validate(self, *, ground_truth: bool = False, names_checked: bool = False) -> None:
        """Raises NuScenesEvalError where the devkit would assert (see ``from_records``).

        ``names_checked``: the detection and attribute names are known valid (boxes built from
        indices into the official lists), so the string comparison over every box is skipped."""
        for what, a in (("translation", self.translation), ("size", self.size), ("rotation", self.rotation)):
            bad = ~np.isfinite(a).all(axis=1)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise NuScenesEvalError(
                    f"sample {self._token_of(i)!r}: box {i} has a non-finite {what} {a[i].tolist()}"
                )
        bad = ~np.isfinite(self.scores)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise NuScenesEvalError(f"sample {self._token_of(i)!r}: box {i} has detection_score {self.scores[i]}")
        norms = np.linalg.norm(self.rotation, axis=1)
        if (norms == 0).any():
            i = int(np.flatnonzero(norms == 0)[0])
            raise NuScenesEvalError(f"sample {self._token_of(i)!r}: box {i} has a zero rotation quaternion")
        if names_checked:
            return
        bad_names = set(np.unique(self.names).tolist()) - set(DETECTION_NAMES)
        if bad_names:
            raise NuScenesEvalError(f"detection names {sorted(bad_names)} are not among {list(DETECTION_NAMES)}")
        bad_attrs = set(np.unique(self.attributes).tolist()) - set(ATTRIBUTE_NAMES) - {""}
        if bad_attrs:
            raise NuScenesEvalError(f"attribute names {sorted(bad_attrs)} are not among {list(ATTRIBUTE_NAMES)} or ''")

    def _token_of(self, i: int) -> str:
        return self.sample_tokens[int(np.searchsorted(self.offsets, i, side="right")) - 1]

    def records(self, s: int) -> list[dict]:
        """The box dicts of sample ``s`` (results JSON form)."""
        token = self.sample_tokens[s]
        out = []
        for i in range(int(self.offsets[s]), int(self.offsets[s + 1])):
            out.append({
                "sample_token": token,
                "translation": self.translation[i].tolist(),
                "size": self.size[i].tolist(),
                "rotation": self.rotation[i].tolist(),
                "velocity": self.velocity[i].tolist(),
                "detection_name": str(self.names[i]),
                "detection_score": float(self.scores[i]),
                "attribute_name": str(self.attributes[i]),
            })  # fmt: skip
        return out


@dataclass(frozen=True, eq=False)
class NuScenesResults:
    """A results JSON: predicted boxes per sample (in the file's order) and its ``meta``."""

    boxes: DetectionBoxes
    meta: dict = field(default_factory=lambda: dict(DEFAULT_META))

    def to_json(self) -> dict:
        b = self.boxes
        return {"meta": dict(self.meta), "results": {t: b.records(s) for s, t in enumerate(b.sample_tokens)}}


def results_from_json(data: Mapping) -> NuScenesResults:
    """``NuScenesResults`` from a loaded results JSON (see ``DetectionBoxes.from_records``)."""
    if not isinstance(data, Mapping) or "results" not in data:
        raise NuScenesEvalError("a nuScenes results JSON needs a 'results' field ({sample_token: [boxes]})")
    if "meta" not in data:
        raise NuScenesEvalError("a nuScenes results JSON needs a 'meta' field (e.g. {'use_lidar': true, ...})")
    if not isinstance(data["meta"], Mapping):
        raise NuScenesEvalError(f"'meta' must be a dict, not {type(data['meta']).__name__}")
    results = data["results"]
    if not isinstance(results, Mapping):
        raise NuScenesEvalError(f"'results' must be a dict of sample token -> boxes, not {type(results).__name__}")
    for token, boxes in results.items():
        if not isinstance(boxes, list):
            raise NuScenesEvalError(f"results[{token!r}] must be a list of boxes, not {type(boxes).__name__}")
    return NuScenesResults(DetectionBoxes.from_records(results.items()), dict(data["meta"]))


def read_results(path: str | os.PathLike) -> NuScenesResults:
    """Reads a results JSON file.

    Files of the usual shape go through a compiled scanner straight into arrays
    (``nuscenes_results_scan``, tens of times faster than building the JSON's Python objects); any
    other file, including every malformed one, is read with ``json`` and ``results_from_json``,
    which give the same boxes or the error."""
    with open(path, "rb") as f:
        data = f.read()
    scanned = scan_results(data, DETECTION_NAMES, ATTRIBUTE_NAMES)
    if scanned is not None:
        return _results_from_scan(data, scanned)
    try:
        data = loads_json(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise NuScenesEvalError(f"{path}: not valid JSON ({e})") from None
    return results_from_json(data)


def _results_from_scan(data: bytes, scanned) -> NuScenesResults:
    meta, tokens, counts, numbers, name, attr, npts = scanned
    n = len(numbers)
    names = np.array(DETECTION_NAMES)[name] if n else np.zeros(0, "<U1")
    attributes = np.array(("", *ATTRIBUTE_NAMES))[attr] if n else np.zeros(0, "<U1")
    boxes = DetectionBoxes(
        sample_tokens=tuple(tokens),
        offsets=np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64),
        translation=np.ascontiguousarray(numbers[:, 0:3]),
        size=np.ascontiguousarray(numbers[:, 3:6]),
        rotation=np.ascontiguousarray(numbers[:, 6:10]),
        velocity=np.ascontiguousarray(numbers[:, 10:12]),
        names=names,
        attributes=attributes,
        scores=np.ascontiguousarray(numbers[:, 12]),
        num_pts=npts,
    )
    boxes.validate(names_checked=True)  # the scanner only accepts the official names
    return NuScenesResults(boxes, dict(loads_json(meta)))


def write_results(path: str | os.PathLike, results: NuScenesResults) -> Path:
    """Writes ``results`` as the official results JSON (NaN velocities as ``NaN``, which Python's
    and the devkit's JSON readers accept)."""
    path = Path(path)
    with atomic_file(path, "w") as f:
        json.dump(results.to_json(), f)
    return path


def results_from_lidar_boxes(
    samples: Iterable[tuple[str, np.ndarray, np.ndarray, Sequence[str], np.ndarray]],
    meta: Mapping | None = None,
) -> NuScenesResults:
    """Results from pointformer predictions in each sample's LIDAR_TOP frame.

    Args:
        samples: ``(sample_token, boxes, scores, names, lidar_to_global)`` per sample: ``boxes``
            ``(M, 9)`` ``[x, y, z, l, w, h, yaw, vx, vy]`` (centre, m; yaw rad about z, from the
            frame's x axis; velocity m/s in the frame), ``scores`` ``(M,)``, ``names`` the M
            detection names, ``lidar_to_global`` ``(4, 4)`` (``NuScenesSample.lidar_to_global``).
        meta: the file's ``meta`` (default: lidar only).

    Returns:
        Boxes in the global frame: translation, size ``[w, l, h]``, the quaternion of
        ``R_lidar_to_global @ Rz(yaw)`` (w >= 0), the velocity rotated into the global frame (x, y
        kept), and ``default_attribute`` of that velocity.
    """
    per_sample = []
    for token, boxes, scores, names, lidar_to_global in samples:
        boxes = np.asarray(boxes, np.float64).reshape(-1, 9)
        scores = np.asarray(scores, np.float64).reshape(-1)
        m = np.asarray(lidar_to_global, np.float64)
        if len(scores) != len(boxes) or len(names) != len(boxes):
            raise ValueError(f"sample {token!r}: {len(boxes)} boxes, {len(scores)} scores, {len(names)} names")
        rot, t = m[:3, :3], m[:3, 3]
        centre = boxes[:, :3] @ rot.T + t
        vel = np.concatenate([boxes[:, 7:9], np.zeros((len(boxes), 1))], axis=1) @ rot.T
        records = []
        for i in range(len(boxes)):
            c, s = math.cos(boxes[i, 6]), math.sin(boxes[i, 6])
            q = matrix_to_quaternion(rot @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]))
            v = vel[i, :2]
            records.append({
                "sample_token": token,
                "translation": centre[i].tolist(),
                "size": [float(boxes[i, 4]), float(boxes[i, 3]), float(boxes[i, 5])],
                "rotation": q.tolist(),
                "velocity": v.tolist(),
                "detection_name": str(names[i]),
                "detection_score": float(scores[i]),
                "attribute_name": default_attribute(str(names[i]), v),
            })  # fmt: skip
        per_sample.append((token, records))
    return NuScenesResults(DetectionBoxes.from_records(per_sample), dict(meta if meta is not None else DEFAULT_META))
