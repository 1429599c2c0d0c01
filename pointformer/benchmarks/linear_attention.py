"""The ``attention`` benchmark's scattered linear attention (ScatterFormer's SLA) part: the native
kernel against the pure-PyTorch reference and the scatter-based baseline of the ScatterFormer paper,
forward and forward+backward, on a Waymo-like frame's 12 x 12 BEV windows."""

from __future__ import annotations

from collections.abc import Callable

import torch

from pointformer.benchmarks.core import Report, Row, RunConfig, peak_memory_mib, with_speedups
from pointformer.data.synthetic.scatter import make_lidar_frame
from pointformer.ops import partition_scattered, voxelize
from pointformer.ops.attention.linear import (
    scattered_linear_attention,
    scattered_linear_attention_naive,
    scattered_linear_attention_reference,
)

# ScatterFormer's Waymo voxels (0.32 x 0.32 x 0.1875 m) and its stage-1 windows: 12 x 12 BEV columns.
VOXEL_SIZE = (0.32, 0.32, 0.1875)
POINT_CLOUD_RANGE = (-74.88, -74.88, -2.0, 74.88, 74.88, 4.0)
WINDOW = 12
CHANNELS, HEADS = 128, 4

Attention = Callable[..., torch.Tensor]


def _native(q, k, v, offsets, heads):
    return scattered_linear_attention(q, k, v, offsets, heads, check_offsets=False)


IMPLEMENTATIONS: dict[str, Attention] = {
    "scatter-based PyTorch (ScatterFormer paper's naive)": scattered_linear_attention_naive,
    "pure-PyTorch reference": scattered_linear_attention_reference,
    "pointformer native": _native,
}


def _inputs(num_points: int, device: torch.device, seed: int = 0):
    points = make_lidar_frame(num_points, seed=1).to(device)
    voxels = voxelize(points, VOXEL_SIZE, POINT_CLOUD_RANGE)
    z = voxels.grid.shape[0]
    partition = partition_scattered(voxels.coords, 1, voxels.grid.shape, (z, WINDOW, WINDOW))
    gen = torch.Generator().manual_seed(seed)
    n = voxels.num_voxels
    q, k, v = (torch.randn(n, CHANNELS, generator=gen).to(device) for _ in range(3))
    grad = torch.randn(n, CHANNELS, generator=gen).to(device)
    return voxels, partition, (q, k, v), grad


def linear_attention_report(cfg: RunConfig, quick: bool) -> Report:
    """SLA on ~100k voxels (``quick``: ~3k) of a synthetic frame, C = 128, 4 heads, float32."""
    device = cfg.device
    voxels, partition, (q, k, v), grad = _inputs(8_000 if quick else 300_000, device)
    offsets = partition.offsets
    lengths = partition.group_lengths
    case = (f"{voxels.num_voxels // 1000}k voxels, {partition.num_groups} windows (max {int(lengths.max())}), "
            f"C {CHANNELS}, {HEADS} heads")  # fmt: skip
    want = scattered_linear_attention_reference(q.double(), k.double(), v.double(), offsets, HEADS)

    def forward(fn: Attention) -> Callable[[], torch.Tensor]:
        return lambda: fn(q, k, v, offsets, HEADS)

    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]

    def forward_backward(fn: Attention) -> Callable[[], None]:
        def run() -> None:
            for t in leaves:
                t.grad = None
            fn(*leaves, offsets, HEADS).backward(grad)

        return run

    report = Report()
    for label, make in (("forward", forward), ("forward + backward", forward_backward)):
        fns = [make(fn) for fn in IMPLEMENTATIONS.values()]
        timings = cfg.time_together(fns)
        rows = []
        for (name, fn), run, timing in zip(IMPLEMENTATIONS.items(), fns, timings, strict=True):
            notes = []
            peak = peak_memory_mib(run, device)
            if peak is not None:
                notes.append(f"peak {peak:.0f} MB")
            if label == "forward":
                err = (fn(q, k, v, offsets, HEADS).double() - want).abs().max().item()
                notes.append(f"max abs err vs float64 {err:.1e}")
            rows.append(Row(f"SLA {label}, {case}", name, timing, "; ".join(notes)))
        report.rows += with_speedups(rows, baseline=0)
    report.footnotes += [
        f"Input: a synthetic spinning-LiDAR frame (`make_lidar_frame`, {'8k' if quick else '300k'} points, seed 1) "
        f"voxelized at ScatterFormer's Waymo voxel size {VOXEL_SIZE} m; windows from `partition_scattered` with "
        f"{WINDOW} x {WINDOW} BEV columns; q, k, v random float32 (N, {CHANNELS}), already in window order.",
        "Scatter-based PyTorch = `scattered_linear_attention_naive`, the baseline of ScatterFormer's Fig. 4: a "
        "per-voxel phi(k)^T v (N x H x D x D) summed by index_add, and a per-voxel gather of KV for the output. "
        "Reference = `scattered_linear_attention_reference` (one index_add per row of KV, O(N C) memory per step).",
        "Forward + backward: the output's backward with a fixed random upstream gradient into q, k, v.",
        "Peak memory: torch.cuda.max_memory_allocated above the inputs, on CUDA only; not measured on the CPU "
        "(the naive forward alone materializes two N x H x D x D float32 tensors, 2 x 1.7 GB at 100k voxels).",
    ]
    return report
