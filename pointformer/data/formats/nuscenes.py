"""nuScenes reader (LIDAR_TOP + annotations), without the devkit.

``NuScenesReader(dataroot, version)`` loads and validates the 13 tables
(``nuscenes_tables.load_tables``); ``reader.sample(token)`` returns a ``NuScenesSample``: the
keyframe's multi-sweep points and its boxes in pointformer's convention.

Frames. ``NuScenesSample.boxes`` and ``points`` are in the keyframe's **LIDAR_TOP sensor frame**
(x right, y forward, z up; what OpenPCDet trains on), ``boxes_ego`` in its ego frame (x forward,
y left, z up, origin on the ground). ``sensor_to_ego`` and ``ego_to_global`` map between them.

Boxes: ``[x, y, z, dx, dy, dz, heading, vx, vy]`` float32: the geometric centre; ``dx`` = length
(the nuScenes box x axis), ``dy`` = width, ``dz`` = height (from ``size = [w, l, h]``); heading =
``atan2`` of the box's rotated x axis in the frame, wrapped into ``[-pi, pi)``; velocity as the
devkit's ``NuScenes.box_velocity`` (centre difference of the global translations of the
annotation's prev and next over their samples' time, or the one-sided difference with the current
annotation; NaN when neither exists or the time span exceeds 1.5 s, 3 s for the centre
difference), rotated into the frame; its x and y are kept.

Sweeps (``LidarPointCloud.from_file_multisweep``'s rule): starting at the keyframe, up to
``nsweeps`` LIDAR_TOP sample_data are taken along ``prev`` (earlier keyframes included); each
loses its points with ``|x| < min_distance and |y| < min_distance`` in its own sensor frame, is
mapped into the keyframe's LIDAR frame by ``ref_from_car @ car_from_global(ref) @
global_from_car(sweep) @ car_from_sensor(sweep)`` (float64) and gets the time lag ``1e-6 * (t_ref
- t_sweep)`` seconds. When the chain runs out (the scene's first sample_data), fewer sweeps are
returned (``NuScenesSample.num_sweeps`` says how many); nothing is repeated or padded.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pointformer.data.formats.errors import DataFormatError
from pointformer.data.formats.nuscenes_tables import (
    CATEGORY_TO_DETECTION,
    NuScenesTables,
    invert_rigid,
    load_tables,
    quaternions_to_matrices,
    safe_join,
    scene_names_of_split,
    transform_matrix,
)

LIDAR_CHANNEL = "LIDAR_TOP"
# Values per point in a LIDAR_TOP .pcd.bin: x, y, z, intensity, ring index (float32).
PCD_BIN_DIMS = 5
# The devkit's box_velocity limit (s) between the two annotations of a one-sided difference.
MAX_VELOCITY_TIME_DIFF = 1.5


def read_pcd_bin(path: str | os.PathLike) -> np.ndarray:
    """``(N, 5)`` float32 ``[x, y, z, intensity, ring]`` of a LIDAR_TOP ``.pcd.bin`` (sensor frame).

    Raises:
        DataFormatError naming the file if it is missing or its size is not a multiple of 20 bytes.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataFormatError(f"LiDAR file {path} does not exist") from None
    except IsADirectoryError:
        raise DataFormatError(f"LiDAR file {path} is a directory") from None
    row = 4 * PCD_BIN_DIMS
    if len(data) % row:
        raise DataFormatError(
            f"{path}: {len(data)} bytes is not a whole number of {PCD_BIN_DIMS}-float32 points ({row} bytes each)"
        )
    return np.frombuffer(data, dtype="<f4").reshape(-1, PCD_BIN_DIMS).astype(np.float32)


def _malformed_records(method):
    """Reports a malformed record met while reading (a missing field, a value of another type or
    shape: ``load_tables`` checks tokens and references, not every field) as ``DataFormatError``
    naming the table folder and the call, instead of a ``KeyError`` or numpy's ``ValueError``."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except DataFormatError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            call = f"{method.__name__.lstrip('_')}({', '.join(map(repr, args))})"
            raise DataFormatError(
                f"{self.dataroot / self.version}: {call}: malformed record ({type(e).__name__}: {e})"
            ) from e

    return wrapper


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a).view()
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class NuScenesSample:
    """One keyframe (sample) with its LIDAR_TOP points and annotations.

    Attributes:
        token: sample token.
        scene_token, scene_name: its scene.
        timestamp: sample time stamp (microseconds).
        lidar_token: the keyframe's LIDAR_TOP sample_data token.
        lidar_path: its ``.pcd.bin``.
        points: ``(N, 5)`` float32 ``[x, y, z, intensity, time_lag]`` in the keyframe's LIDAR frame
            (time lag in seconds, 0 for the keyframe), sweeps in order from the keyframe back.
        num_sweeps: sample_data accumulated (keyframe included).
        sweep_tokens: their sample_data tokens, keyframe first.
        sensor_to_ego: ``(4, 4)`` float64 LIDAR_TOP -> ego (calibrated_sensor).
        ego_to_global: ``(4, 4)`` float64 ego -> global (ego_pose of the keyframe LIDAR_TOP).
        boxes: ``(M, 9)`` float32 ``[x, y, z, dx, dy, dz, heading, vx, vy]`` in the LIDAR frame
            (velocity NaN where unknown).
        boxes_ego: ``(M, 9)`` float32, the same in the ego frame.
        velocity_global: ``(M, 3)`` float64 m/s global frame (NaN where unknown).
        names: ``(M,)`` detection class names (``""`` for categories without one).
        category_names: ``(M,)`` general category names (e.g. ``vehicle.car``).
        attribute_names: ``(M,)`` attribute names (``""`` for none).
        num_lidar_pts, num_radar_pts: ``(M,)`` int64.
        visibility_tokens: ``(M,)`` visibility tokens (``"1"``..``"4"`` in real data).
        annotation_tokens, instance_tokens: ``(M,)`` str.
    """

    token: str
    scene_token: str
    scene_name: str
    timestamp: int
    lidar_token: str
    lidar_path: Path
    points: np.ndarray
    num_sweeps: int
    sweep_tokens: tuple[str, ...]
    sensor_to_ego: np.ndarray
    ego_to_global: np.ndarray
    boxes: np.ndarray
    boxes_ego: np.ndarray
    velocity_global: np.ndarray
    names: tuple[str, ...]
    category_names: tuple[str, ...]
    attribute_names: tuple[str, ...]
    num_lidar_pts: np.ndarray
    num_radar_pts: np.ndarray
    visibility_tokens: tuple[str, ...]
    annotation_tokens: tuple[str, ...]
    instance_tokens: tuple[str, ...]

    def __post_init__(self) -> None:
        for name in ("points", "sensor_to_ego", "ego_to_global", "boxes", "boxes_ego", "velocity_global",
                     "num_lidar_pts", "num_radar_pts"):  # fmt: skip
            object.__setattr__(self, name, _readonly(getattr(self, name)))

    @property
    def lidar_to_global(self) -> np.ndarray:
        """``(4, 4)`` float64 LIDAR_TOP -> global."""
        return self.ego_to_global @ self.sensor_to_ego

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def boxes_from_global(
    translation: np.ndarray, size_wlh: np.ndarray, rotation: np.ndarray, velocity: np.ndarray, global_to_frame
) -> np.ndarray:
    """``(M, 9)`` float64 pointformer boxes ``[x, y, z, l, w, h, heading, vx, vy]`` in the frame of
    ``global_to_frame`` ``(4, 4)`` from nuScenes global ``translation`` ``(M, 3)``, ``size_wlh``
    ``(M, 3)``, quaternions ``rotation`` ``(M, 4)`` ``[w, x, y, z]`` and ``velocity`` ``(M, 3)``."""
    m = len(translation)
    out = np.zeros((m, 9))
    if m == 0:
        return out
    rot, t = global_to_frame[:3, :3], global_to_frame[:3, 3]
    out[:, :3] = translation @ rot.T + t
    out[:, 3] = size_wlh[:, 1]
    out[:, 4] = size_wlh[:, 0]
    out[:, 5] = size_wlh[:, 2]
    # The box's x axis (the first column of its rotation), seen in the frame.
    x_axes = quaternions_to_matrices(rotation)[:, :, 0] @ rot.T
    heading = np.arctan2(x_axes[:, 1], x_axes[:, 0])
    out[:, 6] = (heading + math.pi) % (2 * math.pi) - math.pi
    out[:, 7:9] = (velocity @ rot.T)[:, :2]  # NaN stays NaN
    return out


def _wrap_float32(boxes: np.ndarray) -> np.ndarray:
    out = boxes.astype(np.float32)
    # float32 rounding may land a heading just below pi on +pi: keep [-pi, pi).
    pi = np.float32(math.pi)
    out[:, 6] = np.where(out[:, 6] >= pi, out[:, 6] - np.float32(2 * math.pi), out[:, 6])
    return out


class NuScenesReader:
    """Reads a nuScenes dataset (one version) without the devkit.

    Args:
        dataroot: dataset root (holds ``<version>/``, ``samples/``, ``sweeps/``).
        version: table folder name, e.g. ``"v1.0-mini"``, ``"v1.0-trainval"``.

    Raises:
        DataFormatError on a missing or malformed table or a dangling reference (see
        ``load_tables``).
    """

    def __init__(self, dataroot: str | os.PathLike, version: str = "v1.0-mini") -> None:
        self.dataroot = Path(dataroot)
        self.version = version
        self.tables: NuScenesTables = load_tables(self.dataroot, version)
        self._index_keyframes()

    @_malformed_records
    def _index_keyframes(self) -> None:
        t = self.tables
        self._channel = {r["token"]: r["channel"] for r in t.tables["sensor"]}
        # sample token -> keyframe LIDAR_TOP sample_data token (the devkit's sample['data']).
        self._lidar_of_sample: dict[str, str] = {}
        for sd in t.tables["sample_data"]:
            cs = t.index["calibrated_sensor"][sd["calibrated_sensor_token"]]
            if sd.get("is_key_frame") and self._channel.get(cs["sensor_token"]) == LIDAR_CHANNEL:
                self._lidar_of_sample[sd["sample_token"]] = sd["token"]

    @functools.cached_property
    def _anns(self) -> dict[str, list[dict]]:
        """Sample token -> its annotations in table order (the devkit's ``sample['anns']``); built
        on first use (the evaluation reads the annotation table column-wise instead)."""
        return self._annotations_by_sample()

    @_malformed_records
    def _annotations_by_sample(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for a in self.tables.tables["sample_annotation"]:
            out.setdefault(a["sample_token"], []).append(a)
        return out

    # --- listing ------------------------------------------------------------------------------------

    @property
    def scene_names(self) -> tuple[str, ...]:
        return self._scene_names()

    @_malformed_records
    def _scene_names(self) -> tuple[str, ...]:
        return tuple(s["name"] for s in self.tables.tables["scene"])

    def split_scene_names(self, split: str) -> tuple[str, ...]:
        """Scene names of ``split`` (predefined mini splits, else ``splits.json``)."""
        return scene_names_of_split(self.dataroot, self.version, split)

    def keyframe_lidar_token(self, sample_token: str) -> str | None:
        """The LIDAR_TOP keyframe sample_data token of a sample (None if it has none)."""
        return self._lidar_of_sample.get(sample_token)

    @_malformed_records
    def sample_tokens(self, split: str | None = None) -> list[str]:
        """Sample tokens (scene by scene in table order, each scene's samples in time order),
        of the scenes of ``split`` present in this version (all scenes when None)."""
        scenes = self.tables.tables["scene"]
        if split is not None:
            wanted = set(self.split_scene_names(split))
            scenes = [s for s in scenes if s["name"] in wanted]
        out = []
        for scene in scenes:
            token = scene["first_sample_token"]
            seen = set()
            while token:
                if token in seen:
                    raise DataFormatError(f"sample {token!r}: prev/next chain of scene {scene['name']!r} loops")
                seen.add(token)
                out.append(token)
                token = self.tables.get("sample", token)["next"]
        return out

    # --- points ------------------------------------------------------------------------------------

    @_malformed_records
    def sample_data_path(self, sample_data_token: str) -> Path:
        """The file of a sample_data record (checked to stay inside the dataroot)."""
        sd = self.tables.get("sample_data", sample_data_token)
        return safe_join(self.dataroot, sd.get("filename"), "sample_data", sample_data_token)

    def _calib(self, sd: dict) -> np.ndarray:
        cs = self.tables.get("calibrated_sensor", sd["calibrated_sensor_token"])
        return transform_matrix(cs["translation"], cs["rotation"])

    def _pose(self, sd: dict) -> np.ndarray:
        ep = self.tables.get("ego_pose", sd["ego_pose_token"])
        return transform_matrix(ep["translation"], ep["rotation"])

    def lidar_points(
        self, sample_data_token: str, nsweeps: int = 10, min_distance: float = 1.0
    ) -> tuple[np.ndarray, tuple[str, ...]]:
        """Multi-sweep points of a LIDAR_TOP sample_data (see the module docstring).

        Returns:
            ``(N, 5)`` float32 ``[x, y, z, intensity, time_lag]`` in the frame of
            ``sample_data_token``'s sensor, and the tokens of the sample_data used (first: itself).
        """
        if nsweeps < 1:
            raise ValueError("nsweeps must be >= 1")
        return self._lidar_points(sample_data_token, nsweeps, min_distance)

    @_malformed_records
    def _lidar_points(
        self, sample_data_token: str, nsweeps: int, min_distance: float
    ) -> tuple[np.ndarray, tuple[str, ...]]:
        ref = self.tables.get("sample_data", sample_data_token)
        ref_from_global = invert_rigid(self._pose(ref) @ self._calib(ref))
        t_ref = ref["timestamp"]
        chunks, tokens = [], []
        sd = ref
        for _ in range(nsweeps):
            raw = read_pcd_bin(self.sample_data_path(sd["token"]))
            if min_distance > 0:
                close = (np.abs(raw[:, 0]) < min_distance) & (np.abs(raw[:, 1]) < min_distance)
                raw = raw[~close]
            m = ref_from_global @ self._pose(sd) @ self._calib(sd)
            out = np.empty((len(raw), 5), dtype=np.float32)
            xyz = raw[:, :3].astype(np.float64)
            # Row by row: ~10x faster than an (N, 3) @ (3, 3) matmul, which numpy does not hand to BLAS well.
            for i in range(3):
                out[:, i] = xyz[:, 0] * m[i, 0] + xyz[:, 1] * m[i, 1] + xyz[:, 2] * m[i, 2] + m[i, 3]
            out[:, 3] = raw[:, 3]
            out[:, 4] = 1e-6 * (t_ref - sd["timestamp"])
            chunks.append(out)
            tokens.append(sd["token"])
            if not sd["prev"]:
                break
            sd = self.tables.get("sample_data", sd["prev"])
        return np.concatenate(chunks), tuple(tokens)

    # --- annotations -----------------------------------------------------------------------------

    @_malformed_records
    def box_velocity(self, annotation_token: str, max_time_diff: float = MAX_VELOCITY_TIME_DIFF) -> np.ndarray:
        """``(3,)`` float64 global velocity (m/s) of an annotation, as ``NuScenes.box_velocity``."""
        t = self.tables
        cur = t.get("sample_annotation", annotation_token)
        has_prev, has_next = cur["prev"] != "", cur["next"] != ""
        if not has_prev and not has_next:
            return np.full(3, np.nan)
        first = t.get("sample_annotation", cur["prev"]) if has_prev else cur
        last = t.get("sample_annotation", cur["next"]) if has_next else cur
        dt = (
            1e-6 * t.get("sample", last["sample_token"])["timestamp"]
            - 1e-6 * t.get("sample", first["sample_token"])["timestamp"]
        )
        if has_prev and has_next:
            max_time_diff *= 2  # the centre difference spans two intervals
        if dt > max_time_diff:
            return np.full(3, np.nan)
        if dt <= 0:
            raise DataFormatError(
                f"sample_annotation {annotation_token!r}: prev/next annotations are not later in time ({dt} s)"
            )
        return (np.asarray(last["translation"], np.float64) - np.asarray(first["translation"], np.float64)) / dt

    # --- samples ------------------------------------------------------------------------------------

    def sample(self, token: str, nsweeps: int = 10, min_distance: float = 1.0) -> NuScenesSample:
        """The keyframe ``token`` with ``nsweeps`` sweeps (keyframe included) and its boxes."""
        if nsweeps < 1:
            raise ValueError("nsweeps must be >= 1")
        return self._sample(token, nsweeps, min_distance)

    @_malformed_records
    def _sample(self, token: str, nsweeps: int, min_distance: float) -> NuScenesSample:
        t = self.tables
        rec = t.get("sample", token)
        scene = t.get("scene", rec["scene_token"])
        lidar_token = self._lidar_of_sample.get(token)
        if lidar_token is None:
            raise DataFormatError(f"sample {token!r} has no {LIDAR_CHANNEL} keyframe sample_data")
        sd = t.get("sample_data", lidar_token)
        points, sweep_tokens = self._lidar_points(lidar_token, nsweeps, min_distance)
        sensor_to_ego, ego_to_global = self._calib(sd), self._pose(sd)
        anns = self._anns.get(token, [])
        m = len(anns)
        translation = np.array([a["translation"] for a in anns], np.float64).reshape(m, 3)
        size = np.array([a["size"] for a in anns], np.float64).reshape(m, 3)
        rotation = np.array([a["rotation"] for a in anns], np.float64).reshape(m, 4)
        velocity = np.array([self.box_velocity(a["token"]) for a in anns], np.float64).reshape(m, 3)
        global_to_ego = invert_rigid(ego_to_global)
        boxes_ego = boxes_from_global(translation, size, rotation, velocity, global_to_ego)
        boxes = boxes_from_global(translation, size, rotation, velocity, invert_rigid(sensor_to_ego) @ global_to_ego)
        categories = tuple(
            t.get("category", t.get("instance", a["instance_token"])["category_token"])["name"] for a in anns
        )
        attributes = tuple(
            t.get("attribute", a["attribute_tokens"][0])["name"] if a["attribute_tokens"] else "" for a in anns
        )
        return NuScenesSample(
            token=token,
            scene_token=scene["token"],
            scene_name=scene["name"],
            timestamp=int(rec["timestamp"]),
            lidar_token=lidar_token,
            lidar_path=self.sample_data_path(lidar_token),
            points=points,
            num_sweeps=len(sweep_tokens),
            sweep_tokens=sweep_tokens,
            sensor_to_ego=sensor_to_ego,
            ego_to_global=ego_to_global,
            boxes=_wrap_float32(boxes),
            boxes_ego=_wrap_float32(boxes_ego),
            velocity_global=velocity,
            names=tuple(CATEGORY_TO_DETECTION.get(c, "") for c in categories),
            category_names=categories,
            attribute_names=attributes,
            num_lidar_pts=np.array([a.get("num_lidar_pts", 0) for a in anns], np.int64),
            num_radar_pts=np.array([a.get("num_radar_pts", 0) for a in anns], np.int64),
            visibility_tokens=tuple(str(a.get("visibility_token", "")) for a in anns),
            annotation_tokens=tuple(a["token"] for a in anns),
            instance_tokens=tuple(a["instance_token"] for a in anns),
        )
