"""Benchmarks of pointformer's ops against their references and common baselines.

The command-line entry point is ``tools/benchmark.py``; this module holds the logic so that the
script stays thin: timing helpers, synthetic inputs, the benchmark cases, and the markdown output
(a table on stdout, optionally a section upserted into a markdown file such as docs/benchmarks.md).

Subcommands are registered in ``SUBCOMMANDS`` (``ops``, ``grouping``, ``data``), so later benchmarks (attention,
export) add a function and an entry there and share the common options.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from pointformer.ops import _library, boxes_iou_bev, nms_bev, segment_reduce, voxelize
from pointformer.ops.boxes import REFERENCE_MAX_PAIRS, boxes_iou_reference, nms_bev_sorted_reference
from pointformer.ops.voxelize import voxelize_reference
from pointformer.structures.grid import VoxelGrid
from pointformer.utils.atomic import write_atomic

# --- timing -------------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    """Waits for the device's queued work (CUDA); a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mib(fn: Callable[[], Any], device: torch.device) -> float | None:
    """Peak CUDA memory allocated during one call of ``fn`` above what was allocated before (MiB);
    None on the CPU (not measured there)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


@dataclass(frozen=True)
class Timing:
    """Wall-clock times of one implementation, in milliseconds."""

    median_ms: float
    min_ms: float
    repeats: int
    reduced: bool = False  # warm-up skipped / repeats cut because the runs exceeded the time budget


def _timed_call(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """Seconds taken by one call of ``fn`` (synchronizing the device before and after), and its result."""
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return time.perf_counter() - start, result


def time_fn(
    fn: Callable[[], Any],
    device: torch.device,
    repeats: int,
    warmup: int,
    budget_s: float | None = None,
    reduced_repeats: int = 3,
) -> tuple[Timing, Any]:
    """Times ``fn``: ``warmup`` untimed runs, then ``repeats`` timed runs (median and min).

    When ``budget_s`` is given and the first run shows that warm-up plus repeats would take longer,
    the first run becomes the first sample, the warm-up is skipped and at most ``reduced_repeats``
    runs are timed. Returns the timing and the result of the last call.
    """
    first_s, result = _timed_call(fn, device)
    samples = [] if warmup > 0 else [first_s]
    warmup_left = max(warmup - 1, 0)
    reduced = budget_s is not None and first_s * (warmup + repeats) > budget_s
    reduced = reduced and (warmup > 0 or repeats > reduced_repeats)
    if reduced:
        samples, warmup_left, repeats = [first_s], 0, min(repeats, reduced_repeats)
    for _ in range(warmup_left):
        _timed_call(fn, device)
    while len(samples) < max(repeats, 1):
        seconds, result = _timed_call(fn, device)
        samples.append(seconds)
    ms = [s * 1e3 for s in samples]
    return Timing(statistics.median(ms), min(ms), len(ms), reduced), result


def time_interleaved(fns: Sequence[Callable[[], Any]], device: torch.device, repeats: int, warmup: int) -> list[Timing]:
    """Times several implementations of one case round by round (each round calls every ``fn``
    once, in turn), so that a noisy machine (a shared VM, say) slows all of them alike and their
    ratio stays meaningful. Median and min per implementation, in milliseconds."""
    for _ in range(warmup):
        for fn in fns:
            _timed_call(fn, device)
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(max(repeats, 1)):
        for i, fn in enumerate(fns):
            samples[i].append(_timed_call(fn, device)[0] * 1e3)
    return [Timing(statistics.median(ms), min(ms), len(ms)) for ms in samples]


@dataclass(frozen=True)
class Row:
    """One table row: an implementation of a case, its timing (None when it could not run)."""

    case: str
    implementation: str
    timing: Timing | None
    notes: str = ""
    speedup: str = ""


def with_speedups(rows: list[Row], baseline: int) -> list[Row]:
    """Fills ``speedup`` of every row as baseline median / row median; the baseline says so."""
    base = rows[baseline].timing
    out = []
    for i, row in enumerate(rows):
        if i == baseline:
            text = "baseline" if base is not None else ""
        elif base is None or row.timing is None:
            text = "n/a"
        else:
            text = f"{base.median_ms / row.timing.median_ms:.2f}x"
        out.append(replace(row, speedup=text))
    return out


def _timing_note(timing: Timing) -> str:
    if not timing.reduced:
        return ""
    return f"only {timing.repeats} repeat{'s' if timing.repeats > 1 else ''}, no warm-up (runs exceed the time budget)"


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


# --- synthetic inputs ---------------------------------------------------------------------------


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _log_uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    """Samples with density ~ 1/r on [lo, hi]."""
    return lo * (hi / lo) ** torch.rand(n, generator=gen)


def _polar(r: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    azimuth = _uniform(r.shape[0], -math.pi, math.pi, gen)
    return r * torch.cos(azimuth), r * torch.sin(azimuth)


GROUND_Z = -1.8


def _ground_points(n: int, gen: torch.Generator) -> torch.Tensor:
    """``(n, 3)`` ground returns: range density ~ 1/r on [2, 80] m, z around -1.8 m."""
    x, y = _polar(_log_uniform(n, 2.0, 80.0, gen), gen)
    z = GROUND_Z + 0.03 * torch.randn(n, generator=gen)
    return torch.stack([x, y, z], dim=1)


def _object_boxes(num_objects: int, gen: torch.Generator) -> torch.Tensor:
    """``(M, 7)`` boxes standing on the ground: cars, pedestrians and cyclists, heights <= ~2 m."""
    x, y = _polar(_log_uniform(num_objects, 3.0, 75.0, gen), gen)
    templates = torch.tensor([[4.5, 2.0, 1.6], [0.8, 0.8, 1.8], [1.8, 0.8, 1.7]])
    kind = torch.multinomial(torch.tensor([0.6, 0.3, 0.1]), num_objects, replacement=True, generator=gen)
    dims = templates[kind] * _uniform(num_objects, 0.85, 1.15, gen)[:, None]
    dims[:, 2] = dims[:, 2].clamp(max=2.1)
    heading = _uniform(num_objects, -math.pi, math.pi, gen)
    z = GROUND_Z + dims[:, 2] / 2
    return torch.cat([torch.stack([x, y, z], dim=1), dims, heading[:, None]], dim=1)


def _object_points(n: int, boxes: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``(n, 3)`` returns on the vertical faces of ``boxes``; near objects get more (~ 1/r^2)."""
    weight = 1.0 / boxes[:, :2].norm(dim=1).clamp(min=1.0) ** 2
    owner = torch.multinomial(weight, n, replacement=True, generator=gen)
    b = boxes[owner]
    local = (torch.rand(n, 3, generator=gen) - 0.5) * b[:, 3:6]
    on_x_face = torch.rand(n, generator=gen) < 0.5
    sign = torch.where(torch.rand(n, generator=gen) < 0.5, -0.5, 0.5)
    axis = torch.where(on_x_face, 0, 1)
    local[torch.arange(n), axis] = sign * b[torch.arange(n), 3 + axis]
    c, s = torch.cos(b[:, 6]), torch.sin(b[:, 6])
    x = b[:, 0] + local[:, 0] * c - local[:, 1] * s
    y = b[:, 1] + local[:, 0] * s + local[:, 1] * c
    return torch.stack([x, y, b[:, 2] + local[:, 2]], dim=1)


def _outside_points(n: int, gen: torch.Generator) -> torch.Tensor:
    """``(n, 3)`` returns outside the detection range: half beyond 80 m, half above 4 m."""
    far = n // 2
    x, y = _polar(_uniform(far, 80.0, 150.0, gen), gen)
    far_pts = torch.stack([x, y, GROUND_Z + _uniform(far, 0.0, 3.0, gen)], dim=1)
    x, y = _polar(_log_uniform(n - far, 3.0, 60.0, gen), gen)
    high_pts = torch.stack([x, y, _uniform(n - far, 4.0, 12.0, gen)], dim=1)
    return torch.cat([far_pts, high_pts])


def make_lidar_frame(
    num_points: int = 180_000,
    seed: int = 0,
    num_objects: int = 300,
    object_fraction: float = 0.35,
    outside_fraction: float = 0.03,
) -> torch.Tensor:
    """A synthetic Waymo-scale spinning-LiDAR frame: ``(N, 5)`` float32 ``x, y, z, intensity,
    elongation``, in scan (azimuth) order, deterministic for ``seed``.

    Most points lie on a ground plane (z ~ -1.8 m) with range density falling as 1/r between 2 and
    80 m; ``object_fraction`` lie on the faces of ``num_objects`` random box objects; and
    ``outside_fraction`` lie outside the usual detection range (beyond 80 m or above 4 m) so that
    range clipping is exercised.
    """
    gen = torch.Generator().manual_seed(seed)
    n_obj = int(num_points * object_fraction)
    n_out = int(num_points * outside_fraction)
    xyz = torch.cat([
        _ground_points(num_points - n_obj - n_out, gen),
        _object_points(n_obj, _object_boxes(num_objects, gen), gen),
        _outside_points(n_out, gen),
    ])  # fmt: skip
    intensity = torch.rand(num_points, generator=gen) ** 2
    elongation = 0.3 * torch.rand(num_points, generator=gen)
    points = torch.cat([xyz, intensity[:, None], elongation[:, None]], dim=1)
    order = torch.argsort(torch.atan2(points[:, 1], points[:, 0]))
    return points[order].to(torch.float32).contiguous()


def make_boxes(num_boxes: int, seed: int = 0, num_clusters: int = 25, spread: float = 2.0) -> torch.Tensor:
    """``(N, 7)`` float32 random boxes: centres in +-50 m, clustered (``spread`` metres around
    ``num_clusters`` cluster centres) so that a realistic fraction overlaps; sizes 0.5-5 m;
    random heading."""
    gen = torch.Generator().manual_seed(seed)
    centres = _uniform(2 * num_clusters, -45.0, 45.0, gen).reshape(num_clusters, 2)
    owner = torch.randint(num_clusters, (num_boxes,), generator=gen)
    xy = (centres[owner] + spread * torch.randn(num_boxes, 2, generator=gen)).clamp(-50.0, 50.0)
    dims = torch.stack([_uniform(num_boxes, 0.5, 5.0, gen), _uniform(num_boxes, 0.5, 5.0, gen),
                        _uniform(num_boxes, 0.5, 3.0, gen)], dim=1)  # fmt: skip
    z = GROUND_Z + dims[:, 2] / 2
    heading = _uniform(num_boxes, -math.pi, math.pi, gen)
    return torch.cat([xy, z[:, None], dims, heading[:, None]], dim=1)


def make_proposals(num_boxes: int, seed: int = 0, per_object: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, 7)`` detector-like proposals and ``(N,)`` scores for NMS: ``per_object`` jittered
    copies (centre ~0.3 m, size ~5 %, heading ~0.05 rad) of each of ``N / per_object`` objects
    from ``make_boxes``, so many pairs overlap strongly; scores uniform."""
    gen = torch.Generator().manual_seed(seed + 1)
    objects = make_boxes(math.ceil(num_boxes / per_object), seed)
    b = objects.repeat_interleave(per_object, dim=0)[:num_boxes].clone()
    b[:, :2] += 0.3 * torch.randn(num_boxes, 2, generator=gen)
    b[:, 3:6] *= 1 + 0.05 * torch.randn(num_boxes, 3, generator=gen)
    b[:, 6] += 0.05 * torch.randn(num_boxes, generator=gen)
    return b, torch.rand(num_boxes, generator=gen)


# --- the ops cases ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpsSizes:
    """Problem sizes of the ``ops`` benchmark."""

    num_points: int
    iou_boxes: int
    nms_boxes: int
    channels: tuple[int, ...] = (16, 64, 128)

    @classmethod
    def for_run(cls, quick: bool) -> OpsSizes:
        return cls(20_000, 100, 500) if quick else cls(180_000, 500, 4000)


@dataclass(frozen=True)
class VoxelSetup:
    """A voxelization configuration of the benchmark."""

    name: str
    voxel_size: tuple[float, float, float]
    point_cloud_range: tuple[float, float, float, float, float, float]
    max_points_per_voxel: int
    max_voxels: int = 150_000


PILLARS = VoxelSetup("pillars 0.32 m", (0.32, 0.32, 6.0), (-74.88, -74.88, -2.0, 74.88, 74.88, 4.0), 32)
VOXELS = VoxelSetup("voxels 0.1 m", (0.1, 0.1, 0.15), (-75.2, -75.2, -2.0, 75.2, 75.2, 4.0), 5)


@dataclass(frozen=True)
class RunConfig:
    """What every case needs to run: device, repetition counts, and the time budget of a slow
    (reference) row: when its warm-up plus repeats would exceed ``budget_s`` it runs
    ``reduced_repeats`` times without warm-up."""

    device: torch.device
    repeats: int
    warmup: int
    budget_s: float = 60.0
    reduced_repeats: int = 3

    def time(self, fn: Callable[[], Any]) -> Timing:
        """Timing of ``fn`` with the configured warm-up and repeats."""
        return time_fn(fn, self.device, self.repeats, self.warmup)[0]

    def time_together(self, fns: Sequence[Callable[[], Any]]) -> list[Timing]:
        """Timings of implementations compared in one case, interleaved round by round."""
        return time_interleaved(fns, self.device, self.repeats, self.warmup)

    def time_slow(self, fn: Callable[[], Any]) -> tuple[Timing, Any]:
        """Timing of ``fn`` within the time budget, and ``fn``'s result."""
        return time_fn(fn, self.device, self.repeats, self.warmup, self.budget_s, self.reduced_repeats)


@dataclass
class Report:
    """Rows of a benchmark and the footnotes printed under its table."""

    rows: list[Row] = field(default_factory=list)
    footnotes: list[str] = field(default_factory=list)


def _kernel_note(op: str, device: torch.device) -> str:
    return "" if _library.has_kernel(op, device) else f"no native {device.type} kernel: reference fallback"


def _count(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def _spconv_voxelizer(points: torch.Tensor, setup: VoxelSetup, device: torch.device):
    """spconv's PointToVoxel (hard voxelization) with our hard-mode caps, as ``(fn, notes)``;
    ``(None, why)`` when it cannot run."""
    try:
        from spconv.pytorch.utils import PointToVoxel

        gen = PointToVoxel(vsize_xyz=list(setup.voxel_size), coors_range_xyz=list(setup.point_cloud_range),
                           num_point_features=points.shape[1], max_num_voxels=setup.max_voxels,
                           max_num_points_per_voxel=setup.max_points_per_voxel, device=device)  # fmt: skip
        voxels, _, _ = gen(points)
    except Exception as exc:  # ImportError, or no spconv kernel for this device
        message = (str(exc).splitlines() or [""])[0][:120]
        return None, f"unavailable: {type(exc).__name__}: {message}"
    buffer = f"({setup.max_voxels}, {setup.max_points_per_voxel}, {points.shape[1]})"
    return (
        lambda: gen(points)
    ), f"{voxels.shape[0]} voxels; construction not timed; zeroes its {buffer} buffer per call"


def bench_voxelize(points: torch.Tensor, setup: VoxelSetup, cfg: RunConfig) -> list[Row]:
    """Native dynamic and hard voxelization, the reference (dynamic) and spconv (hard), interleaved."""
    case = f"voxelize {setup.name}, {_count(points.shape[0])} pts"
    grid = VoxelGrid.from_config(setup.point_cloud_range, setup.voxel_size)
    hard = {"max_points_per_voxel": setup.max_points_per_voxel, "max_voxels": setup.max_voxels}
    dynamic = voxelize(points, setup.voxel_size, setup.point_cloud_range)
    hard_result = voxelize(points, setup.voxel_size, setup.point_cloud_range, **hard)
    ref_coords = voxelize_reference(points, grid, None, 1)[1]
    if dynamic.num_voxels != ref_coords.shape[0]:
        raise AssertionError(f"{case}: native {dynamic.num_voxels} voxels but reference {ref_coords.shape[0]}")
    kernel = _kernel_note("voxelize", points.device)
    spconv_fn, spconv_notes = _spconv_voxelizer(points, setup, cfg.device)
    fns = [
        lambda: voxelize(points, setup.voxel_size, setup.point_cloud_range),
        lambda: voxelize(points, setup.voxel_size, setup.point_cloud_range, **hard),
        lambda: voxelize_reference(points, grid, None, 1),
    ] + ([spconv_fn] if spconv_fn is not None else [])
    timings = cfg.time_together(fns) + ([] if spconv_fn is not None else [None])
    rows = [
        Row(case, "pointformer native (dynamic)", timings[0], _join(f"{dynamic.num_voxels} voxels", kernel)),
        Row(case, f"pointformer native (hard, {setup.max_points_per_voxel} pts/voxel, {setup.max_voxels} voxels)",
            timings[1], _join(f"{hard_result.num_voxels} voxels", kernel)),
        Row(case, "pure-PyTorch reference (dynamic)", timings[2], f"{ref_coords.shape[0]} voxels (== native dynamic)"),
        Row(case, "spconv PointToVoxel (hard)", timings[3], spconv_notes),
    ]  # fmt: skip
    rows = with_speedups(rows, baseline=2)
    if rows[1].timing is not None and rows[3].timing is not None:
        ratio = rows[3].timing.median_ms / rows[1].timing.median_ms
        rows[1] = replace(rows[1], notes=_join(rows[1].notes, f"{ratio:.2f}x vs spconv"))
    return rows


def pillar_segments(points: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Segment id of each kept point of the pillar voxelization (dropped points removed) and the
    number of segments."""
    result = voxelize(points, PILLARS.voxel_size, PILLARS.point_cloud_range)
    segment = result.point_to_voxel
    return segment[segment >= 0].contiguous(), result.num_voxels


def _scatter_reduce(values: torch.Tensor, segment: torch.Tensor, num_segments: int, reduce: str) -> torch.Tensor:
    """The native-PyTorch baseline: ``scatter_reduce`` into zeros with ``include_self=False``."""
    out = values.new_zeros(num_segments, values.shape[1])
    index = segment[:, None].expand(-1, values.shape[1])
    return out.scatter_reduce(0, index, values, {"max": "amax", "mean": "mean"}[reduce], include_self=False)


def bench_segment_reduce(segment: torch.Tensor, num_segments: int, channels: int, reduce: str, cfg: RunConfig,
                         gen: torch.Generator) -> list[Row]:  # fmt: skip
    """pointformer ``segment_reduce`` against ``torch.Tensor.scatter_reduce`` on the same rows."""
    n = segment.shape[0]
    values = torch.randn(n, channels, generator=gen).to(segment.device)
    case = f"segment_reduce {reduce}, C={channels} ({n} pts -> {num_segments} pillars)"
    ours = segment_reduce(values, segment, num_segments, reduce)
    baseline = _scatter_reduce(values, segment, num_segments, reduce)
    agree = "matches scatter_reduce" if torch.allclose(ours, baseline, atol=1e-5) else "DIFFERS from scatter_reduce"
    baseline_timing, ours_timing = cfg.time_together([
        lambda: _scatter_reduce(values, segment, num_segments, reduce),
        lambda: segment_reduce(values, segment, num_segments, reduce),
    ])  # fmt: skip
    rows = [
        Row(case, "torch scatter_reduce", baseline_timing),
        Row(
            case,
            "pointformer segment_reduce",
            ours_timing,
            _join(agree, _kernel_note("segment_reduce", segment.device)),
        ),
    ]
    return with_speedups(rows, baseline=0)


def bench_pooled_pointnet(segment: torch.Tensor, num_segments: int, in_channels: int, channels: int,
                          cfg: RunConfig, gen: torch.Generator) -> list[Row]:  # fmt: skip
    """A VFE's last layer, training-mode forward + backward: per point ``segment max of ReLU(BN(x W^T))``
    against ``pooled_linear_bn_relu`` (BatchNorm and ReLU on the pooled rows)."""
    from torch import nn

    from pointformer.models.layers.pooled_pointnet import pooled_linear_bn_relu

    n = segment.shape[0]
    x = (torch.randn(n, in_channels, generator=gen) * 10).to(segment.device)
    torch.manual_seed(0)
    linear = nn.Linear(in_channels, channels, bias=False).to(segment.device)
    norm = nn.BatchNorm1d(channels, eps=1e-3, momentum=0.01).to(segment.device).train()

    def per_point():
        out = segment_reduce(torch.relu(norm(linear(x))), segment, num_segments, "max")
        out.sum().backward()
        return out

    def pooled():
        out = pooled_linear_bn_relu(x, segment, num_segments, linear, norm)
        out.sum().backward()
        return out

    agree = "matches per-point" if torch.allclose(pooled(), per_point(), rtol=1e-4, atol=1e-4) else "DIFFERS"
    case = f"VFE layer {in_channels}->{channels} + voxel max, fwd+bwd ({n} pts -> {num_segments} pillars)"
    per_point_timing, pooled_timing = cfg.time_together([per_point, pooled])
    rows = [
        Row(case, "per point (Linear, BN, ReLU, max)", per_point_timing),
        Row(case, "pooled_linear_bn_relu", pooled_timing, agree),
    ]
    return with_speedups(rows, baseline=0)


def bench_iou(num_boxes: int, cfg: RunConfig) -> list[Row]:
    """Native pairwise BEV IoU against the pure-PyTorch reference."""
    a, b = make_boxes(2 * num_boxes, seed=1).to(cfg.device).split(num_boxes)
    case = f"boxes_iou_bev {num_boxes} x {num_boxes}"
    ref_timing, ref = cfg.time_slow(lambda: boxes_iou_reference(a, b, False))
    err = (boxes_iou_bev(a, b) - ref).abs().max().item()
    overlap = (ref > 0).float().mean().item()
    rows = [
        Row(case, "pure-PyTorch reference", ref_timing, _join(f"{overlap:.1%} of pairs overlap",
                                                              _timing_note(ref_timing))),
        Row(case, "pointformer native", cfg.time(lambda: boxes_iou_bev(a, b)),
            _join(f"max abs diff vs reference {err:.1e}", _kernel_note("boxes_iou", cfg.device))),
    ]  # fmt: skip
    return with_speedups(rows, baseline=0)


def nms_bev_reference(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """``nms_bev`` with the pure-PyTorch reference in place of the native kernel."""
    order = torch.sort(scores, descending=True, stable=True).indices
    return order[nms_bev_sorted_reference(boxes[order], threshold)]


NMS_THRESHOLD = 0.7  # CenterPoint's Waymo NMS IoU threshold


def bench_nms(num_boxes: int, cfg: RunConfig) -> list[Row]:
    """Native rotated BEV NMS against the reference (pairwise IoU, then a Python greedy loop)."""
    boxes, scores = make_proposals(num_boxes)
    boxes, scores = boxes.to(cfg.device), scores.to(cfg.device)
    case = f"nms_bev {num_boxes} boxes, IoU > {NMS_THRESHOLD}"
    ref_timing, ref_keep = cfg.time_slow(lambda: nms_bev_reference(boxes, scores, NMS_THRESHOLD))
    keep = nms_bev(boxes, scores, NMS_THRESHOLD)
    agree = "same kept boxes as reference" if torch.equal(keep, ref_keep) else "kept boxes DIFFER from reference"
    chunks = math.ceil(num_boxes / max(1, REFERENCE_MAX_PAIRS // num_boxes))
    chunk_note = f"IoU matrix in {chunks} row chunks (memory)" if chunks > 1 else ""
    rows = [
        Row(case, "pure-PyTorch reference", ref_timing, _join(chunk_note, _timing_note(ref_timing))),
        Row(case, "pointformer native", cfg.time(lambda: nms_bev(boxes, scores, NMS_THRESHOLD)),
            _join(f"keeps {keep.numel()}", agree, _kernel_note("nms_bev_sorted", cfg.device))),
    ]  # fmt: skip
    return with_speedups(rows, baseline=0)


def run_ops(cfg: RunConfig, sizes: OpsSizes) -> Report:
    """All ``ops`` cases: voxelize (pillars, 0.1 m voxels), segment_reduce, boxes_iou_bev, nms_bev, and
    a VFE layer in pooled form."""
    report = Report()
    points = make_lidar_frame(sizes.num_points, seed=0).to(cfg.device)
    with torch.no_grad():
        for setup in (PILLARS, VOXELS):
            report.rows += bench_voxelize(points, setup, cfg)
        segment, num_segments = pillar_segments(points)
        gen = torch.Generator().manual_seed(0)
        for reduce in ("max", "mean"):
            for channels in sizes.channels:
                report.rows += bench_segment_reduce(segment, num_segments, channels, reduce, cfg, gen)
        report.rows += bench_iou(sizes.iou_boxes, cfg)
        report.rows += bench_nms(sizes.nms_boxes, cfg)
    gen = torch.Generator().manual_seed(0)
    for in_channels, channels in ((11, 64), (128, 128)):  # the demo VFE; the last layer of FlatFormer's
        report.rows += bench_pooled_pointnet(segment, num_segments, in_channels, channels, cfg, gen)
    report.footnotes += _ops_footnotes(points, segment, cfg.budget_s, cfg.reduced_repeats)
    return report


def _ops_footnotes(points: torch.Tensor, segment: torch.Tensor, budget_s: float, reduced_repeats: int) -> list[str]:
    """The explanations printed under the ``ops`` table."""
    pr, vr = PILLARS.point_cloud_range, VOXELS.point_cloud_range
    pillar_grid, voxel_grid = (" x ".join(map(str, VoxelGrid.from_config(s.point_cloud_range, s.voxel_size).shape_xyz))
                               for s in (PILLARS, VOXELS))  # fmt: skip
    return [
        f"Input: synthetic spinning-LiDAR frame of {points.shape[0]} points (x, y, z, intensity, elongation; "
        "`make_lidar_frame`, seed 0): ground plane with 1/r range density, ~300 box objects, ~3 % of points "
        "outside the range.",
        f"Pillars use range ±{pr[3]:g} m (grid {pillar_grid}). ±{pr[3]:g} is not divisible by 0.1, so the "
        f"0.1 m voxels use OpenPCDet's Waymo range ±{vr[3]:g} m (grid {voxel_grid}).",
        "spconv PointToVoxel is hard voxelization (first-come caps, as our hard mode) and also copies point "
        "features into a dense (voxels, points, 5) buffer; compare it with the native hard-mode row.",
        f"segment_reduce: segments are the pillar ids of the {segment.shape[0]} in-range points (dropped points "
        "filtered out before timing, for both rows); values random float32 (N, C).",
        f"nms_bev: clustered detector-like proposals (20 jittered copies per object), random scores, IoU threshold "
        f"{NMS_THRESHOLD} (CenterPoint Waymo). The reference computes the full IoU matrix (in row chunks of "
        f"<= {REFERENCE_MAX_PAIRS // 1_000_000}M pairs: unchunked it needs ~2 GB per million pairs) then runs a "
        "Python greedy loop.",
        f"Reference rows whose warm-up plus repeats would exceed {budget_s:g} s run {reduced_repeats} time(s) "
        "without warm-up (said in their notes).",
        "VFE layer: training-mode forward + backward of a voxel encoder's last layer over the pillar segments "
        "(random inputs of std 10, like raw coordinates): per point as the layer is written, against "
        "`pooled_linear_bn_relu` (the same values and gradients; BatchNorm and ReLU run on the pooled rows).",
        "Speedup = baseline median / row median (baseline: the pure-PyTorch reference, or torch scatter_reduce).",
        "The voxelize and segment_reduce implementations of a case are timed interleaved, round by round, so that "
        "load from other tenants of the machine falls on all of them alike.",
    ]


# --- markdown output ----------------------------------------------------------------------------

COLUMNS = ("case", "implementation", "median ms", "min ms", "speedup vs reference/baseline", "notes")


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def format_table(rows: Sequence[Row]) -> str:
    """The rows as a markdown table."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * 3 + ["---"]) + "|"]
    for r in rows:
        times = (_ms(r.timing.median_ms), _ms(r.timing.min_ms)) if r.timing else ("—", "—")
        cells = (r.case, r.implementation, *times, r.speedup, r.notes.replace("|", "/"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_line(device: torch.device) -> str:
    """``Machine: ...``: CPU, cores, torch version and threads (and the GPU on CUDA)."""
    parts = [f"{cpu_model()}, {os.cpu_count()} cores", f"torch {torch.__version__}",
             f"{torch.get_num_threads()} torch threads"]  # fmt: skip
    if device.type == "cuda":
        parts.append(f"GPU {torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})")
    return "Machine: " + ", ".join(parts)


def format_section(heading: str, device: torch.device, command: str, report: Report) -> str:
    """A markdown section: heading, Machine/Date/Command lines, the table and its footnotes."""
    lines = [heading, "", machine_line(device), f"Date: {datetime.date.today().isoformat()}",
             f"Command: `{command}`", "", format_table(report.rows)]  # fmt: skip
    if report.footnotes:
        lines += [""] + [f"- {note}" for note in report.footnotes]
    return "\n".join(lines) + "\n"


TITLE = (
    "# Benchmarks\n\nThe figures in this file are written by `tools/benchmark.py` "
    "(one section per benchmark and device).\n"
)


def upsert_section(document: str | None, heading: str, section: str, group: str | None = None) -> str:
    """``document`` with the section under ``heading`` (up to the next ``## `` heading) replaced
    by ``section``; a new section goes after the last section whose heading starts with ``group``
    (``"## detector"``, say: a benchmark's sections stay together), else at the end. A new document
    starts with the title."""
    if document is None:
        return TITLE + "\n" + section
    lines = document.splitlines()
    starts = [i for i, line in enumerate(lines) if line.rstrip() == heading]
    if not starts:
        kin = [i for i, line in enumerate(lines) if group and line.startswith("## ") and line.startswith(group)]
        if not kin:
            return document.rstrip("\n") + "\n\n" + section
        end = next((i for i in range(kin[-1] + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        before, after = "\n".join(lines[:end]).rstrip("\n"), "\n".join(lines[end:])
        return before + "\n\n" + section + ("\n" + after + "\n" if after else "")
    start = starts[0]
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    before = "\n".join(lines[:start])
    after = "\n".join(lines[end:])
    return (before + "\n" if before else "") + section + ("\n" + after + "\n" if after else "")


def write_section(path: str, heading: str, section: str, group: str | None = None) -> None:
    """Upserts ``section`` into the markdown file at ``path`` (created if missing; see ``upsert_section``)."""
    try:
        with open(path, encoding="utf-8") as f:
            document: str | None = f.read()
    except FileNotFoundError:
        document = None
    write_atomic(path, upsert_section(document, heading, section, group))


# --- command line -------------------------------------------------------------------------------


def _run_config(args: argparse.Namespace) -> RunConfig:
    repeats = args.repeats if args.repeats is not None else (5 if args.quick else 20)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    # --quick: a slow reference row runs once when its runs would take more than 2 s.
    budget = (2.0, 1) if args.quick else (60.0, 3)
    return RunConfig(torch.device(args.device), repeats, warmup, *budget)


def load_warning() -> str | None:
    """A warning when other work already keeps the CPUs busy (timings would be unreliable)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on this platform
        return None
    cores = os.cpu_count() or 1
    if load < 0.5 * cores:
        return None
    return f"warning: load average {load:.1f} on {cores} cores before the benchmark; timings will be noisy"


def run_and_report(args: argparse.Namespace, command: str, name: str, run: Callable[[RunConfig, bool], Report]) -> int:
    """Runs one benchmark, prints its section and, with ``--write``, upserts it into the file."""
    cfg = _run_config(args)
    warning = load_warning()
    if warning:
        print(warning, file=sys.stderr)
    start = time.perf_counter()
    report = run(cfg, args.quick)
    elapsed = time.perf_counter() - start
    heading = f"## {name} ({cfg.device.type})"
    section = format_section(heading, cfg.device, command, report)
    print(section, end="")
    print(f"\n(benchmark took {elapsed:.1f} s; repeats {cfg.repeats}, warm-up {cfg.warmup})", file=sys.stderr)
    if args.write:
        write_section(args.write, heading, section, group="## " + name.split()[0])
        print(f"wrote {heading!r} to {args.write}", file=sys.stderr)
    return 0


def ops_command(args: argparse.Namespace, command: str) -> int:
    """``ops``: native ops against references and baselines."""
    return run_and_report(args, command, "ops", lambda cfg, quick: run_ops(cfg, OpsSizes.for_run(quick)))


def grouping_command(args: argparse.Namespace, command: str) -> int:
    """``grouping``: building each partition layout, native against the reference."""
    from pointformer.utils.benchmark_grouping import run_grouping  # it imports this module

    return run_and_report(args, command, "grouping", run_grouping)


def data_command(args: argparse.Namespace, command: str) -> int:
    """``data``: conversion throughput and the per-frame training data path on one core."""
    from pointformer.utils.benchmark_data import run_data  # it imports this module

    return run_and_report(args, command, "data", run_data)


def attention_command(args: argparse.Namespace, command: str) -> int:
    """``attention``: attention inside Waymo-scale partitions, per backend."""
    from pointformer.utils.benchmark_attention import run_attention  # it imports this module

    return run_and_report(args, command, "attention", run_attention)


def eval_command(args: argparse.Namespace, command: str) -> int:
    """``eval``: the detection metrics on Waymo- and nuScenes-scale inputs."""
    from pointformer.utils.benchmark_eval import run_eval  # it imports this module

    return run_and_report(args, command, "eval", run_eval)


def detector_configs(names: Sequence[str]) -> list[str]:
    """``--cfg`` values as config paths, in order, each once; ``all``: every config directly under configs/."""
    from pointformer.config import CONFIG_DIR, resolve_config_path

    out: list[str] = []
    for name in names:
        paths = sorted(str(p) for p in CONFIG_DIR.glob("*.yaml")) if name == "all" else [str(resolve_config_path(name))]
        out += [p for p in paths if p not in out]
    return out


def detector_command(args: argparse.Namespace, command: str) -> int:
    """``detector``: per config, per-stage latency and the training step of its detector, native vs
    reference; then the 3D backbones and inference against the baseline config's."""
    from pathlib import Path

    from pointformer.config import load_config, resolve_config_path
    from pointformer.utils.benchmark_backbones import DEFAULT_BASELINE, run_comparison  # they import this module
    from pointformer.utils.benchmark_detector import run_detector

    configs = detector_configs(args.cfg or [DEFAULT_DETECTOR_CONFIG])
    frame = "" if args.frame == "raycast" else f", {args.frame} frame"
    kind = " ".join(k for k, on in (("native", not args.reference), ("inference", not args.train_step)) if on)
    kind = f", {kind}" if kind else ""
    if args.compare_only and not args.compare:
        raise SystemExit("detector: --compare-only and --no-compare leave nothing to run")
    for config in configs if not args.compare_only else ():
        name = f"detector {Path(config).stem}{frame}{kind}"

        def run(cfg: RunConfig, quick: bool, config: str = config) -> Report:
            return run_detector(cfg, quick, config, args.overrides, args.frame, args.reference, args.train_step)

        run_and_report(args, command, name, run)
    if not args.compare:
        return 0
    for baseline in args.baselines or [DEFAULT_BASELINE]:
        base = str(resolve_config_path(baseline))
        metric = load_config(base, args.overrides).eval.metric
        group = [c for c in configs if load_config(c, args.overrides).eval.metric == metric]
        if base not in configs or len(group) < 2:
            continue  # the baseline not asked for, or nothing to compare it with
        pairs = {c: args.overrides for c in group}
        name = f"detector 3D backbones vs {Path(base).stem}{frame}"

        def compare(cfg: RunConfig, quick: bool, pairs: dict = pairs, base: str = base) -> Report:
            return run_comparison(cfg, quick, pairs, base, args.frame)

        run_and_report(args, command, name, compare)
    return 0


DEFAULT_DETECTOR_CONFIG = "waymo_flatformer.yaml"


def export_command(args: argparse.Namespace, command: str) -> int:
    """``export``: onnxruntime vs PyTorch on each config's exported network and pipeline."""
    from pointformer.utils.benchmark_export import DEFAULT_CONFIGS, run_export  # it imports this module

    configs = tuple(args.cfg or DEFAULT_CONFIGS)
    return run_and_report(args, command, "export", lambda cfg, quick: run_export(cfg, quick, configs))


def _export_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cfg", nargs="+", action="extend", metavar="CFG",
                        help="configs to export (default: every Waymo config)")  # fmt: skip


def _detector_options(parser: argparse.ArgumentParser) -> None:
    from pointformer.utils.benchmark_backbones import DEFAULT_BASELINE
    from pointformer.utils.benchmark_detector import FRAMES

    parser.add_argument("--cfg", nargs="+", action="extend", metavar="CFG",
                        help="config files or names under configs/, or 'all' (every config there); default "
                             f"{DEFAULT_DETECTOR_CONFIG}; one section per config")  # fmt: skip
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="native ops only: no pure-PyTorch reference rows")  # fmt: skip
    parser.add_argument("--no-train-step", dest="train_step", action="store_false",
                        help="inference only: no training-step rows")  # fmt: skip
    parser.add_argument("--baseline", dest="baselines", action="append", metavar="CFG",
                        help=f"when this config and others of its metric are among --cfg, a section compares their "
                             f"3D backbones and inference with its, on the same frame (default {DEFAULT_BASELINE}; "
                             "repeatable, e.g. also nuscenes_centerpoint.yaml)")  # fmt: skip
    parser.add_argument("--no-compare", dest="compare", action="store_false",
                        help="no comparison section")  # fmt: skip
    parser.add_argument("--compare-only", action="store_true",
                        help="only the comparison section (no per-config stage sections)")  # fmt: skip
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set model.head.score_threshold=0.3 (repeatable)",
    )
    parser.add_argument("--frame", choices=FRAMES, default=FRAMES[0],
                        help="raycast: a frame ray-cast by pointformer.data.synthetic (its labels, ~8k pillars); "
                             "scatter: make_lidar_frame's scattered points (~46k pillars), random boxes")  # fmt: skip


# name -> (help, function(args, command) -> exit code). Later: export.
SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace, str], int]]] = {
    "ops": ("native ops vs references and baselines (voxelize, segment_reduce, boxes_iou_bev, nms_bev)",
            ops_command),
    "grouping": ("building each grouping layout (partition) for a Waymo-scale frame, native vs reference",
                 grouping_command),
    "attention": ("attention inside Waymo-scale partitions (FlatFormer groups, DSVT sets): fused vs sdpa vs reference",
                  attention_command),
    "data": ("dataset conversion throughput and the per-frame training data path (load, augment, voxelize) "
             "on one core", data_command),
    "eval": ("detection metrics: Waymo (1,000 frames x 100 GT / 200 predictions), nuScenes (1,000 samples x 400 "
             "predictions, tools/eval.py vs nuscenes-devkit as whole processes)", eval_command),
    "detector": ("per-stage latency (voxelize to NMS) and training step of a config's detector on a ray-cast "
                 "Waymo-scale frame, native vs reference ops", detector_command),
    "export": ("onnxruntime vs PyTorch on each config's exported network (and points -> boxes) on a ray-cast "
               "Waymo-scale frame", export_command),
}  # fmt: skip

# name -> function adding the subcommand's own options to its parser (besides the common ones).
SUBCOMMAND_OPTIONS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "detector": _detector_options,
    "export": _export_options,
}


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _common_options() -> argparse.ArgumentParser:
    """Options shared by every subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quick", action="store_true", help="small sizes and fewer repeats (a few seconds)")
    common.add_argument("--repeats", type=_positive, help="timed runs per row (default 20, 5 with --quick)")
    common.add_argument("--warmup", type=_non_negative, help="untimed runs first (default 3, 1 with --quick)")
    common.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    common.add_argument("--write", metavar="PATH", help="upsert the section into this markdown file")
    return common


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The ``tools/benchmark.py`` parser, one subparser per entry of ``SUBCOMMANDS``."""
    parser = argparse.ArgumentParser(prog=prog, description="pointformer benchmarks (median of timed runs)")
    sub = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    common = _common_options()
    for name, (help_text, func) in SUBCOMMANDS.items():
        parser_of = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        parser_of.set_defaults(func=func)
        if name in SUBCOMMAND_OPTIONS:
            SUBCOMMAND_OPTIONS[name](parser_of)
    return parser


def command_line(script: str, argv: Sequence[str]) -> str:
    """The command as run, with the script path relative to the repository root when inside it."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.abspath(script)
    shown = os.path.relpath(path, root) if path.startswith(root + os.sep) else script
    return shlex.join(["python", shown, *argv])


def main(argv: Sequence[str] | None = None, script: str = "tools/benchmark.py") -> int:
    """Parses ``argv`` (default ``sys.argv[1:]``) and runs the chosen benchmark."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(prog=os.path.basename(script))
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    return args.func(args, command_line(script, argv))
