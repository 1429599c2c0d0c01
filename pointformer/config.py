"""YAML configs: ``_base_`` inheritance, ``--set key=value`` overrides, validation, typed sections.

A config file is YAML with these top-level sections (see ``configs/waymo_flatformer.yaml``)::

    _base_: other.yaml            # optional; a path relative to this file, or a list of them
    dataset:      root, train_split, val_split, the nuScenes evaluation source (nuscenes_dataroot,
                  nuscenes_version, nuscenes_eval_split) and every ``DatasetConfig`` option
    voxelization: point_cloud_range, voxel_size (the grid, derived once as a ``VoxelGrid``),
                  max_points_per_voxel, max_voxels
    model:        voxel_encoder, backbone3d, bev, backbone2d, neck, head: ``{type: Name, ...kwargs}``
    optimizer:    type, lr, weight_decay, betas, ...
    schedule:     type and its options
    train:        epochs, batch_size, workers, grad_clip, amp, seed, ... (``TrainSettings``)
    eval:         score_threshold-free options of evaluation (``EvalSettings``)

Merging (bases first, then the file, then overrides): mappings merge key by key, everything else
(lists included) replaces. ``--set a.b=c`` parses ``c`` as a YAML scalar or flow sequence
(``--set train.epochs=2``, ``--set voxelization.voxel_size=[0.4,0.4,6]``).

Validation fails with ``ConfigError`` naming the file and the dotted key: unknown keys in every
section (model components against their constructors' keyword arguments, at build time), a voxel
size that does not divide the range, a window larger than the grid, class names of the head that
differ from the dataset's.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pointformer.config_values import (
    DATASET_VALUES,
    EVAL_VALUES,
    OPTIMIZER_VALUES,
    SCHEDULE_VALUES,
    TRAIN_VALUES,
    section_problem,
)
from pointformer.structures.grid import VoxelGrid
from pointformer.utils.errors import InputError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
SECTIONS = ("dataset", "voxelization", "model", "optimizer", "schedule", "train", "eval")
MODEL_PARTS = ("voxel_encoder", "backbone3d", "bev", "backbone2d", "neck", "head")
METRICS = ("waymo", "nuscenes", "none")
# Keys of the ``dataset`` section that say where the data is and how it is evaluated; the other
# keys are ``DatasetConfig`` options.
LOCATION_KEYS = ("root", "train_split", "val_split", "nuscenes_dataroot", "nuscenes_version", "nuscenes_eval_split")


class ConfigError(InputError, ValueError):
    """A config that cannot be used; the message names the file and the key."""


def _yaml():
    try:
        import yaml
    except ImportError as e:  # pragma: no cover - pyyaml is a pinned dependency
        raise ImportError("reading configs needs PyYAML: pip install pyyaml") from e
    return yaml


_LOADER = None  # the SafeLoader subclass of _safe_load, made on first use (PyYAML is imported lazily)


def _safe_load(text: str) -> Any:
    """``yaml.safe_load`` that also reads ``1e-3`` as a float (YAML 1.1, PyYAML's schema, needs a
    dot, ``1.0e-3``, and would give the string ``"1e-3"`` for ``lr: 1e-3`` or ``--set optimizer.lr=1e-3``)."""
    yaml = _yaml()
    global _LOADER
    if _LOADER is None:

        class Loader(yaml.SafeLoader):
            pass

        Loader.add_implicit_resolver(
            "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"), list("-+0123456789")
        )
        _LOADER = Loader
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a SafeLoader subclass


@dataclass(frozen=True)
class TrainSettings:
    """The ``train`` section.

    Attributes:
        epochs: passes over the training split.
        batch_size: frames per step per process.
        workers: DataLoader worker processes per process (0: load in the main process).
        grad_clip: max global gradient norm; None: no clipping.
        amp: ``"auto"`` (bf16 on CUDA when supported, else fp16 with loss scaling; fp32 on CPU),
            ``"bf16"``, ``"fp16"`` or ``"off"``.
        seed: seed of python, numpy and torch, and of the dataset's per-frame generators.
        checkpoint_keep: how many epoch checkpoints to keep.
        eval_interval: evaluate every this many epochs (and always after the last); 0: only at
            the end.
        log_interval: iterations between TensorBoard scalars.
        sync_bn: convert BatchNorm to SyncBatchNorm in distributed runs.
        max_frames: train on the first this many frames of the split only (None: all); for smoke
            tests and demos.
        cbgs: class-balanced grouped sampling (CenterPoint's "DS sampling", OpenPCDet's
            ``BALANCED_RESAMPLING``): each epoch is a resampling of the training frames in which
            every class's frames are drawn equally often (``pointformer.data.cbgs``).
    """

    epochs: int = 24
    batch_size: int = 1
    workers: int = 4
    grad_clip: float | None = 10.0
    amp: str = "auto"
    seed: int = 0
    checkpoint_keep: int = 3
    eval_interval: int = 0
    log_interval: int = 20
    sync_bn: bool = False
    max_frames: int | None = None
    cbgs: bool = False

    def __post_init__(self) -> None:
        # YAML 1.1 reads a bare ``off`` / ``on`` (``amp: off``, ``--set train.amp=off``) as a boolean.
        if isinstance(self.amp, bool):
            object.__setattr__(self, "amp", "auto" if self.amp else "off")
        if self.epochs < 1 or self.batch_size < 1 or self.workers < 0 or self.checkpoint_keep < 1:
            raise ValueError("train.epochs, batch_size and checkpoint_keep must be >= 1, workers >= 0")
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise ValueError(f"train.amp must be auto, bf16, fp16 or off, got {self.amp!r}")


@dataclass(frozen=True)
class EvalSettings:
    """The ``eval`` section.

    Attributes:
        batch_size: frames per inference step.
        max_frames: evaluate the first this many frames of the split only (None: all).
        metric: ``"waymo"`` (the official mAP/mAPH on the frame table's boxes), ``"nuscenes"``
            (the devkit's mAP/NDS against a nuScenes dataroot's annotations, see
            ``DataSettings.nuscenes_dataroot``) or ``"none"``.
    """

    batch_size: int = 1
    max_frames: int | None = None
    metric: str = "waymo"

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"eval.metric must be one of {', '.join(METRICS)}, got {self.metric!r}")


@dataclass(frozen=True)
class DataSettings:
    """The ``dataset`` section: where the converted data is, and the ``DatasetConfig`` options.

    Attributes:
        root, train_split, val_split: the converted layout and its splits.
        options: the ``DatasetConfig`` options.
        nuscenes_dataroot: the raw nuScenes dataroot whose annotations ``eval.metric: nuscenes``
            evaluates against (None: the one ``tools/create_data.py`` recorded in ``meta.json``).
        nuscenes_version: its table folder (None: the converted layout's ``meta.json`` version).
        nuscenes_eval_split: the devkit split of the evaluated frames (None: the evaluated split's
            name, which the conversion takes from the devkit or ``splits.json``).
    """

    root: str
    train_split: str
    val_split: str
    options: Mapping[str, Any]
    nuscenes_dataroot: str | None = None
    nuscenes_version: str | None = None
    nuscenes_eval_split: str | None = None


@dataclass(frozen=True)
class Config:
    """A validated config.

    Attributes:
        path: the file it was read from ("" for a mapping).
        data: dataset location and ``DatasetConfig`` options (``dataset_config()`` builds it).
        grid: the voxel grid (the one place the grid shape is derived).
        max_points_per_voxel: -1 (dynamic voxelization) or a cap.
        max_voxels: -1 (no cap) or the most voxels kept per frame (OpenPCDet's
            ``MAX_NUMBER_OF_VOXELS``: the first voxels by the arrival of their first point).
        model: per part (``MODEL_PARTS``) a mapping with ``type`` and keyword arguments.
        optimizer, schedule: mappings with ``type`` and options.
        train, eval: typed settings.
        raw: the merged YAML as plain data (saved into checkpoints and work dirs).
    """

    path: str
    data: DataSettings
    grid: VoxelGrid
    max_points_per_voxel: int
    model: Mapping[str, Mapping[str, Any]]
    optimizer: Mapping[str, Any]
    schedule: Mapping[str, Any]
    train: TrainSettings
    eval: EvalSettings
    raw: Mapping[str, Any] = field(repr=False)
    max_voxels: int = -1

    @property
    def name(self) -> str:
        return Path(self.path).stem if self.path else "config"

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.data.options.get("class_names", ()))

    def dataset_config(self):
        """The ``DatasetConfig`` of the ``dataset`` section."""
        from pointformer.data.dataset import DatasetConfig

        return DatasetConfig.from_mapping(self.data.options)


# --- reading and merging ---------------------------------------------------------------------


def resolve_config_path(path_or_name: str | os.PathLike) -> Path:
    """A config path as given if it exists, else looked up under ``configs/`` (a bare name such as
    ``waymo_flatformer.yaml`` or ``waymo_flatformer``)."""
    p = Path(path_or_name)
    candidates = [p]
    if not p.is_absolute():
        candidates += [CONFIG_DIR / p, CONFIG_DIR / p.with_suffix(".yaml")]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    known = sorted(str(q.relative_to(CONFIG_DIR)) for q in CONFIG_DIR.rglob("*.yaml")) if CONFIG_DIR.is_dir() else []
    raise FileNotFoundError(f"config {str(path_or_name)!r} not found (as a path or under {CONFIG_DIR}); known: {known}")


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``update`` over ``base``: mappings merge recursively, everything else replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml_with_bases(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The file's mapping merged over its ``_base_`` files (depth first, in list order)."""
    if path in _seen:
        raise ConfigError(f"{path}: _base_ cycle through {[str(p) for p in _seen]}")
    try:
        data = _safe_load(path.read_text(encoding="utf-8"))
    except _yaml().YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    except UnicodeDecodeError as e:  # a binary file, or another encoding (fuzzing found it)
        raise ConfigError(f"{path}: not a UTF-8 text file ({e})") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    bases = data.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: _base_ must be a path or a list of paths")
    merged: dict[str, Any] = {}
    for b in bases:
        base_path = (path.parent / b).resolve()
        if not base_path.is_file():
            raise ConfigError(f"{path}: _base_ {b!r} not found (looked for {base_path})")
        merged = merge(merged, read_yaml_with_bases(base_path, (*_seen, path)))
    return merge(merged, data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=value"`` -> ``(["a", "b"], value)``, the value parsed as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like section.key=value")
    parts = key.strip().split(".")
    if any(not p for p in parts):
        raise ConfigError(f"override {text!r}: empty key part in {key!r}")
    try:
        parsed = _safe_load(value) if value.strip() else None
    except _yaml().YAMLError as e:
        raise ConfigError(f"override {text!r}: value is not valid YAML: {e}") from None
    return parts, parsed


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """``data`` with each ``a.b=value`` override applied (a mapping value merges)."""
    out = copy.deepcopy(dict(data))
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for i, p in enumerate(parts[:-1]):
            child = node.get(p)
            if child is None:
                child = node[p] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {'.'.join(parts[: i + 1])} is not a section")
            node = child
        leaf = parts[-1]
        if isinstance(value, Mapping) and isinstance(node.get(leaf), Mapping):
            node[leaf] = merge(node[leaf], value)
        else:
            node[leaf] = value
    return out


# --- validation ------------------------------------------------------------------------------


# The type and range of each typed section's values (``pointformer.config_values``).
_SECTION_VALUES = {"TrainSettings": ("train", TRAIN_VALUES), "EvalSettings": ("eval", EVAL_VALUES)}


def _settings(cls, section: Mapping[str, Any] | None, where: str):
    """The typed section ``cls`` of the file ``where``, its values checked by type and range first."""
    section = dict(section or {})
    name, values = _SECTION_VALUES[cls.__name__]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(f"{where}: {name}: unknown keys {unknown}; known: {sorted(known)}")
    if cls is TrainSettings and isinstance(section.get("amp"), bool):
        # YAML 1.1 reads a bare ``off`` / ``on`` as a boolean (TrainSettings maps it back).
        section["amp"] = "auto" if section["amp"] else "off"
    problem = section_problem(section, values, name)
    if problem is not None:
        raise ConfigError(f"{where}: {problem}")
    try:
        return cls(**section)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {name}: {e}") from None


def _grid(section: Mapping[str, Any], where: str) -> tuple[VoxelGrid, int, int]:
    known = {"point_cloud_range", "voxel_size", "max_points_per_voxel", "max_voxels"}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(f"{where}: voxelization: unknown keys {unknown}; known: {sorted(known)}")
    for key in ("point_cloud_range", "voxel_size"):
        if key not in section:
            raise ConfigError(f"{where}: voxelization.{key} is missing")
    try:
        grid = VoxelGrid.from_config(section["point_cloud_range"], section["voxel_size"])
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: voxelization: {e}") from None
    caps = {}
    for key in ("max_points_per_voxel", "max_voxels"):
        value = section.get(key, -1)
        if isinstance(value, bool) or not isinstance(value, int) or (value != -1 and value < 1):
            raise ConfigError(f"{where}: voxelization.{key} must be -1 (no cap) or a positive integer, got {value!r}")
        caps[key] = value
    return grid, caps["max_points_per_voxel"], caps["max_voxels"]


def _check_windows(model: Mapping[str, Any], grid: VoxelGrid, where: str) -> None:
    """Windows of the 3D backbone (``window_shape`` as ``[x, y]`` or ``[x, y, z]`` cells, or a list
    of them) must fit in the grid."""
    spec = model.get("backbone3d", {})
    shapes = spec.get("window_shape")
    if shapes is None:
        return
    if shapes and not isinstance(shapes[0], list | tuple):
        shapes = [shapes]
    gz, gy, gx = grid.shape
    for shape in shapes:
        limits = (gx, gy, gz)[: len(shape)]
        if any(int(w) > g or int(w) < 1 for w, g in zip(shape, limits, strict=True)):
            raise ConfigError(
                f"{where}: model.backbone3d.window_shape {list(shape)} (x, y[, z] cells) does not fit the grid "
                f"of {gx} x {gy} x {gz} cells (x, y, z) from voxelization"
            )


def _head_classes(model: Mapping[str, Any]) -> tuple[str, ...] | None:
    tasks = model.get("head", {}).get("tasks")
    if tasks is None:
        return None
    return tuple(name for task in tasks for name in task)


def validate(data: Mapping[str, Any], path: str = "") -> Config:
    """Checks the merged mapping and returns the typed ``Config``."""
    where = path or "<config>"
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{where}: unknown top-level keys {unknown}; known: {list(SECTIONS)}")
    for s in SECTIONS:
        if data.get(s) is not None and not isinstance(data[s], Mapping):
            raise ConfigError(f"{where}: {s} must be a mapping, got {type(data[s]).__name__}")
    grid, max_points, max_voxels = _grid(data.get("voxelization") or {}, where)

    ds = dict(data.get("dataset") or {})
    location = {k: ds.pop(k, None) for k in LOCATION_KEYS}
    ds.setdefault("point_cloud_range", list(grid.point_cloud_range))
    problem = section_problem(ds, DATASET_VALUES, "dataset", partial=True)
    if problem is not None:
        raise ConfigError(f"{where}: {problem}")
    try:
        from pointformer.data.dataset import DatasetConfig

        DatasetConfig.from_mapping(ds)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: dataset: {e}") from None
    data_settings = DataSettings(
        root=str(location["root"] or "datasets/waymo"),
        train_split=str(location["train_split"] or "training"),
        val_split=str(location["val_split"] or "validation"),
        options=ds,
        **{k: None if location[k] is None else str(location[k]) for k in LOCATION_KEYS[3:]},
    )

    model = data.get("model") or {}
    missing = [p for p in MODEL_PARTS if p not in model]
    extra = sorted(set(model) - set(MODEL_PARTS))
    if missing or extra:
        raise ConfigError(
            f"{where}: model needs exactly the parts {list(MODEL_PARTS)}; missing {missing}, unknown {extra}"
        )
    for part in MODEL_PARTS:
        spec = model[part]
        if not isinstance(spec, Mapping) or not isinstance(spec.get("type"), str):
            raise ConfigError(f"{where}: model.{part} must be a mapping with a 'type' name")
    _check_windows(model, grid, where)
    head_classes = _head_classes(model)
    if head_classes is not None and "class_names" in ds and tuple(ds["class_names"]) != head_classes:
        raise ConfigError(
            f"{where}: model.head.tasks name the classes {list(head_classes)} but dataset.class_names is "
            f"{list(ds['class_names'])} (the same names in the same order)"
        )
    for s, values in (("optimizer", OPTIMIZER_VALUES), ("schedule", SCHEDULE_VALUES)):
        problem = section_problem(data.get(s) or {}, values, s)
        if problem is not None:
            raise ConfigError(f"{where}: {problem}")
    return Config(
        path=path,
        data=data_settings,
        grid=grid,
        max_points_per_voxel=max_points,
        max_voxels=max_voxels,
        model={p: dict(model[p]) for p in MODEL_PARTS},
        optimizer=dict(data.get("optimizer") or {"type": "adamw"}),
        schedule=dict(data.get("schedule") or {"type": "one_cycle"}),
        train=_settings(TrainSettings, data.get("train"), where),
        eval=_settings(EvalSettings, data.get("eval"), where),
        raw=copy.deepcopy(dict(data)),
    )


def load_config(path_or_name: str | os.PathLike | Mapping[str, Any], overrides: Iterable[str] = ()) -> Config:
    """Reads, merges (``_base_``, then ``overrides`` such as ``"train.epochs=2"``) and validates a
    config. ``path_or_name``: a YAML path, a name under ``configs/`` or an already-loaded mapping."""
    if isinstance(path_or_name, Mapping):
        data, path = dict(path_or_name), ""
    else:
        p = resolve_config_path(path_or_name)
        data, path = read_yaml_with_bases(p), str(p)
    data = apply_overrides(data, overrides)
    return validate(data, path)
