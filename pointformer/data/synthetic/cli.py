"""``tools/make_synthetic.py``: synthetic LiDAR sequences written in a real dataset format.

    python tools/make_synthetic.py --format waymo-v1 --frames 20 --seed 0 --out data/synthetic_waymo
    python tools/make_synthetic.py --format waymo-v2 --frames 20 --sequences 4 --split validation \\
        --seed 1000 --out data/synthetic_waymo

Sequence ``k`` of a run is ``generate_sequence(seed + k, frames, "waymo")``: deterministic for
``(seed, k)``, named (context name) after its seed, so sequences of one run have distinct names.
Runs whose seed ranges overlap share sequences: give the splits disjoint seed ranges.

    python tools/make_synthetic.py --format nuscenes --frames 5 --sequences 2 --seed 0 --out data/synthetic_nusc

Layout under ``--out`` (as the official downloads):
  * waymo-v1: ``<split>/segment-<context>_with_camera_labels.tfrecord``;
  * waymo-v2: ``<split>/<component>/<context>.parquet``;
  * nuscenes: a v1.0-mini-shaped dataroot (``v1.0-mini/`` tables with ``splits.json``, ``samples/``,
    ``sweeps/``, ``maps/``), one scene per sequence. ``--frames`` counts keyframes (samples, 2 Hz);
    the nine 20 Hz sweeps between two keyframes are written too. ``--split`` names the custom split
    of ``splits.json`` (scenes are named as the devkit's mini_val, then mini_train scenes).

A progress bar (tqdm) goes to stderr; a summary (frames, points, boxes per Waymo type, files,
seconds) to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pointformer.data.formats.waymo_frame import WaymoRangeImageFrame
from pointformer.data.synthetic.classes import WAYMO_TYPE_NAMES
from pointformer.data.synthetic.sequence import SyntheticFrame, generate_sequence
from pointformer.data.synthetic.waymo_export import write_waymo_v1, write_waymo_v2

FORMATS = ("waymo-v1", "waymo-v2", "nuscenes")
# nuScenes LIDAR_TOP runs at 20 Hz with a keyframe (sample) every 10th sweep.
NUSCENES_FRAMES_PER_SAMPLE = 10
SPLITS = ("training", "validation", "testing")
# Frame time stamps start ``seed`` hours after 2018-01-01 and must fit in int64 microseconds.
MAX_SEED = 10**9


@dataclass
class Summary:
    """What a run wrote.

    Attributes:
        format, split, out: as asked. contexts: the sequences' context names, in order.
        frames: frames written (all sequences). points: points in them (all lasers, both returns).
        boxes: labelled boxes written per Waymo type name (summed over frames).
        files: paths written. seconds: wall time of the run.
    """

    format: str
    split: str
    out: Path
    contexts: list[str] = field(default_factory=list)
    frames: int = 0
    points: int = 0
    boxes: Counter = field(default_factory=Counter)
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, frame: WaymoRangeImageFrame) -> None:
        self.frames += 1
        for laser in frame.lasers:
            self.points += sum(int(np.count_nonzero(r[..., 0] > 0)) for r in laser.returns if r is not None)
        self.boxes.update(WAYMO_TYPE_NAMES[int(t)] for t in frame.labels.types)

    def text(self) -> str:
        per_frame = self.seconds / max(self.frames, 1)
        boxes = ", ".join(f"{name} {self.boxes[name]}" for name in sorted(self.boxes)) or "none"
        lines = [
            f"{self.format} ({self.split}): {len(self.contexts)} sequences, {self.frames} frames "
            f"in {self.seconds:.1f} s ({per_frame:.2f} s/frame)",
            f"points: {self.points} ({'keyframes' if self.format == 'nuscenes' else 'all lasers, both returns'})",
            f"boxes: {sum(self.boxes.values())} ({boxes})",
            f"files: {len(self.files)} under {self.out}",
        ]
        lines += [f"  {p.relative_to(self.out) if p.is_relative_to(self.out) else p}" for p in self.files]
        return "\n".join(lines)


class _Progress:
    """tqdm on stderr when installed, else one line per frame."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.count = total, enabled, 0
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self.bar = tqdm(total=total, unit="frame", file=sys.stderr, dynamic_ncols=True)

    def update(self, label: str) -> None:
        self.count += 1
        if self.bar is not None:
            self.bar.set_postfix_str(label, refresh=False)
            self.bar.update(1)
        elif self.enabled:
            print(f"[{self.count}/{self.total}] {label}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def make_synthetic(
    format: str,
    out: str | Path,
    frames: int,
    seed: int = 0,
    sequences: int = 1,
    split: str = "training",
    progress: bool = True,
) -> Summary:
    """Writes ``sequences`` synthetic sequences of ``frames`` frames each in ``format`` under
    ``out`` (layout in the module docstring) and returns what was written."""
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; expected one of {FORMATS}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if frames < 1 or sequences < 1:
        raise ValueError("frames and sequences must be >= 1")
    if not 0 <= seed <= MAX_SEED - sequences:
        raise ValueError(f"seeds must lie in [0, {MAX_SEED}): got {seed} .. {seed + sequences - 1}")
    start = time.perf_counter()
    out = Path(out)
    summary = Summary(format, split, out)
    total = sequences * (NUSCENES_FRAMES_PER_SAMPLE * (frames - 1) + 1 if format == "nuscenes" else frames)
    bar = _Progress(total, progress)
    current = [0]  # sequence index, for the progress label

    def on_frame(frame: SyntheticFrame, waymo: WaymoRangeImageFrame) -> None:
        summary.add(waymo)
        bar.update(f"sequence {current[0] + 1}/{sequences} frame {frame.index + 1}/{frames}")

    if format == "nuscenes":
        return _make_nuscenes(summary, frames, seed, sequences, bar, start)
    try:
        for k in range(sequences):
            current[0] = k
            sequence = generate_sequence(seed + k, frames, "waymo")
            summary.contexts.append(sequence.name)
            if format == "waymo-v1":
                summary.files.append(write_waymo_v1(sequence, out / split, on_frame=on_frame))
            else:
                summary.files.extend(write_waymo_v2(sequence, out, split, on_frame=on_frame).values())
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - start
    return summary


def _make_nuscenes(summary: Summary, samples: int, seed: int, sequences: int, bar: _Progress, start: float) -> Summary:
    """``--format nuscenes``: ``sequences`` scenes of ``samples`` keyframes each."""
    from pointformer.data.formats.nuscenes_writer import default_scene_names, write_nuscenes

    num_frames = NUSCENES_FRAMES_PER_SAMPLE * (samples - 1) + 1  # the last frame is a keyframe
    names = default_scene_names(sequences)
    scenes = [generate_sequence(seed + k, num_frames, "nuscenes") for k in range(sequences)]  # lazy frames

    def on_frame(scene: int, frame: int) -> None:
        bar.update(f"{names[scene]} frame {frame + 1}/{num_frames}")

    try:
        written = write_nuscenes(
            summary.out, scenes, scene_names=names, splits={summary.split: names}, on_frame=on_frame
        )
    finally:
        bar.close()
    summary.contexts = list(written.scene_names)
    summary.frames = sum(len(tokens) for tokens in written.sample_tokens)
    table_dir = written.dataroot / written.version
    summary.files = sorted(table_dir.glob("*.json"))
    # Points and boxes of the keyframes, as written (5 float32 per point).
    tables = {name: json.loads((table_dir / f"{name}.json").read_text()) for name in ("sample_data", "category")}
    keyframes = [r["filename"] for r in tables["sample_data"] if r["is_key_frame"]]
    summary.points = sum((written.dataroot / name).stat().st_size // 20 for name in keyframes)
    category = {r["token"]: r["name"] for r in tables["category"]}
    instances = {
        r["token"]: category[r["category_token"]] for r in json.loads((table_dir / "instance.json").read_text())
    }
    annotations = json.loads((table_dir / "sample_annotation.json").read_text())
    summary.boxes = Counter(instances[r["instance_token"]] for r in annotations)
    summary.seconds = time.perf_counter() - start
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make_synthetic.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--frames", type=int, required=True, help="frames per sequence (10 Hz)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first sequence (sequence k: seed + k)")
    parser.add_argument("--out", required=True, type=Path, help="output root folder")
    parser.add_argument("--sequences", type=int, default=1, help="number of sequences (segments)")
    parser.add_argument("--split", default="training", choices=SPLITS)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = parser.parse_args(argv)
    try:
        summary = make_synthetic(
            args.format, args.out, args.frames, args.seed, args.sequences, args.split, progress=not args.no_progress
        )
    except ValueError as e:
        parser.error(str(e))
    print(summary.text())
    return 0
