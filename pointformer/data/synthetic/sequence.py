"""Sequences of synthetic frames: ``generate_sequence`` is the one-call entry point.

Frames are computed on access (a Waymo-scale frame holds ~20 MB of range images), each
deterministic for ``(seed, frame index)``, so ``sequence[i]`` can be asked in any order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from pointformer.data.synthetic.labels import FrameLabels, make_labels
from pointformer.data.synthetic.lidar import LidarSpec, preset_lidars
from pointformer.data.synthetic.raycast import Scan, cast_scan
from pointformer.data.synthetic.scene import Primitives, Scene, build_scene

# Frame rate (Hz) and keyframe interval (frames) per preset: Waymo labels every 10 Hz frame;
# nuScenes sweeps at 20 Hz with 2 Hz keyframes (samples).
PRESET_TIMING = {"waymo": (10.0, 1), "nuscenes": (20.0, 10)}
# First time stamp (microseconds since the epoch) of sequence 0: 2018-01-01T00:00:00Z.
EPOCH_MICROS = 1_514_764_800_000_000


@dataclass(frozen=True, eq=False)
class SyntheticFrame:
    """One frame.

    Attributes:
        index: frame index in the sequence.
        timestamp_micros: time of the frame (microseconds); every scan of the frame is simulated
            at this instant (no rolling shutter: a writer may use the frame pose as every pixel's
            pose).
        pose: ``(4, 4)`` float64 vehicle -> world.
        is_keyframe: whether the frame is a keyframe (every frame for Waymo; 2 Hz for nuScenes).
        scans: one ``Scan`` per laser, in the sequence's ``lidars`` order.
        labels: the frame's labels (vehicle frame); ``Scan.hit_object`` indexes them.
    """

    index: int
    timestamp_micros: int
    pose: np.ndarray
    is_keyframe: bool
    scans: tuple[Scan, ...]
    labels: FrameLabels

    def scan(self, name: str) -> Scan:
        """The scan of laser ``name``."""
        for s in self.scans:
            if s.spec.name == name:
                return s
        raise KeyError(f"no laser {name!r}; have {[s.spec.name for s in self.scans]}")

    def points(self, lasers: tuple[str, ...] | None = None, returns: tuple[int, ...] = (0, 1)) -> np.ndarray:
        """``(N, 6)`` float32 ``[x, y, z, intensity, elongation, nlz]`` in the vehicle frame: the
        lasers (all by default) in order, each laser's ``returns`` one after the other (as
        ``Scan.points``)."""
        scans = self.scans if lasers is None else tuple(self.scan(n) for n in lasers)
        return np.concatenate([s.points(returns) for s in scans])

    def point_info(self, lasers: tuple[str, ...] | None = None, returns: tuple[int, ...] = (0, 1)):
        """``(N,)`` int32 hit object (index into ``labels``, -1 background) and ``(N,)`` int8
        surface code of each point of ``points(lasers, returns)``."""
        scans = self.scans if lasers is None else tuple(self.scan(n) for n in lasers)
        info = [s.point_info(returns) for s in scans]
        return np.concatenate([i[0] for i in info]), np.concatenate([i[1] for i in info])


@dataclass(frozen=True, eq=False)
class SyntheticSequence:
    """A deterministic sequence of frames of one scene.

    Attributes:
        name: segment / scene name (Waymo-style ``<20 digits>_<4>_000_<4>_000``).
        seed: the seed everything derives from.
        preset: ``"waymo"`` or ``"nuscenes"``.
        frame_rate: frames per second (Hz).
        keyframe_interval: every this many frames is a keyframe.
        lidars: the lasers.
        scene: the world, objects and ego motion.
        label_range: objects within this bird's-eye-view distance (m) of the ego are labelled.
        start_timestamp_micros: time stamp of frame 0.
    """

    name: str
    seed: int
    preset: str
    num_frames: int
    frame_rate: float
    keyframe_interval: int
    lidars: tuple[LidarSpec, ...]
    scene: Scene
    label_range: float
    start_timestamp_micros: int

    def __len__(self) -> int:
        return self.num_frames

    def __iter__(self) -> Iterator[SyntheticFrame]:
        for i in range(self.num_frames):
            yield self[i]

    def time(self, index: int) -> float:
        """Seconds since frame 0."""
        return index / self.frame_rate

    def timestamp_micros(self, index: int) -> int:
        return self.start_timestamp_micros + int(round(index * 1e6 / self.frame_rate))

    def __getitem__(self, index: int) -> SyntheticFrame:
        if not -self.num_frames <= index < self.num_frames:
            raise IndexError(f"frame {index} out of range for {self.num_frames} frames")
        index %= self.num_frames
        t = self.time(index)
        scene = self.scene
        pose = scene.ego_pose(t)
        states = scene.object_states(t)
        near = np.hypot(states.boxes[:, 0] - pose[0, 3], states.boxes[:, 1] - pose[1, 3]) < self.label_range
        idx = np.nonzero(near)[0]
        prims = Primitives.cat([scene.static, scene.object_primitives(t, idx)])
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, index]))
        scans = tuple(
            cast_scan(spec, pose, scene.ground, scene.road, prims, child)
            for spec, child in zip(self.lidars, rng.spawn(len(self.lidars)), strict=True)
        )
        top = self.lidars[0].name
        labels = make_labels(
            scene.objects.ids[idx], scene.objects.class_index[idx], states.boxes[idx], states.velocity[idx],
            states.acceleration[idx], pose, scans, top,
        )  # fmt: skip
        return SyntheticFrame(index, self.timestamp_micros(index), pose, index % self.keyframe_interval == 0,
                              scans, labels)  # fmt: skip


def generate_sequence(
    seed: int,
    num_frames: int,
    preset: str = "waymo",
    *,
    frame_rate: float | None = None,
    density: float = 1.0,
    ego_speed: float | None = None,
    label_range: float = 85.0,
    lidars: tuple[LidarSpec, ...] | None = None,
) -> SyntheticSequence:
    """A synthetic driving sequence.

    Args:
        seed: everything (scene, motion, sensor noise) derives from it.
        num_frames: frames at ``frame_rate`` (for nuScenes these are the 20 Hz sweeps; every
            10th is a keyframe).
        preset: ``"waymo"`` (TOP + FRONT, SIDE_LEFT, SIDE_RIGHT, REAR; 10 Hz) or ``"nuscenes"``
            (LIDAR_TOP; 20 Hz).
        frame_rate: overrides the preset's rate (Hz).
        density: scales the number of objects.
        ego_speed: m/s (default: random in [6, 12]).
        label_range: objects within this distance (m, bird's-eye view) of the ego are labelled
            (and ray cast); beyond-range ones are listed with 0 points.
        lidars: overrides the preset's lasers (the first one counts as TOP).
    """
    if num_frames < 1:
        raise ValueError("num_frames must be >= 1")
    rate, keyframes = PRESET_TIMING[preset] if preset in PRESET_TIMING else (None, None)
    specs = tuple(lidars) if lidars is not None else preset_lidars(preset)
    rate = float(frame_rate if frame_rate is not None else rate)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5CE7E]))
    duration = (num_frames - 1) / rate
    scene = build_scene(rng, duration, ego_speed=ego_speed, density=density)
    name = f"{seed:020d}_{seed % 10000:04d}_000_{(seed + 20) % 10000:04d}_000"
    start = EPOCH_MICROS + seed * 3_600_000_000
    return SyntheticSequence(name, seed, preset, num_frames, rate, keyframes, specs, scene, label_range, start)
