"""The ``data`` benchmark: dataset conversion throughput and the per-frame cost of the training
data path (load, augmentation, processing, voxelization) on one CPU core.

Inputs are synthetic (``pointformer.data.synthetic``) written in the real formats in a temporary
folder: Waymo v1 TFRecords (Waymo-scale frames, five lasers) and a small nuScenes dataroot.

* Conversion: ``convert_waymo`` in-process (``workers=0``) and with 2 worker processes, and
  ``convert_nuscenes`` in-process, each into a fresh output folder per run (a run over an existing
  output would resume and skip everything); throughput in frames (keyframes) per second.
* Per frame: the ``LayoutDataset`` training pipeline of FlatFormer's Waymo set-up (ground-truth
  sampling, flips, rotation, scaling, filters, tanh encoding, shuffle) over the converted Waymo
  frames, then dynamic pillar voxelization (0.32 m, +-74.88 m, z -2..4 m), with torch and numba
  limited to one thread. Each stage is timed separately in every repeat (the stages of one repeat
  run on the same frame, in order) and the end-to-end ``dataset[i]`` + voxelize separately.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from pointformer.benchmarks.core import PILLARS, Report, Row, RunConfig, Timing

TARGET_MS = 60.0  # per-frame budget of the CPU data path (load + augment + voxelize), one core
# FlatFormer / OpenPCDet Waymo ground-truth sampling (gt_sampling of waymo_flatformer.yaml).
GT_SAMPLING = {
    "sample_groups": {"Vehicle": 15, "Pedestrian": 10, "Cyclist": 10},
    "min_points": {"Vehicle": 5, "Pedestrian": 10, "Cyclist": 10},
}


@dataclass(frozen=True)
class DataSizes:
    """Problem sizes of the ``data`` benchmark.

    ``width_divisor`` divides every synthetic laser's azimuth columns (1: Waymo scale, about 180k
    points per frame); ``nuscenes_sweeps`` is the number of 20 Hz sweeps per scene (every 10th, from
    the first, is a keyframe)."""

    waymo_sequences: int
    waymo_frames: int
    width_divisor: int
    nuscenes_scenes: int
    nuscenes_sweeps: int
    conversion_repeats: int

    @classmethod
    def for_run(cls, quick: bool) -> DataSizes:
        return cls(1, 2, 8, 1, 11, 1) if quick else cls(2, 3, 1, 2, 21, 3)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch (intra-op) and numba limited to one thread inside the block; restored afterwards."""
    torch_threads = torch.get_num_threads()
    numba_threads = None
    try:
        import numba

        numba_threads = numba.get_num_threads()
        numba.set_num_threads(1)
    except (ImportError, ValueError):  # no numba, or its threading layer cannot start
        numba = None
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(torch_threads)
        if numba is not None and numba_threads is not None:
            numba.set_num_threads(numba_threads)


def _scaled(lidars, divisor: int):
    return tuple(dataclasses.replace(s, width=max(16, s.width // divisor)) for s in lidars)


def make_waymo_source(folder: Path, sizes: DataSizes) -> Path:
    """Synthetic Waymo v1 TFRecords under ``folder/training``; returns ``folder``."""
    from pointformer.data.synthetic import generate_sequence, waymo_lidars
    from pointformer.data.synthetic.waymo_export import write_waymo_v1

    lidars = _scaled(waymo_lidars(), sizes.width_divisor)
    for seed in range(sizes.waymo_sequences):
        write_waymo_v1(generate_sequence(seed, sizes.waymo_frames, "waymo", lidars=lidars), folder / "training")
    return folder


def make_nuscenes_source(folder: Path, sizes: DataSizes) -> Path:
    """A synthetic nuScenes dataroot (v1.0-mini tables) with one custom split ``bench``."""
    from pointformer.data.formats.nuscenes_writer import write_nuscenes
    from pointformer.data.synthetic import generate_sequence, nuscenes_lidars

    lidars = _scaled(nuscenes_lidars(), sizes.width_divisor)
    names = [f"scene-{2000 + i:04d}" for i in range(sizes.nuscenes_scenes)]
    seqs = [generate_sequence(100 + i, sizes.nuscenes_sweeps, "nuscenes", lidars=lidars) for i in range(len(names))]
    write_nuscenes(folder, seqs, scene_names=names, splits={"bench": names})
    return folder


def _time_conversion(convert, out_root: Path, repeats: int) -> tuple[Timing, object, Path]:
    """Runs ``convert(out)`` ``repeats`` times into fresh folders; the last output is kept."""
    samples, summary, out = [], None, out_root
    for r in range(repeats):
        if out.exists():
            shutil.rmtree(out)
        out = out_root.with_name(f"{out_root.name}_{r}")
        start = time.perf_counter()
        summary = convert(out)
        samples.append((time.perf_counter() - start) * 1e3)
    return Timing(statistics.median(samples), min(samples), len(samples)), summary, out


def bench_conversion(tmp: Path, sizes: DataSizes) -> tuple[list[Row], Path, int]:
    """Conversion rows; the converted Waymo root (for the per-frame rows) and points per frame."""
    from pointformer.data.convert.nuscenes import convert_nuscenes
    from pointformer.data.convert.waymo import convert_waymo

    rows = []
    waymo = make_waymo_source(tmp / "waymo_v1", sizes)
    nuscenes = make_nuscenes_source(tmp / "nuscenes", sizes)
    frames = sizes.waymo_sequences * sizes.waymo_frames
    converted = None
    points_per_frame = 0
    for workers in (0, 2):

        def run(out, workers=workers):
            return convert_waymo(waymo, out, splits=("training",), workers=workers, progress=False)

        timing, summary, out = _time_conversion(run, tmp / f"waymo_out_w{workers}", sizes.conversion_repeats)
        points_per_frame = summary.points // max(summary.frames, 1)
        if converted is None:
            converted = out
        else:
            shutil.rmtree(out)
        case = (f"convert Waymo v1 ({sizes.waymo_sequences} seq x {sizes.waymo_frames} frames, "
                f"~{points_per_frame // 1000}k pts/frame)")  # fmt: skip
        gt = sum(summary.gt_objects_per_class.values())
        rows.append(Row(case, f"convert_waymo workers={workers}", timing,
                        f"{frames / (timing.median_ms / 1e3):.2f} frames/s; {gt} gt-database objects"))  # fmt: skip
    keyframes = sizes.nuscenes_scenes * ((sizes.nuscenes_sweeps + 9) // 10)

    def run_nuscenes(out):
        return convert_nuscenes(nuscenes, out, splits=("bench",), gt_database_splits=("bench",), progress=False)

    timing, summary, out = _time_conversion(run_nuscenes, tmp / "nuscenes_out", sizes.conversion_repeats)
    shutil.rmtree(out)
    per_keyframe = summary.points // max(summary.frames, 1) // 1000
    case = (f"convert nuScenes ({sizes.nuscenes_scenes} scene x {keyframes // sizes.nuscenes_scenes} keyframes, "
            f"{sizes.nuscenes_sweeps} sweeps/scene, ~{per_keyframe}k pts/keyframe)")  # fmt: skip
    rows.append(Row(case, "convert_nuscenes workers=0 (9 sweeps listed)", timing,
                    f"{summary.frames / (timing.median_ms / 1e3):.2f} keyframes/s"))  # fmt: skip
    return rows, converted, points_per_frame


# Targets far above the synthetic scenes' counts (~50 vehicles, ~50 pedestrians, ~12 cyclists per
# frame, more than real Waymo's typical frame), so that the sampler actually pastes objects: the
# FlatFormer targets are met by the scenes themselves and paste nothing.
FORCED_SAMPLE_GROUPS = {"Vehicle": 70, "Pedestrian": 65, "Cyclist": 20}

STAGES = ("load", "gt sampling", "global augmentations", "filters, encoding, shuffle", "voxelize (pillars)")


def training_dataset(root: Path):
    """``LayoutDataset`` with FlatFormer's Waymo training config and ground-truth sampling."""
    from pointformer.data.dataset import DatasetConfig, LayoutDataset

    return LayoutDataset(root, "training", DatasetConfig.from_mapping({"gt_sampling": GT_SAMPLING}), training=True)


def _pillars(points: torch.Tensor):
    from pointformer.ops import voxelize

    return voxelize(points, PILLARS.voxel_size, PILLARS.point_cloud_range)


def bench_frame_pipeline(root: Path, cfg: RunConfig) -> tuple[list[Row], dict]:
    """Per-stage and end-to-end per-frame timings over the converted frames (frame ``r % F`` in
    repeat ``r``), one thread."""
    from pointformer.data.augment import ShufflePoints
    from pointformer.data.gt_sampling import GTSampler, GTSamplingConfig
    from pointformer.data.layout import read_gt_database

    ds = training_dataset(root)
    forced = GTSampler(root, read_gt_database(root, "training"), ds.raw_features, ds.config.class_names,
                       GTSamplingConfig(FORCED_SAMPLE_GROUPS, GT_SAMPLING["min_points"]), ds.config.seed)  # fmt: skip
    forced_ms: list[float] = []
    forced_pasted: list[int] = []
    samples: dict[str, list[float]] = {s: [] for s in STAGES}
    end_to_end: list[float] = []
    stats = {"points_in": [], "points_out": [], "voxels": [], "pasted": []}
    with one_thread(), torch.no_grad():
        for r in range(cfg.warmup + cfg.repeats):
            i = r % len(ds)
            rng = ds.generator(i)
            times = []
            t0 = time.perf_counter()
            sample = ds.load(i)
            times.append(time.perf_counter())
            loaded_boxes, loaded_points = sample.num_boxes, sample.num_points
            sample = ds.gt_sampler(sample, rng, epoch=ds.epoch, index=i)
            times.append(time.perf_counter())
            pasted = sample.num_boxes - loaded_boxes
            sample = ds.augmentations(sample, rng)
            times.append(time.perf_counter())
            sample = ds.processing(sample, rng)
            sample = ShufflePoints()(sample, rng)
            times.append(time.perf_counter())
            v = _pillars(torch.from_numpy(sample.points))
            times.append(time.perf_counter())
            start = time.perf_counter()
            w = _pillars(torch.from_numpy(ds[i].points))
            e2e = time.perf_counter() - start
            if w.num_voxels != v.num_voxels:
                raise AssertionError(f"frame {i}: staged and end-to-end runs differ ({v.num_voxels} vs {w.num_voxels})")
            loaded = ds.load(i)
            start = time.perf_counter()
            pasted_sample = forced(loaded, ds.generator(i), epoch=ds.epoch, index=i)
            forced_s = time.perf_counter() - start
            if r < cfg.warmup:
                continue
            forced_ms.append(forced_s * 1e3)
            forced_pasted.append(pasted_sample.num_boxes - loaded.num_boxes)
            for stage, a, b in zip(STAGES, [t0, *times[:-1]], times, strict=True):
                samples[stage].append((b - a) * 1e3)
            end_to_end.append(e2e * 1e3)
            stats["points_in"].append(loaded_points)
            stats["points_out"].append(sample.num_points)
            stats["voxels"].append(v.num_voxels)
            stats["pasted"].append(pasted)

    def timing(ms: list[float]) -> Timing:
        return Timing(statistics.median(ms), min(ms), len(ms))

    case = f"training frame (FlatFormer Waymo config), 1 thread, {len(ds)} frames cycled"
    rows = [Row(case, f"stage: {s}", timing(samples[s])) for s in STAGES]
    rows[0] = dataclasses.replace(rows[0], notes=f"median {statistics.median(stats['points_in']):.0f} points")
    per_repeat = [sum(samples[s][k] for s in STAGES) for k in range(cfg.repeats)]
    rows[1] = dataclasses.replace(rows[1], notes=f"median {statistics.median(stats['pasted']):.0f} boxes pasted")
    rows[3] = dataclasses.replace(rows[3], notes=f"median {statistics.median(stats['points_out']):.0f} points out")
    rows[4] = dataclasses.replace(rows[4], notes=f"dynamic; median {statistics.median(stats['voxels']):.0f} pillars")
    rows.append(Row(case, "total of the stages", timing(per_repeat), f"target {TARGET_MS:g} ms"))
    rows.append(Row(case, "end to end: dataset[i] + voxelize", timing(end_to_end), f"target {TARGET_MS:g} ms"))
    forced_total = [t - samples["gt sampling"][k] + forced_ms[k] for k, t in enumerate(per_repeat)]
    rows.append(Row(case, f"stage: gt sampling with raised targets {FORCED_SAMPLE_GROUPS}", timing(forced_ms),
                    f"median {statistics.median(forced_pasted):.0f} boxes pasted"))  # fmt: skip
    rows.append(Row(case, "total of the stages, gt sampling with raised targets", timing(forced_total),
                    f"target {TARGET_MS:g} ms"))  # fmt: skip
    totals = {"total_ms": statistics.median(per_repeat), "end_to_end_ms": statistics.median(end_to_end),
              "forced_ms": statistics.median(forced_total)}  # fmt: skip
    return rows, totals


def run_data(cfg: RunConfig, quick: bool) -> Report:
    """All ``data`` cases (see the module docstring). CPU only: ``cfg.device`` is not used."""
    sizes = DataSizes.for_run(quick)
    report = Report()
    with tempfile.TemporaryDirectory(prefix="pointformer_bench_data_") as folder:
        tmp = Path(folder)
        rows, converted, points_per_frame = bench_conversion(tmp, sizes)
        report.rows += rows
        frame_rows, totals = bench_frame_pipeline(converted, cfg)
        report.rows += frame_rows
    total = max(totals.values())
    met = "met" if total <= TARGET_MS else "NOT met"
    report.footnotes += [
        f"Inputs: synthetic data ray-cast by `pointformer.data.synthetic` (Waymo five lasers"
        f"{'' if sizes.width_divisor == 1 else f', azimuth columns / {sizes.width_divisor}'}: "
        f"~{points_per_frame // 1000}k points per frame; nuScenes LIDAR_TOP at 20 Hz) written as Waymo v1 "
        f"TFRecords and nuScenes tables in a temporary folder on {_filesystem(tmp)}.",
        f"Conversion rows: {sizes.conversion_repeats} run(s) each into a fresh output folder (gt database of the "
        "converted split included; ms per whole run, frames/s from the median); worker rows include starting "
        "the process pool.",
        "Per-frame rows: `LayoutDataset(training=True)` with the default `DatasetConfig` (FlatFormer Waymo: "
        "flips x/y, rotation ±π/4, scaling 0.95-1.05, range ±74.88 m, tanh intensity/elongation, shuffle) and "
        f"gt sampling {GT_SAMPLING['sample_groups']} (min points {GT_SAMPLING['min_points']}), then dynamic "
        f"pillar voxelization {PILLARS.voxel_size[0]} m, range ±{PILLARS.point_cloud_range[3]} m, "
        f"z {PILLARS.point_cloud_range[2]:g}..{PILLARS.point_cloud_range[5]:g} m; torch and numba at 1 thread "
        "(restored afterwards). Medians over repeats; 'total of the stages' is the median of the per-repeat sums.",
        f"Target {TARGET_MS:g} ms per frame on one core: {met} (stages total {totals['total_ms']:.1f} ms, "
        f"end to end {totals['end_to_end_ms']:.1f} ms, stages with raised gt-sampling targets "
        f"{totals['forced_ms']:.1f} ms). The FlatFormer targets paste few or no objects here because the synthetic "
        "scenes already hold more boxes of each class than the targets (counted before the empty-box filter, as "
        "the dataset runs it); the raised-targets rows measure the cost of pasting.",
    ]
    return report


def _filesystem(path: Path) -> str:
    """``<fstype>`` of the mount holding ``path`` (from /proc/mounts), for the footnote."""
    try:
        best, fstype = "", "an unknown file system"
        real = os.path.realpath(path)
        with open("/proc/mounts", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and real.startswith(parts[1].rstrip("/") + "/") and len(parts[1]) > len(best):
                    best, fstype = parts[1], parts[2]
        return fstype
    except OSError:
        return "an unknown file system"
