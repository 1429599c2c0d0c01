"""nuScenes tables: loading and validating the 13 JSON tables, geometry helpers, names and splits.

Implemented from the published schema (``docs/schema_nuscenes.md`` of nuscenes-devkit) without
the devkit, which serves only as a test oracle.

Conventions (nuScenes): quaternions are ``[w, x, y, z]`` active rotations; ``calibrated_sensor``
is sensor -> ego, ``ego_pose`` ego -> global; LIDAR_TOP's sensor frame is x right, y forward, z up;
the ego frame x forward, y left, z up with its origin on the ground under the rear axle; sizes are
``[w, l, h]`` (the box's x axis carries the length); timestamps are microseconds.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from pathlib import Path

import numpy as np

from pointformer.data.formats.errors import DataFormatError
from pointformer.utils.jsonio import load_json

# The 13 tables NuScenes(...) loads, in the devkit's order.
TABLE_NAMES: tuple[str, ...] = (
    "category",
    "attribute",
    "visibility",
    "instance",
    "sensor",
    "calibrated_sensor",
    "ego_pose",
    "log",
    "scene",
    "sample",
    "sample_data",
    "sample_annotation",
    "map",
)

# General category -> detection class (devkit ``eval/detection/utils.category_to_detection_name``);
# categories not listed (animal, strollers, debris, bicycle racks, emergency vehicles, ...) have
# no detection class.
CATEGORY_TO_DETECTION: dict[str, str] = {
    "movable_object.barrier": "barrier",
    "vehicle.bicycle": "bicycle",
    "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus",
    "vehicle.car": "car",
    "vehicle.construction": "construction_vehicle",
    "vehicle.motorcycle": "motorcycle",
    "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.police_officer": "pedestrian",
    "movable_object.trafficcone": "traffic_cone",
    "vehicle.trailer": "trailer",
    "vehicle.truck": "truck",
}

# Detection classes in the official order (``detection_cvpr_2019`` class_range).
DETECTION_NAMES: tuple[str, ...] = (
    "car",
    "truck",
    "bus",
    "trailer",
    "construction_vehicle",
    "pedestrian",
    "motorcycle",
    "bicycle",
    "traffic_cone",
    "barrier",
)

ATTRIBUTE_NAMES: tuple[str, ...] = (
    "pedestrian.moving",
    "pedestrian.sitting_lying_down",
    "pedestrian.standing",
    "cycle.with_rider",
    "cycle.without_rider",
    "vehicle.moving",
    "vehicle.parked",
    "vehicle.stopped",
)

# Visibility records as in the real dataset: token -> level.
VISIBILITY_LEVELS: dict[str, str] = {"1": "v0-40", "2": "v40-60", "3": "v60-80", "4": "v80-100"}

# The devkit's predefined v1.0-mini splits (``nuscenes/utils/splits.py``). The 850 trainval and
# 150 test scene names are not embedded here: use ``splits.json`` for those.
PREDEFINED_SPLITS: dict[str, tuple[str, ...]] = {
    "mini_train": (
        "scene-0061",
        "scene-0553",
        "scene-0655",
        "scene-0757",
        "scene-0796",
        "scene-1077",
        "scene-1094",
        "scene-1100",
    ),
    "mini_val": ("scene-0103", "scene-0916"),
}

# Every split nuscenes-devkit defines in its code (``nuscenes/utils/splits.py``; it never reads
# splits.json for these names), with the version suffix its ``load_gt`` requires. Only the mini
# splits are embedded (``PREDEFINED_SPLITS``); the 1,000 trainval and test scene names come from an
# installed devkit.
DEVKIT_SPLITS: dict[str, str] = {
    "train": "trainval",
    "val": "trainval",
    "train_detect": "trainval",
    "train_track": "trainval",
    "test": "test",
    "mini_train": "mini",
    "mini_val": "mini",
}

SPLITS_FILE = "splits.json"


# --- geometry -------------------------------------------------------------------------------------


def quaternions_to_matrices(q: np.ndarray) -> np.ndarray:
    """``(N, 3, 3)`` float64 rotation matrices of ``(N, 4)`` quaternions ``[w, x, y, z]``
    (normalized first, as pyquaternion does); ValueError for a zero or non-finite quaternion."""
    q = np.asarray(q, dtype=np.float64)
    norms = np.sqrt((q * q).sum(axis=1, keepdims=True))
    bad = ~((norms > 0) & np.isfinite(norms))[:, 0]
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"quaternion {q[i].tolist()} has no rotation (norm {float(norms[i, 0])})")
    q = q / norms
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], 1)  # fmt: skip


def quaternion_to_matrix(q) -> np.ndarray:
    """``(3, 3)`` rotation matrix of one quaternion ``[w, x, y, z]`` (see ``quaternions_to_matrices``)."""
    return quaternions_to_matrices(np.asarray(q, dtype=np.float64).reshape(1, 4))[0]


def matrix_to_quaternion(rot: np.ndarray) -> np.ndarray:
    """``(4,)`` float64 unit quaternion ``[w, x, y, z]`` (w >= 0) of a ``(3, 3)`` rotation matrix."""
    m = np.asarray(rot, dtype=np.float64)
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    # Take the square root of the largest of 4w^2, 4x^2, 4y^2, 4z^2: numerically stable everywhere.
    if tr > max(m[0, 0], m[1, 1], m[2, 2]):
        s = 2.0 * math.sqrt(1.0 + tr)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] >= m[1, 1] and m[0, 0] >= m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] >= m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = np.array(q)
    q /= np.linalg.norm(q)
    return -q if q[0] < 0 else q


def yaw_to_quaternion(yaw: float) -> np.ndarray:
    """``(4,)`` float64 ``[w, x, y, z]`` of a rotation by ``yaw`` radians about +z."""
    return np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])


def transform_matrix(translation, rotation, inverse: bool = False) -> np.ndarray:
    """``(4, 4)`` float64 ``[[R, t], [0, 1]]`` from a translation ``(3,)`` and a quaternion
    ``[w, x, y, z]``; with ``inverse``, ``[[R^T, -R^T t], [0, 1]]``."""
    rot = quaternion_to_matrix(rotation)
    t = np.asarray(translation, dtype=np.float64).reshape(3)
    out = np.eye(4)
    if inverse:
        out[:3, :3] = rot.T
        out[:3, 3] = -rot.T @ t
    else:
        out[:3, :3] = rot
        out[:3, 3] = t
    return out


def invert_rigid(m: np.ndarray) -> np.ndarray:
    """The inverse of a ``(4, 4)`` rigid transform."""
    out = np.eye(4)
    out[:3, :3] = m[:3, :3].T
    out[:3, 3] = -m[:3, :3].T @ m[:3, 3]
    return out


# --- tables ---------------------------------------------------------------------------------------


def safe_join(dataroot: str | os.PathLike, relpath: str, table: str, token: str) -> Path:
    """``dataroot / relpath`` for a path read from a data file, refusing any path that leaves
    ``dataroot`` (absolute, a drive, or ``..`` beyond the root).

    The check is lexical (after normalizing ``.`` and ``..``), not through ``Path.resolve``: a
    dataset whose ``samples/`` is a symbolic link to another disk, placed by its owner, stays
    readable, while no string in a table can reach outside the root.

    Raises:
        DataFormatError naming the table, the record's token and the path.
    """
    if not isinstance(relpath, str) or not relpath:
        raise DataFormatError(f"{table} {token!r}: file path {relpath!r} is not a non-empty string")
    norm = posixpath.normpath(relpath.replace("\\", "/"))
    if (
        posixpath.isabs(norm)
        or os.path.isabs(relpath)
        or norm == ".."
        or norm.startswith("../")
        or (len(norm) > 1 and norm[1] == ":")
        or "\x00" in norm
    ):
        raise DataFormatError(f"{table} {token!r}: file path {relpath!r} escapes the dataroot {str(dataroot)!r}")
    return Path(dataroot) / norm


@dataclass(frozen=True, eq=False)
class NuScenesTables:
    """The 13 tables of one version, as loaded, plus token indices.

    Attributes:
        dataroot: the dataset root (holds ``<version>/``, ``samples/``, ``sweeps/``, ``maps/``).
        version: e.g. ``"v1.0-mini"``.
        tables: table name -> list of records (dicts, file order).
        index: table name -> {token: record}.
    """

    dataroot: Path
    version: str
    tables: dict[str, list[dict]]
    index: dict[str, dict[str, dict]]

    def get(self, table: str, token: str) -> dict:
        """The record of ``table`` with ``token``."""
        try:
            return self.index[table][token]
        except KeyError:
            raise DataFormatError(f"{table}: no record with token {token!r}") from None

    @property
    def table_root(self) -> Path:
        return self.dataroot / self.version


def _load_table(path: Path, name: str) -> tuple[list[dict], dict[str, dict]]:
    """The records of a table file and its token index."""
    if not path.is_file():
        raise DataFormatError(f"missing nuScenes table {name!r}: {path} does not exist")
    try:
        records = load_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataFormatError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(records, list):
        raise DataFormatError(f"{path}: a table must be a JSON list of records, got {type(records).__name__}")
    # C-level passes over the records (tables reach millions of them); a failure re-runs the
    # check record by record to name the bad one.
    try:
        index = dict(zip(map(itemgetter("token"), records), records, strict=True))
    except (TypeError, KeyError):  # a record that is no object, has no token, or an unhashable one
        index = None
    if index is None or len(index) != len(records) or not all(type(k) is str for k in index):
        seen: set = set()
        for i, r in enumerate(records):
            if not isinstance(r, dict):
                raise DataFormatError(f"{path}: record {i} is a {type(r).__name__}, not an object")
            if "token" not in r:
                raise DataFormatError(f"{path}: record {i} has no 'token'")
            if not isinstance(r["token"], str):
                raise DataFormatError(f"{path}: record {i}: 'token' must be a string, got {type(r['token']).__name__}")
            if r["token"] in seen:
                raise DataFormatError(f"{path}: duplicate token {r['token']!r}")
            seen.add(r["token"])
    return records, index


def _check_refs(tables, index, table: str, field: str, target: str, *, optional: bool = False) -> None:
    """Every ``record[field]`` of ``table`` names a record of ``target`` (``""`` allowed when
    ``optional``, as for prev/next)."""
    known = index[target]
    records = tables[table]
    try:
        values = list(map(itemgetter(field), records))
        if set(map(type, values)) == {list}:  # lists of tokens (attribute_tokens, log_tokens)
            names = set(chain.from_iterable(values))
        else:
            names = set(values)
        missing = names.difference(known)
        if optional:
            missing.discard("")
        if not missing:
            return
    except (KeyError, TypeError):  # a missing field, an unhashable value
        pass
    # Something is wrong: find the first record that shows it.
    for r in records:
        if field not in r:
            raise DataFormatError(f"{table} {r['token']!r}: missing field {field!r}")
        values: Iterable = r[field] if isinstance(r[field], list) else (r[field],)
        for v in values:
            if optional and v == "":
                continue
            try:
                found = v in known
            except TypeError:  # unhashable
                found = False
            if not found:
                raise DataFormatError(f"{table} {r['token']!r}: {field} {v!r} names no record of {target}")


def load_tables(dataroot: str | os.PathLike, version: str = "v1.0-mini") -> NuScenesTables:
    """Loads and validates ``<dataroot>/<version>/<table>.json`` for the 13 tables.

    Validation: each table exists and is a list of objects with unique ``token``s; every
    reference the readers follow names an existing record (scene -> log and first/last sample;
    sample -> scene, prev/next; sample_data -> sample, ego_pose, calibrated_sensor, prev/next;
    calibrated_sensor -> sensor; instance -> category; sample_annotation -> sample, instance,
    attributes, visibility, prev/next; map -> logs); a sample_annotation has at most one attribute
    (the devkit's evaluation raises on two or more; we refuse them here, at load).

    Raises:
        DataFormatError naming the file or the table, record token and field.
    """
    dataroot = Path(dataroot)
    root = dataroot / version
    if not root.is_dir():
        raise DataFormatError(f"nuScenes table directory {root} does not exist")
    tables: dict[str, list[dict]] = {}
    index: dict[str, dict[str, dict]] = {}
    for name in TABLE_NAMES:
        tables[name], index[name] = _load_table(root / f"{name}.json", name)
    refs = (
        ("scene", "log_token", "log", False),
        ("scene", "first_sample_token", "sample", False),
        ("scene", "last_sample_token", "sample", False),
        ("sample", "scene_token", "scene", False),
        ("sample", "prev", "sample", True),
        ("sample", "next", "sample", True),
        ("sample_data", "sample_token", "sample", False),
        ("sample_data", "ego_pose_token", "ego_pose", False),
        ("sample_data", "calibrated_sensor_token", "calibrated_sensor", False),
        ("sample_data", "prev", "sample_data", True),
        ("sample_data", "next", "sample_data", True),
        ("calibrated_sensor", "sensor_token", "sensor", False),
        ("instance", "category_token", "category", False),
        ("sample_annotation", "sample_token", "sample", False),
        ("sample_annotation", "instance_token", "instance", False),
        ("sample_annotation", "attribute_tokens", "attribute", False),
        ("sample_annotation", "visibility_token", "visibility", True),
        ("sample_annotation", "prev", "sample_annotation", True),
        ("sample_annotation", "next", "sample_annotation", True),
        ("map", "log_tokens", "log", False),
    )
    for table, field, target, optional in refs:
        _check_refs(tables, index, table, field, target, optional=optional)
    attribute_tokens = list(map(itemgetter("attribute_tokens"), tables["sample_annotation"]))
    if set(map(type, attribute_tokens)) <= {list} and max(map(len, attribute_tokens), default=0) <= 1:
        return NuScenesTables(dataroot, version, tables, index)
    for r in tables["sample_annotation"]:
        if not isinstance(r["attribute_tokens"], list) or len(r["attribute_tokens"]) > 1:
            raise DataFormatError(
                f"sample_annotation {r['token']!r}: attribute_tokens must be a list of at most one token "
                f"(the devkit's evaluation rejects more), got {r['attribute_tokens']!r}"
            )
    return NuScenesTables(dataroot, version, tables, index)


def scene_names_of_split(dataroot: str | os.PathLike, version: str, split: str) -> tuple[str, ...]:
    """Scene names of ``split``: the devkit's predefined ``mini_train`` / ``mini_val``; its
    ``train``, ``val``, ``test``, ``train_detect`` and ``train_track`` (read from nuscenes-devkit,
    which must then be installed); else the list under ``split`` in
    ``<dataroot>/<version>/splits.json`` (``{split: [scene names]}``, the custom splits of devkit
    1.2.0)."""
    if split in PREDEFINED_SPLITS:
        return PREDEFINED_SPLITS[split]
    if split in DEVKIT_SPLITS:
        try:
            from nuscenes.utils.splits import create_splits_scenes
        except ImportError as e:
            raise DataFormatError(
                f"split {split!r}: its scene names are defined in nuscenes-devkit's code, which is not importable "
                f"({e}); install it (pip install --no-deps nuscenes-devkit==1.2.0), or list the scenes under another "
                f"name in {Path(dataroot) / version / SPLITS_FILE}"
            ) from None
        return tuple(create_splits_scenes()[split])
    path = Path(dataroot) / version / SPLITS_FILE
    if not path.is_file():
        raise DataFormatError(
            f"split {split!r} is not predefined here ({sorted(PREDEFINED_SPLITS)}) and {path} does not exist"
        )
    try:
        splits = load_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataFormatError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(splits, dict) or split not in splits:
        have = sorted(splits) if isinstance(splits, dict) else type(splits).__name__
        raise DataFormatError(f"{path}: no split {split!r} (have {have})")
    names = splits[split]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataFormatError(f"{path}: split {split!r} must be a list of scene names")
    return tuple(names)
