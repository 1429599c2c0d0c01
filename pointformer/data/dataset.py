"""``LayoutDataset``: the training/evaluation dataset over the converted layout.

``dataset[i]`` loads frame ``i`` of ``frames_<split>.parquet`` and runs, in order (OpenPCDet's
``prepare_data`` order):

1. load the points (raw layout columns; with ``num_sweeps`` > 0 the previous sweeps moved into the
   frame by pose, plus a ``"time"`` column) and the boxes, labelled by ``class_names``;
2. augmentation (training, and not disabled for the epoch): ground-truth sampling, then the
   global augmentations (flip, rotation, scaling, translation);
3. processing (always): class filter, min-points filter, point feature encoding, range filter;
4. point shuffling (training, augmentation enabled).

Randomness comes from one ``numpy.random.Generator`` per frame seeded by ``(seed, epoch, index)``,
so a sample is the same whatever DataLoader worker computes it. Call ``set_epoch`` before each
epoch; the DataLoader must then copy the dataset into its workers again (the default,
``persistent_workers=False``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch.utils.data

from pointformer.data.augment import (
    Compose,
    GlobalRotation,
    GlobalScaling,
    GlobalTranslation,
    RandomFlip,
    ShufflePoints,
    Transform,
)
from pointformer.data.formats.nuscenes_tables import DETECTION_NAMES
from pointformer.data.gt_sampling import GTSampler, GTSamplingConfig
from pointformer.data.layout import FrameRecord, read_frame_table, read_gt_database, read_meta
from pointformer.data.points import TIME, load_frame_points
from pointformer.data.processing import ClassFilter, EncodeFeatures, MinPointsFilter, RangeFilter, class_labels
from pointformer.data.sample import FrameSample

WAYMO_RANGE = (-74.88, -74.88, -2.0, 74.88, 74.88, 4.0)
# The 10 nuScenes detection classes (the converted table's ``names``), in the devkit's order.
NUSCENES_CLASS_NAMES = DETECTION_NAMES
NUSCENES_RANGE = (-51.2, -51.2, -5.0, 51.2, 51.2, 3.0)  # CenterPoint / OpenPCDet nuScenes


@dataclass(frozen=True)
class DatasetConfig:
    """Options of ``LayoutDataset`` (the YAML ``data`` section; defaults: FlatFormer's Waymo set-up).

    Attributes:
        class_names: classes to detect; labels are 0-based indices into this tuple, boxes of other
            classes are dropped.
        point_features: point columns handed to the model, by name: layout columns
            (``meta["point_features"]``) and ``"time"`` (seconds before the frame; needs or goes
            with ``num_sweeps``).
        feature_transforms: feature name -> ``"tanh"`` or ``"none"`` (Waymo: tanh on intensity and
            elongation).
        num_sweeps: previous sweeps merged into each frame (0: single frame; 2 gives a 3-frame
            input). At most the layout's ``meta["splits"][split]["sweeps"]``.
        close_point_radius: metres; points of each merged sweep with ``|x|`` and ``|y|`` below it
            in their own sensor frame are dropped (ego-vehicle returns; nuScenes practice: 1.0,
            applied to the previous sweeps as OpenPCDet and mmdet3d do); 0: off.
        close_points_in_frame: drop them from the frame's own points too (the nuScenes devkit's
            ``from_file_multisweep`` behaviour).
        point_cloud_range: ``(x_min, y_min, z_min, x_max, y_max, z_max)`` metres; None: no filter.
        min_points_in_box: boxes with fewer labelled points are dropped (1: drop empty boxes).
        gt_sampling: ground-truth sampling options; None: off.
        flip_axes: axes of ``RandomFlip`` (``"x"``, ``"y"``); empty: off.
        flip_probability: probability of each flip.
        rotation_range: radians, uniform; None: off.
        scaling_range: uniform factor; None: off.
        translation_std: per-axis normal std in metres; None: off.
        shuffle_points: shuffle the points in training.
        disable_augmentation_after_epoch: from this epoch on (0-based, ``set_epoch``), ground-truth
            sampling and the random augmentations are off (the filters stay); None: never.
        seed: base seed of the per-frame generators.
    """

    class_names: tuple[str, ...] = ("Vehicle", "Pedestrian", "Cyclist")
    point_features: tuple[str, ...] = ("x", "y", "z", "intensity", "elongation")
    feature_transforms: Mapping[str, str] = field(default_factory=lambda: {"intensity": "tanh", "elongation": "tanh"})
    num_sweeps: int = 0
    close_point_radius: float = 0.0
    close_points_in_frame: bool = False
    point_cloud_range: tuple[float, ...] | None = WAYMO_RANGE
    min_points_in_box: int = 1
    gt_sampling: GTSamplingConfig | None = None
    flip_axes: tuple[str, ...] = ("x", "y")
    flip_probability: float = 0.5
    rotation_range: tuple[float, float] | None = (-np.pi / 4, np.pi / 4)
    scaling_range: tuple[float, float] | None = (0.95, 1.05)
    translation_std: tuple[float, float, float] | None = None
    shuffle_points: bool = True
    disable_augmentation_after_epoch: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.close_point_radius < 0:
            raise ValueError(f"close_point_radius must be >= 0, got {self.close_point_radius}")
        if self.num_sweeps < 0:
            raise ValueError(f"num_sweeps must be >= 0, got {self.num_sweeps}")
        if self.num_sweeps and TIME not in self.point_features:
            raise ValueError(f"num_sweeps={self.num_sweeps} needs the {TIME!r} point feature")
        if tuple(self.point_features[:3]) != ("x", "y", "z"):
            raise ValueError(f"point_features must start with x, y, z, got {self.point_features}")
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class_names repeat a name: {self.class_names}")

    @classmethod
    def nuscenes(cls, **overrides: Any) -> DatasetConfig:
        """nuScenes defaults (OpenPCDet / CenterPoint practice): the 10 detection classes,
        ``x, y, z, intensity, time`` (raw intensity), 10-sweep input (9 previous) with the 1 m
        close-point removal on the sweeps, range +-51.2 m x -5..3 m, flips x/y, rotation +-pi/4,
        scaling 0.95-1.05; ``overrides`` replace any option."""
        base = {
            "class_names": NUSCENES_CLASS_NAMES,
            "point_features": ("x", "y", "z", "intensity", TIME),
            "feature_transforms": {},
            "num_sweeps": 9,
            "close_point_radius": 1.0,
            "point_cloud_range": NUSCENES_RANGE,
        }
        return cls.from_mapping({**base, **overrides})

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> DatasetConfig:
        """Builds the config from plain values (YAML), rejecting unknown keys; lists become tuples
        and a ``gt_sampling`` mapping a ``GTSamplingConfig``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown dataset options {unknown}; known: {sorted(known)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
        gt = values.get("gt_sampling")
        if isinstance(gt, Mapping):
            gt_known = {f.name for f in dataclasses.fields(GTSamplingConfig)}
            bad = sorted(set(gt) - gt_known)
            if bad:
                raise ValueError(f"unknown gt_sampling options {bad}; known: {sorted(gt_known)}")
            values["gt_sampling"] = GTSamplingConfig(
                **{k: tuple(v) if isinstance(v, list) else v for k, v in gt.items()}
            )
        return cls(**values)


class LayoutDataset(torch.utils.data.Dataset):
    """Frames of one split of a converted dataset as ``FrameSample`` (see the module docstring).

    Args:
        root: converted dataset root (``meta.json``, ``frames_<split>.parquet``, ...).
        split: split name, e.g. ``"training"``.
        config: ``DatasetConfig`` or a plain mapping of its options.
        training: run the augmentations (else only loading and processing).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        config: DatasetConfig | Mapping[str, Any] | None = None,
        training: bool = False,
    ) -> None:
        if config is None:
            config = DatasetConfig()
        elif not isinstance(config, DatasetConfig):
            config = DatasetConfig.from_mapping(config)
        self.root = root
        self.split = split
        self.config = config
        self.training = training
        self.epoch = 0
        meta = read_meta(root)
        self.raw_features: tuple[str, ...] = tuple(meta["point_features"])
        available = meta.get("splits", {}).get(split, {}).get("sweeps")
        if available is not None and config.num_sweeps > available:
            raise ValueError(
                f"num_sweeps={config.num_sweeps} but {root} lists {available} sweeps per frame for {split!r}"
            )
        self.frames = read_frame_table(root, split)
        self.gt_sampler: GTSampler | None = None
        if training and config.gt_sampling is not None and config.gt_sampling.sample_groups:
            db_split = config.gt_sampling.database_split or split
            self.gt_sampler = GTSampler(
                root,
                read_gt_database(root, db_split),
                self.raw_features,
                config.class_names,
                config.gt_sampling,
                config.seed,
            )
        self.augmentations = Compose(tuple(_global_augmentations(config)))
        processing: list[Transform] = [ClassFilter()]
        if config.min_points_in_box > 0:
            processing.append(MinPointsFilter(config.min_points_in_box))
        processing.append(EncodeFeatures(tuple(config.point_features), dict(config.feature_transforms)))
        if config.point_cloud_range is not None:
            processing.append(RangeFilter(tuple(config.point_cloud_range)))
        self.processing = Compose(tuple(processing))

    def __len__(self) -> int:
        return len(self.frames)

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch (0-based): it seeds the generators and the gt-sampling pool order, and
        switches augmentation off from ``disable_augmentation_after_epoch`` on."""
        self.epoch = int(epoch)

    @property
    def augmenting(self) -> bool:
        """Whether this epoch's samples are augmented."""
        stop = self.config.disable_augmentation_after_epoch
        return self.training and (stop is None or self.epoch < stop)

    def generator(self, index: int) -> np.random.Generator:
        """The generator of frame (or draw, see ``get``) ``index`` in the current epoch."""
        return np.random.default_rng([self.config.seed, self.epoch, index])

    def load(self, index: int) -> FrameSample:
        """Frame ``index`` as loaded: raw point columns (+ ``"time"``), all labelled boxes."""
        rec: FrameRecord = self.frames[index]
        with_time = TIME in self.config.point_features
        cfg = self.config
        points = load_frame_points(self.root, rec, self.raw_features, cfg.num_sweeps, with_time,
                                   cfg.close_point_radius, cfg.close_points_in_frame)  # fmt: skip
        return FrameSample(
            frame_id=rec.frame_id,
            points=points,
            point_features=self.raw_features + ((TIME,) if with_time else ()),
            boxes=np.ascontiguousarray(rec.boxes, np.float32),
            names=rec.names,
            labels=class_labels(rec.names, self.config.class_names),
            difficulty=rec.difficulty,
            num_points_in_box=rec.num_points_in_box,
            pose=rec.pose,
            timestamp_micros=rec.timestamp_micros,
        )

    def __getitem__(self, index: int) -> FrameSample:
        return self.get(index)

    def get(self, index: int, key: int | None = None) -> FrameSample:
        """Frame ``index`` with the randomness of draw ``key`` (default ``index``): the generator
        and the gt-sampling pool position follow ``(seed, epoch, key)``. A resampling wrapper
        (``pointformer.data.cbgs``) passes each draw's position so that a frame drawn twice in one
        epoch gets two augmentations."""
        if not 0 <= index < len(self):
            raise IndexError(f"frame {index} out of range for {len(self)} frames")
        key = index if key is None else int(key)
        sample = self.load(index)
        rng = self.generator(key)
        augmenting = self.augmenting
        if augmenting:
            if self.gt_sampler is not None:
                sample = self.gt_sampler(sample, rng, epoch=self.epoch, index=key)
            sample = self.augmentations(sample, rng)
        sample = self.processing(sample, rng)
        if augmenting and self.config.shuffle_points:
            sample = ShufflePoints()(sample, rng)
        return sample


def _global_augmentations(config: DatasetConfig) -> list[Transform]:
    out: list[Transform] = []
    if config.flip_axes:
        out.append(RandomFlip(tuple(config.flip_axes), config.flip_probability))
    if config.rotation_range is not None:
        out.append(GlobalRotation(tuple(config.rotation_range)))
    if config.scaling_range is not None:
        out.append(GlobalScaling(tuple(config.scaling_range)))
    if config.translation_std is not None:
        out.append(GlobalTranslation(tuple(config.translation_std)))
    return out
