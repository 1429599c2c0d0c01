"""nuScenes conversion into the layout of ``pointformer.data.layout`` (``tools/create_data.py
--dataset nuscenes``), an adapter on ``sequences.convert_sequences``.

Input: a nuScenes dataroot (``<root>/<version>/*.json``, ``samples/LIDAR_TOP``,
``sweeps/LIDAR_TOP``), read with ``formats.nuscenes.NuScenesReader`` (no devkit needed).

Output (see ``layout``'s docstring, "nuScenes frames"):

* one sequence per scene, named by the scene name; one frame-table row per keyframe sample in time
  order, ``frame_id`` ``<scene>_<index:04d>``, the sample token in ``sample_token``;
* ``points/<scene>/<index:04d>.npy``: the keyframe's LIDAR_TOP points ``[x, y, z, intensity]``
  float32 in its sensor frame, every point of the file (OpenPCDet's and mmdet3d's ``use_dim``
  drop the ring index too; the ``|x| < 1 and |y| < 1`` filter of ``from_file_multisweep`` is left
  to the dataset);
* the row's ``pose`` is the keyframe's LIDAR_TOP -> global (``ego_pose @ calibrated_sensor``) and
  its ``timestamp_micros`` the keyframe LIDAR_TOP sample_data's;
* ``sweeps``: up to ``sweeps`` LIDAR_TOP sample_data before the keyframe along ``prev`` (9 =
  OpenPCDet's ``MAX_SWEEPS`` 10 with the keyframe), most recent first, each with its own sensor ->
  global pose and time stamp. A non-keyframe's points go to ``points/<scene>/sweeps/<sample_data
  token>.npy`` (its sensor frame, ``[x, y, z, intensity]``); an earlier keyframe reached by the
  chain reuses that keyframe's row (``frame_id`` and points file). Moving each sweep by
  ``inv(pose) @ sweep_pose`` and appending the time lag gives ``NuScenesReader.sample(token,
  nsweeps=sweeps + 1)``'s points (that reader also applies the min-distance filter);
* boxes: the annotations with a detection class (the 10 of ``DETECTION_NAMES``), in the LIDAR
  frame ``[x, y, z, l, w, h, yaw, vx, vy]`` (velocity NaN where the devkit has none);
  ``num_points_in_box`` = ``num_lidar_pts``; ``object_ids`` = instance tokens; the extra columns
  carry ``num_radar_pts``, attributes, categories, visibility and annotation tokens.

Splits: a split the devkit predefines (``mini_train``, ``mini_val``, ``train``, ``val``, ``test``,
``train_detect``, ``train_track``) takes its scene list (``train``/``val``/``test`` need
nuscenes-devkit installed, which holds the 850 + 150 names), any other name the list in
``<root>/<version>/splits.json`` (the devkit 1.2.0 custom splits); only the scenes the version
holds are converted. Default splits: ``mini_train mini_val`` for a ``*-mini`` version, ``train
val`` for ``*-trainval``, ``test`` for ``*-test``. The gt database is built for ``train`` and
``mini_train`` unless told otherwise.

``meta.json`` records the ``version`` and the absolute ``dataroot`` (where nuScenes evaluation
finds the annotations; ``dataset.nuscenes_dataroot`` in a config overrides it).

Resume: a scene is fingerprinted by the version, the sweeps setting, its scene token, and each
keyframe's sample token and LIDAR_TOP file name and size.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from pointformer.data.convert.sequences import (
    ConvertSummary,
    LabelledFrame,
    LabelledSweep,
    SequenceSource,
    convert_sequences,
)
from pointformer.data.formats.errors import DataFormatError
from pointformer.data.formats.nuscenes_tables import DETECTION_NAMES, PREDEFINED_SPLITS, transform_matrix

NUSCENES_POINT_FEATURES = ("x", "y", "z", "intensity")
# Splits the devkit defines in code (it never reads splits.json for these names).
DEVKIT_SPLITS = ("train", "val", "test", "train_detect", "train_track", "mini_train", "mini_val")
DEFAULT_SWEEPS = 9

# One reader per (dataroot, version) and process: the tables are loaded once per worker.
_READERS: dict[tuple[str, str], object] = {}


def _reader(dataroot: str, version: str):
    from pointformer.data.formats.nuscenes import NuScenesReader

    key = (str(Path(dataroot).resolve()), version)
    if key not in _READERS:
        _READERS.clear()  # one dataset at a time: the trainval tables are large
        _READERS[key] = NuScenesReader(dataroot, version)
    return _READERS[key]


def default_splits(version: str) -> tuple[str, ...]:
    if version.endswith("mini"):
        return ("mini_train", "mini_val")
    if version.endswith("trainval"):
        return ("train", "val")
    if version.endswith("test"):
        return ("test",)
    raise ValueError(f"no default splits for version {version!r}: pass splits (names in splits.json)")


def split_scene_names(reader, split: str) -> tuple[str, ...]:
    """Scene names of ``split`` (see the module docstring)."""
    if split in PREDEFINED_SPLITS or split not in DEVKIT_SPLITS:
        return reader.split_scene_names(split)
    try:
        from nuscenes.utils.splits import create_splits_scenes
    except ImportError:
        raise ValueError(
            f"split {split!r}: its scene names come from nuscenes-devkit (pip install nuscenes-devkit)"
        ) from None
    return tuple(create_splits_scenes()[split])


def _scene_samples(reader, scene: dict) -> list[dict]:
    out, token, seen = [], scene["first_sample_token"], set()
    while token:
        if token in seen:
            raise DataFormatError(f"sample {token!r}: prev/next chain of scene {scene['name']!r} loops")
        seen.add(token)
        rec = reader.tables.get("sample", token)
        out.append(rec)
        token = rec["next"]
    return out


def _sensor_to_global(reader, sd: dict) -> np.ndarray:
    t = reader.tables
    cs = t.get("calibrated_sensor", sd["calibrated_sensor_token"])
    ep = t.get("ego_pose", sd["ego_pose_token"])
    return transform_matrix(ep["translation"], ep["rotation"]) @ transform_matrix(cs["translation"], cs["rotation"])


def discover_nuscenes(
    root: str | os.PathLike, version: str, splits: Sequence[str], sweeps: int = DEFAULT_SWEEPS
) -> tuple[list[SequenceSource], int]:
    """The scenes of each split present in ``version`` (split, then table order) as sources, and
    the number of keyframes. Raises ``FileNotFoundError`` for a split without scenes here."""
    reader = _reader(str(root), version)
    scenes = reader.tables.tables["scene"]
    sources: list[SequenceSource] = []
    total = 0
    seen: dict[str, str] = {}
    for split in splits:
        wanted = set(split_scene_names(reader, split))
        chosen = [s for s in scenes if s["name"] in wanted]
        if not chosen:
            raise FileNotFoundError(f"split {split!r}: none of its {len(wanted)} scenes is in {root} ({version})")
        for scene in chosen:
            if scene["name"] in seen:
                raise ValueError(f"scene {scene['name']!r} is in splits {seen[scene['name']]!r} and {split!r}")
            seen[scene["name"]] = split
            samples = _scene_samples(reader, scene)
            total += len(samples)
            keyframes = []
            for rec in samples:
                lidar = reader.keyframe_lidar_token(rec["token"])
                if lidar is None:
                    raise DataFormatError(f"sample {rec['token']!r} has no LIDAR_TOP keyframe sample_data")
                path = reader.sample_data_path(lidar)
                keyframes.append([rec["token"], path.name, path.stat().st_size if path.is_file() else -1])
            fingerprint = hashlib.sha1(json.dumps([version, sweeps, scene["token"], keyframes]).encode()).hexdigest()
            first = reader.sample_data_path(reader.keyframe_lidar_token(samples[0]["token"]))
            sources.append(
                SequenceSource(
                    split,
                    scene["name"],
                    f"{__name__}:read_nuscenes_scene",
                    str(first),
                    (str(root), version, scene["token"], sweeps),
                    fingerprint,
                )
            )
    return sources, total


def _kept(values, keep: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.str_).reshape(-1)[keep]


def read_nuscenes_scene(source: SequenceSource) -> Iterator[LabelledFrame]:
    """The keyframes of one scene as ``LabelledFrame``s (see the module docstring)."""
    from pointformer.data.formats.nuscenes import read_pcd_bin

    root, version, scene_token, sweeps = source.args
    reader = _reader(root, version)
    t = reader.tables
    scene = t.get("scene", scene_token)
    location = t.get("log", scene["log_token"]).get("location", "")
    samples = _scene_samples(reader, scene)
    # Keyframe LIDAR_TOP sample_data token -> row index in this scene.
    row_of = {reader.keyframe_lidar_token(s["token"]): i for i, s in enumerate(samples)}
    given: set[str] = set()  # sweeps whose points an earlier keyframe already gave
    for rec in samples:
        sample = reader.sample(rec["token"], nsweeps=1, min_distance=0.0)
        sd = t.get("sample_data", sample.lidar_token)
        points = np.ascontiguousarray(read_pcd_bin(sample.lidar_path)[:, :4])
        listed = []
        prev = sd["prev"]
        while prev and len(listed) < sweeps:
            sweep = t.get("sample_data", prev)
            pose = _sensor_to_global(reader, sweep)
            row = row_of.get(prev)
            if row is not None:
                listed.append(LabelledSweep(prev, int(sweep["timestamp"]), pose, frame_index=row))
            elif prev in given:
                listed.append(LabelledSweep(prev, int(sweep["timestamp"]), pose))
            else:
                path = reader.sample_data_path(prev)
                raw = np.ascontiguousarray(read_pcd_bin(path)[:, :4])
                listed.append(LabelledSweep(prev, int(sweep["timestamp"]), pose, raw, source=str(path)))
                given.add(prev)
            prev = sweep["prev"]
        keep = np.asarray([n != "" for n in sample.names], bool)
        m = int(keep.sum())
        kept = functools.partial(_kept, keep=keep)

        yield LabelledFrame(
            timestamp_micros=int(sd["timestamp"]),
            pose=sample.lidar_to_global,
            points=points,
            boxes=sample.boxes[keep].astype(np.float32).reshape(m, 9),
            names=kept(sample.names),
            difficulty=np.zeros(m, np.int8),
            tracking_difficulty=np.zeros(m, np.int8),
            num_points_in_box=sample.num_lidar_pts[keep].astype(np.int32),
            object_ids=kept(sample.instance_tokens),
            speed_global=sample.velocity_global[keep].astype(np.float32).reshape(m, 3),
            accel_global=np.full((m, 3), np.nan, np.float32),
            location=location,
            sweeps=tuple(listed),
            source=str(sample.lidar_path),
            extra={
                "sample_token": rec["token"],
                "scene_token": scene_token,
                "lidar_token": sample.lidar_token,
                "category_names": kept(sample.category_names),
                "attribute_names": kept(sample.attribute_names),
                "num_radar_pts": sample.num_radar_pts[keep].astype(np.int32),
                "visibility": kept(sample.visibility_tokens),
                "annotation_tokens": kept(sample.annotation_tokens),
            },
        )


def convert_nuscenes(
    root: str | os.PathLike,
    out: str | os.PathLike,
    version: str = "v1.0-mini",
    splits: Sequence[str] | None = None,
    sweeps: int = DEFAULT_SWEEPS,
    workers: int = 0,
    gt_database_splits: Sequence[str] | None = None,
    gt_min_points: int = 1,
    on_error: str = "raise",
    progress: bool = True,
) -> ConvertSummary:
    """Converts the nuScenes dataset ``version`` under ``root`` into the layout under ``out`` (see
    the module docstring; workers, resume, atomic writes and errors as ``convert_sequences``).

    Args:
        splits: split names (default: by version, see the module docstring).
        sweeps: LIDAR_TOP sample_data listed before each keyframe (9: 10 with the keyframe).
        workers: worker processes (0: in-process); each loads the tables once.
        gt_database_splits: splits with a gt database (None: ``train`` and ``mini_train``).
        gt_min_points: objects with fewer keyframe points in their box are left out of it.
        on_error: ``"raise"`` or ``"skip"`` for a scene with malformed input.
        progress: show a progress bar over keyframes.
    """
    if sweeps < 0:
        raise ValueError(f"sweeps must be >= 0, got {sweeps}")
    splits = tuple(splits) if splits else default_splits(version)
    sources, total = discover_nuscenes(root, version, splits, sweeps)
    return convert_sequences(
        sources,
        out,
        dataset="nuscenes",
        source_format=version,
        point_features=NUSCENES_POINT_FEATURES,
        class_names=DETECTION_NAMES,
        workers=workers,
        sweeps=sweeps,
        gt_database_splits=("train", "mini_train") if gt_database_splits is None else gt_database_splits,
        gt_min_points=gt_min_points,
        on_error=on_error,
        progress=progress,
        total_frames=total,
        # Where the annotations are: nuScenes evaluation (eval.metric nuscenes) reads the ground
        # truth from the dataroot's tables, as the devkit does.
        extra_meta={"version": version, "dataroot": str(Path(root).resolve())},
    )


def nuscenes_main(args: argparse.Namespace) -> ConvertSummary:
    """``create_data.py --dataset nuscenes`` (see ``cli.main``)."""
    return convert_nuscenes(
        args.root,
        args.out,
        version=args.version,
        splits=args.splits,
        sweeps=DEFAULT_SWEEPS if args.sweeps is None else args.sweeps,
        workers=args.workers,
        gt_database_splits=args.gt_database_splits,
        gt_min_points=args.gt_min_points,
        on_error=args.on_error,
        progress=not args.no_progress,
    )
