"""Writes synthetic sequences as a nuScenes dataset (v1.0-mini shaped), one scene per sequence.

``write_nuscenes(dataroot, sequences)`` writes the 13 tables under ``<dataroot>/<version>/``,
``splits.json`` (devkit 1.2.0 custom splits), LIDAR_TOP ``.pcd.bin`` files under
``samples/LIDAR_TOP/`` (keyframes) and ``sweeps/LIDAR_TOP/`` (the 20 Hz frames between them), and
a 1x1 PNG per map under ``maps/``. Every file is written atomically (temporary, then rename).
``NuScenes(version, dataroot)`` of nuscenes-devkit 1.2.0 loads the result.

Mapping from the synthetic world (``pointformer.data.synthetic``):
  * keyframes (``SyntheticFrame.is_keyframe``, 2 Hz) are samples; the frames between two
    keyframes are sweeps whose ``sample_token`` is the next keyframe's sample; frames after the
    last keyframe are not written (use ``num_frames = 10 k + 1``).
  * ``.pcd.bin``: float32 ``[x, y, z, intensity (0-255), ring]`` in the LIDAR_TOP sensor frame
    (x right, y forward, z up), range times the beam direction of each valid pixel in row-major
    order; ring = range-image row (0 = highest beam).
  * ``calibrated_sensor``: the preset's extrinsic (sensor -> vehicle), one record per scene.
  * ``ego_pose``: the frame pose with translation z = 0 (nuScenes' ego origin is on the ground
    and its localization is 2-D). The synthetic ground is not flat, so the world's z is shifted
    per frame by the ego's height: an annotation's global z is its world z minus the ego height
    of its keyframe, which keeps boxes exact in their keyframe's ego and LIDAR frames. Sweeps are
    mapped through these 2-D poses too, exactly as in real nuScenes: accumulated sweeps carry a
    vertical offset equal to the ground-height change since the sweep (~1 cm per 0.5 s here).
  * ``sample_annotation``: every labelled object with a nuScenes category (signs have none) and
    at least ``min_points`` LIDAR_TOP points in the keyframe (``num_lidar_pts``, counted by the
    synthetic labels from the keyframe's points); translation, size ``[w, l, h] = [dy, dx, dz]``
    and a yaw quaternion in the global frame; at most one attribute; visibility ``"4"`` (the
    synthetic world has no occlusion model); ``num_radar_pts`` 0; prev/next chain the annotations
    of each instance in time order (gaps allowed, as in real data).
  * tokens: 32 hex digits hashed from the scene index, the sequence seed and the record's role,
    so the same inputs give the same files.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pointformer.data.formats.nuscenes_tables import (
    ATTRIBUTE_NAMES,
    CATEGORY_TO_DETECTION,
    PREDEFINED_SPLITS,
    SPLITS_FILE,
    VISIBILITY_LEVELS,
    matrix_to_quaternion,
    yaw_to_quaternion,
)
from pointformer.utils.atomic import write_atomic

# The real dataset's LIDAR_TOP sensor token.
LIDAR_TOP_SENSOR_TOKEN = "dc8b396651c05aedbb9cdaae573bb567"
# Split names the devkit treats as predefined (it never reads splits.json for them).
DEVKIT_PREDEFINED_SPLITS = ("train", "val", "test", "train_detect", "train_track", "mini_train", "mini_val")
# Default scene names: the devkit's mini_val then mini_train scenes, so that the predefined mini
# splits (and DetectionEval's eval_set="mini_val") select the first scenes written.
DEFAULT_SCENE_NAMES = PREDEFINED_SPLITS["mini_val"] + PREDEFINED_SPLITS["mini_train"]
VISIBILITY_DESCRIPTIONS = {
    "1": "visibility of whole object is between 0 and 40%",
    "2": "visibility of whole object is between 40 and 60%",
    "3": "visibility of whole object is between 60 and 80%",
    "4": "visibility of whole object is between 80 and 100%",
}


def token(*parts) -> str:
    """A deterministic 32-hex-digit token from ``parts``."""
    return hashlib.md5("/".join(str(p) for p in parts).encode()).hexdigest()


def tiny_png() -> bytes:
    """A valid 1x1 8-bit greyscale PNG (a black map: nothing drivable)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b"")
    )


def sensor_frame_points(scan) -> np.ndarray:
    """``(N, 5)`` float32 ``[x, y, z, intensity, ring]`` of a LIDAR_TOP ``Scan`` in its sensor
    frame (first return, valid pixels in row-major order; ring = row)."""
    ri = scan.range_image
    rows, cols = np.nonzero(ri[..., 0] > 0)
    d = scan.spec.directions()[rows, cols]
    out = np.empty((len(rows), 5), dtype=np.float32)
    out[:, :3] = ri[rows, cols, 0].astype(np.float64)[:, None] * d
    out[:, 3] = ri[rows, cols, 1]
    out[:, 4] = rows
    return out


@dataclass(frozen=True)
class NuScenesWriteSummary:
    """What ``write_nuscenes`` wrote: per scene (in input order) its name, token, sample tokens
    (keyframes in time order) and the synthetic frame index of each sample."""

    dataroot: Path
    version: str
    scene_names: tuple[str, ...]
    scene_tokens: tuple[str, ...]
    sample_tokens: tuple[tuple[str, ...], ...]
    sample_frames: tuple[tuple[int, ...], ...]


def _write_json(path: Path, obj) -> None:
    write_atomic(path, json.dumps(obj, indent=1).encode("utf-8"))


def default_scene_names(count: int) -> list[str]:
    """Names of ``count`` written scenes: ``DEFAULT_SCENE_NAMES`` first, then ``scene-2000``, ..."""
    return [DEFAULT_SCENE_NAMES[i] if i < len(DEFAULT_SCENE_NAMES) else f"scene-{2000 + i:04d}" for i in range(count)]


def write_nuscenes(
    dataroot: str | os.PathLike,
    sequences: Sequence,
    *,
    version: str = "v1.0-mini",
    scene_names: Sequence[str] | None = None,
    splits: dict[str, list[str]] | None = None,
    min_points: int = 1,
    on_frame: Callable[[int, int], None] | None = None,
) -> NuScenesWriteSummary:
    """Writes ``sequences`` (``SyntheticSequence`` with the ``"nuscenes"`` preset; one scene each)
    as a nuScenes dataset under ``dataroot``.

    Args:
        dataroot: created if needed; existing files of the same names are replaced.
        sequences: the scenes; each needs a LIDAR_TOP laser and a keyframe at frame 0.
        version: the table folder name (ends in ``mini`` for the devkit's mini splits).
        scene_names: ``scene-XXXX`` names (default: ``DEFAULT_SCENE_NAMES`` then ``scene-2000``...).
        splits: ``{split: [scene names]}`` written to ``splits.json`` (default:
            ``{"synthetic": all}``; names the devkit predefines are refused since it would never
            read them from the file).
        min_points: annotate objects with at least this many keyframe LIDAR_TOP points.
        on_frame: called with (scene index, frame index) after each frame's points are written
            (for progress bars).
    """
    root = Path(dataroot)
    seqs = list(sequences)
    if not seqs:
        raise ValueError("no sequences to write")
    if scene_names is None:
        scene_names = default_scene_names(len(seqs))
    scene_names = list(scene_names)
    if len(scene_names) != len(seqs) or len(set(scene_names)) != len(scene_names):
        raise ValueError(f"need {len(seqs)} distinct scene names, got {scene_names}")
    if splits is None:
        splits = {"synthetic": list(scene_names)}
    for name, members in splits.items():
        if name in DEVKIT_PREDEFINED_SPLITS:
            raise ValueError(f"split {name!r} is predefined in the devkit, which would ignore it in {SPLITS_FILE}")
        unknown = set(members) - set(scene_names)
        if unknown:
            raise ValueError(f"split {name!r} names scenes not written: {sorted(unknown)}")

    table_root = root / version
    for sub in (table_root, root / "maps", root / "samples" / "LIDAR_TOP", root / "sweeps" / "LIDAR_TOP"):
        sub.mkdir(parents=True, exist_ok=True)

    category_token = {name: token("category", name) for name in CATEGORY_TO_DETECTION}
    attribute_token = {name: token("attribute", name) for name in ATTRIBUTE_NAMES}
    tables: dict[str, list[dict]] = {
        "category": [
            {"token": category_token[n], "name": n, "description": f"{n} ({CATEGORY_TO_DETECTION[n]})"}
            for n in CATEGORY_TO_DETECTION
        ],
        "attribute": [{"token": attribute_token[n], "name": n, "description": n} for n in ATTRIBUTE_NAMES],
        "visibility": [
            {"token": t, "level": lvl, "description": VISIBILITY_DESCRIPTIONS[t]}
            for t, lvl in VISIBILITY_LEVELS.items()
        ],
        "sensor": [{"token": LIDAR_TOP_SENSOR_TOKEN, "channel": "LIDAR_TOP", "modality": "lidar"}],
    }
    for name in ("instance", "calibrated_sensor", "ego_pose", "log", "scene", "sample", "sample_data",
                 "sample_annotation"):  # fmt: skip
        tables[name] = []
    scene_tokens, all_samples, all_frames = [], [], []
    for si, (seq, scene_name) in enumerate(zip(seqs, scene_names, strict=True)):
        key = (si, seq.seed)
        spec = next((s for s in seq.lidars if s.name == "LIDAR_TOP"), None)
        if spec is None:
            raise ValueError(f"sequence {si} (seed {seq.seed}) has no LIDAR_TOP laser; use preset='nuscenes'")
        keyframes = [i for i in range(len(seq)) if i % seq.keyframe_interval == 0]
        last = keyframes[-1]
        log_tok, scene_tok, cs_tok = token(*key, "log"), token(*key, "scene"), token(*key, "calibrated_sensor")
        logfile = f"synthetic-{seq.seed:06d}-{si:04d}"
        tables["log"].append({"token": log_tok, "logfile": logfile, "vehicle": "synthetic",
                              "date_captured": "2018-01-01", "location": "synthetic"})  # fmt: skip
        ext = spec.extrinsic
        tables["calibrated_sensor"].append({
            "token": cs_tok, "sensor_token": LIDAR_TOP_SENSOR_TOKEN, "translation": ext[:3, 3].tolist(),
            "rotation": matrix_to_quaternion(ext[:3, :3]).tolist(), "camera_intrinsic": [],
        })  # fmt: skip
        sample_tok = {k: token(*key, "sample", k) for k in keyframes}
        sd_tok = {i: token(*key, "sample_data", i) for i in range(last + 1)}
        for n, k in enumerate(keyframes):
            tables["sample"].append({
                "token": sample_tok[k], "timestamp": seq.timestamp_micros(k), "scene_token": scene_tok,
                "prev": sample_tok[keyframes[n - 1]] if n > 0 else "",
                "next": sample_tok[keyframes[n + 1]] if n + 1 < len(keyframes) else "",
            })  # fmt: skip
        instances: dict[str, list[dict]] = {}
        for i in range(last + 1):
            frame = seq[i]
            pose = frame.pose
            is_key = i % seq.keyframe_interval == 0
            folder = "samples" if is_key else "sweeps"
            filename = f"{folder}/LIDAR_TOP/{logfile}__LIDAR_TOP__{frame.timestamp_micros}.pcd.bin"
            write_atomic(root / filename, sensor_frame_points(frame.scan("LIDAR_TOP")).tobytes())
            if on_frame is not None:
                on_frame(si, i)
            # Ego origin on the ground: z = 0 (see the module docstring).
            tables["ego_pose"].append({
                "token": sd_tok[i], "timestamp": frame.timestamp_micros,
                "translation": [float(pose[0, 3]), float(pose[1, 3]), 0.0],
                "rotation": matrix_to_quaternion(pose[:3, :3]).tolist(),
            })  # fmt: skip
            next_key = i if is_key else (i // seq.keyframe_interval + 1) * seq.keyframe_interval
            tables["sample_data"].append({
                "token": sd_tok[i], "sample_token": sample_tok[next_key], "ego_pose_token": sd_tok[i],
                "calibrated_sensor_token": cs_tok, "filename": filename, "fileformat": "pcd", "width": 0,
                "height": 0, "timestamp": frame.timestamp_micros, "is_key_frame": is_key,
                "prev": sd_tok[i - 1] if i > 0 else "", "next": sd_tok[i + 1] if i < last else "",
            })  # fmt: skip
            if not is_key:
                continue
            labels = frame.labels
            cats, attrs = labels.nuscenes_categories, labels.nuscenes_attributes
            for j in range(len(labels)):
                npts = int(labels.num_top_lidar_points_in_box[j])
                if cats[j] is None or npts < min_points:
                    continue
                b = labels.boxes_world[j]
                inst = token(*key, "instance", labels.ids[j])
                ann = {
                    "token": token(*key, "sample_annotation", i, labels.ids[j]), "sample_token": sample_tok[i],
                    "instance_token": inst, "visibility_token": "4",
                    "attribute_tokens": [attribute_token[attrs[j]]] if attrs[j] else [],
                    "translation": [float(b[0]), float(b[1]), float(b[2] - pose[2, 3])],
                    "size": [float(b[4]), float(b[3]), float(b[5])],
                    "rotation": yaw_to_quaternion(float(b[6])).tolist(),
                    "prev": "", "next": "", "num_lidar_pts": npts, "num_radar_pts": 0,
                }  # fmt: skip
                if inst not in instances:
                    tables["instance"].append({"token": inst, "category_token": category_token[cats[j]]})
                instances.setdefault(inst, []).append(ann)
                tables["sample_annotation"].append(ann)
        for inst_rec in tables["instance"]:
            anns = instances.get(inst_rec["token"])
            if anns is None:
                continue
            for a, b in zip(anns[:-1], anns[1:], strict=True):
                a["next"], b["prev"] = b["token"], a["token"]
            inst_rec.update(nbr_annotations=len(anns), first_annotation_token=anns[0]["token"],
                            last_annotation_token=anns[-1]["token"])  # fmt: skip
        tables["scene"].append({
            "token": scene_tok, "name": scene_name, "description": f"synthetic street scene, seed {seq.seed}",
            "log_token": log_tok, "nbr_samples": len(keyframes), "first_sample_token": sample_tok[keyframes[0]],
            "last_sample_token": sample_tok[last],
        })  # fmt: skip
        scene_tokens.append(scene_tok)
        all_samples.append(tuple(sample_tok[k] for k in keyframes))
        all_frames.append(tuple(keyframes))

    map_tok = token("map", *(r["token"] for r in tables["log"]))
    map_file = f"maps/{map_tok}.png"
    write_atomic(root / map_file, tiny_png())
    tables["map"] = [{"token": map_tok, "log_tokens": [r["token"] for r in tables["log"]],
                      "category": "semantic_prior", "filename": map_file}]  # fmt: skip
    for name, records in tables.items():
        _write_json(table_root / f"{name}.json", records)
    _write_json(table_root / SPLITS_FILE, {k: list(v) for k, v in splits.items()})
    return NuScenesWriteSummary(root, version, tuple(scene_names), tuple(scene_tokens), tuple(all_samples),
                                tuple(all_frames))  # fmt: skip
