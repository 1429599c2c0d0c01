"""The ``ops`` benchmark: native ops against their pure-PyTorch references and common baselines
(voxelize, segment_reduce, boxes_iou_bev, nms_bev, a VFE layer in pooled form)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pointformer.benchmarks.core import (
    PILLARS,
    VOXELS,
    Report,
    Row,
    RunConfig,
    VoxelSetup,
    join_notes,
    timing_note,
    with_ratio,
    with_speedups,
)
from pointformer.benchmarks.peers import voxelize_straightforward
from pointformer.data.synthetic.scatter import make_boxes, make_lidar_frame
from pointformer.models.layers.pooled_pointnet import pooled_linear_bn_relu
from pointformer.ops import _library, boxes_iou_bev, nms_bev, segment_reduce, voxelize
from pointformer.ops.boxes import REFERENCE_MAX_PAIRS, boxes_iou_reference, nms_bev_sorted_reference
from pointformer.ops.voxelize import Voxelization, voxelize_reference
from pointformer.structures.grid import VoxelGrid

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


STRAIGHTFORWARD = "straightforward torch (dynamic)"


def _same_voxelization(a: Voxelization, b: Voxelization) -> bool:
    return all(torch.equal(x, y) for x, y in ((a.coords, b.coords), (a.point_to_voxel, b.point_to_voxel),
                                               (a.num_points, b.num_points)))  # fmt: skip


def bench_voxelize(points: torch.Tensor, setup: VoxelSetup, cfg: RunConfig) -> list[Row]:
    """Native dynamic and hard voxelization, the reference (dynamic), the straightforward torch
    voxelization a user would write (dynamic) and spconv (hard), interleaved."""
    case = f"voxelize {setup.name}, {_count(points.shape[0])} pts"
    grid = VoxelGrid.from_config(setup.point_cloud_range, setup.voxel_size)
    hard = {"max_points_per_voxel": setup.max_points_per_voxel, "max_voxels": setup.max_voxels}
    dynamic = voxelize(points, setup.voxel_size, setup.point_cloud_range)
    hard_result = voxelize(points, setup.voxel_size, setup.point_cloud_range, **hard)
    ref_coords = voxelize_reference(points, grid, None, 1)[1]
    if dynamic.num_voxels != ref_coords.shape[0]:
        raise AssertionError(f"{case}: native {dynamic.num_voxels} voxels but reference {ref_coords.shape[0]}")
    same = _same_voxelization(voxelize_straightforward(points, grid), dynamic)
    kernel = _kernel_note("voxelize", points.device)
    spconv_fn, spconv_notes = _spconv_voxelizer(points, setup, cfg.device)
    fns = [
        lambda: voxelize(points, setup.voxel_size, setup.point_cloud_range),
        lambda: voxelize(points, setup.voxel_size, setup.point_cloud_range, **hard),
        lambda: voxelize_reference(points, grid, None, 1),
        lambda: voxelize_straightforward(points, grid),
    ] + ([spconv_fn] if spconv_fn is not None else [])
    timings = cfg.time_together(fns) + ([] if spconv_fn is not None else [None])
    rows = [
        Row(case, "pointformer native (dynamic)", timings[0], join_notes(f"{dynamic.num_voxels} voxels", kernel)),
        Row(case, f"pointformer native (hard, {setup.max_points_per_voxel} pts/voxel, {setup.max_voxels} voxels)",
            timings[1], join_notes(f"{hard_result.num_voxels} voxels", kernel)),
        Row(case, "pure-PyTorch reference (dynamic)", timings[2], f"{ref_coords.shape[0]} voxels (== native dynamic)"),
        Row(case, STRAIGHTFORWARD, timings[3],
            "same coords, point_to_voxel, num_points as native dynamic" if same else "DIFFERS from native dynamic"),
        Row(case, "spconv PointToVoxel (hard)", timings[4], spconv_notes),
    ]  # fmt: skip
    rows = with_speedups(rows, baseline=2)
    rows[0] = with_ratio(rows[0], rows[3], "straightforward torch")
    # Hard mode does more (caps) than the dynamic peer: the label says what it is compared with.
    rows[1] = with_ratio(rows[1], rows[3], "straightforward torch (dynamic, no caps)")
    rows[1] = with_ratio(rows[1], rows[4], "spconv")
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
            join_notes(agree, _kernel_note("segment_reduce", segment.device)),
        ),
    ]
    return with_speedups(rows, baseline=0)


def bench_pooled_pointnet(segment: torch.Tensor, num_segments: int, in_channels: int, channels: int,
                          cfg: RunConfig, gen: torch.Generator) -> list[Row]:  # fmt: skip
    """A VFE's last layer, training-mode forward + backward: per point ``segment max of ReLU(BN(x W^T))``
    against ``pooled_linear_bn_relu`` (BatchNorm and ReLU on the pooled rows)."""
    n = segment.shape[0]
    x = (torch.randn(n, in_channels, generator=gen) * 10).to(segment.device)
    torch.manual_seed(0)
    linear = torch.nn.Linear(in_channels, channels, bias=False).to(segment.device)
    norm = torch.nn.BatchNorm1d(channels, eps=1e-3, momentum=0.01).to(segment.device).train()

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
        Row(case, "pure-PyTorch reference", ref_timing, join_notes(f"{overlap:.1%} of pairs overlap",
                                                              timing_note(ref_timing))),
        Row(case, "pointformer native", cfg.time(lambda: boxes_iou_bev(a, b)),
            join_notes(f"max abs diff vs reference {err:.1e}", _kernel_note("boxes_iou", cfg.device))),
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
        Row(case, "pure-PyTorch reference", ref_timing, join_notes(chunk_note, timing_note(ref_timing))),
        Row(case, "pointformer native", cfg.time(lambda: nms_bev(boxes, scores, NMS_THRESHOLD)),
            join_notes(f"keeps {keep.numel()}", agree, _kernel_note("nms_bev_sorted", cfg.device))),
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
        f"{STRAIGHTFORWARD}: the few lines of PyTorch a user writes (`pointformer.benchmarks.peers`): "
        "`floor((xyz - range_min) / voxel_size)` to int64 cells, points inside the grid, the linear key "
        "`((b * Z + z) * Y + y) * X + x`, `torch.unique(sorted, return_inverse, return_counts)`, coords decoded "
        "from the unique keys. It must return the native dynamic result exactly; the native rows' notes give "
        "their speedup over it (for hard mode, over this dynamic peer without caps).",
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
        "Speedup = baseline median / row median (baseline: the pure-PyTorch reference, or torch scatter_reduce); "
        "'N.NNx vs X' in the notes = X's median / the row's median.",
        "The voxelize and segment_reduce implementations of a case are timed interleaved, round by round, so that "
        "load from other tenants of the machine falls on all of them alike.",
    ]
