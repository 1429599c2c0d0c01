"""The ``attention`` benchmark: attention inside the groups of Waymo-scale partitions, per backend.

``run_attention`` concatenates the reports of ``ATTENTION_REPORTS``: grouped softmax attention
(FlatFormer groups, DSVT sets) and ScatterFormer's scattered linear attention
(``pointformer.benchmarks.linear_attention``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from pointformer.benchmarks.core import Report, Row, RunConfig, Timing, peak_memory_mib, with_speedups
from pointformer.benchmarks.linear_attention import linear_attention_report
from pointformer.data.synthetic.scatter import make_lidar_frame
from pointformer.ops import partition_flattened, partition_rotated_sets, reference_only, voxelize
from pointformer.ops.attention import attention_index, grouped_attention
from pointformer.ops.attention.grouped import fused_supports
from pointformer.structures.partition import Partition

# Pillars 0.32 m over +-74.88 m (FlatFormer and DSVT-P on Waymo: a 468 x 468 grid).
PILLAR_SIZE = (0.32, 0.32, 6.0)
PILLAR_RANGE = (-74.88, -74.88, -2.0, 74.88, 74.88, 4.0)
CHANNELS, HEADS = 128, 8


def _pillars(cfg: RunConfig, quick: bool) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Pillar coords of a synthetic frame: ~60k pillars (~6k with ``quick``)."""
    points = make_lidar_frame(20_000 if quick else 300_000, seed=0).to(cfg.device)
    v = voxelize(points, PILLAR_SIZE, PILLAR_RANGE)
    return v.coords, v.grid.shape


def _layouts(coords: torch.Tensor, shape) -> list[tuple[str, Partition, bool]]:
    """(case title, partition, key_mask) as FlatFormer and DSVT-P configure them on Waymo."""
    flat = partition_flattened(coords, 1, shape, (1, 13, 13), 144, axis="x")
    sets = partition_rotated_sets(coords, 1, shape, (1, 12, 12), 36).partitions[0]
    return [
        (f"FlatFormer groups of 144, no key mask ({flat.num_groups} groups)", flat, False),
        (f"DSVT sets of 36, key mask ({sets.num_groups} sets)", sets, True),
    ]


def _peak_memory(fn: Callable[[], object], device: torch.device) -> str:
    """The peak-memory note of a row (empty on the CPU)."""
    peak = peak_memory_mib(fn, device)
    return "" if peak is None else f"peak {peak:.0f} MiB"


def grouped_attention_report(cfg: RunConfig, quick: bool) -> Report:
    """Forward and forward + backward of ``grouped_attention`` per backend, C = 128, 8 heads."""
    coords, shape = _pillars(cfg, quick)
    n = coords.shape[0]
    gen = torch.Generator().manual_seed(0)
    q, k, v, grad = (torch.randn(n, CHANNELS, generator=gen).to(cfg.device) for _ in range(4))
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    backends = (["fused"] if fused_supports(q, HEADS) else []) + ["sdpa"]
    report = Report()
    for title, partition, key_mask in _layouts(coords, shape):
        attention_index(partition, key_mask)  # computed once per partition and cached: not timed

        names = ["reference", *backends]
        fns = [_forward(b, (q, k, v), partition, key_mask) for b in names]
        timings = cfg.time_together(fns)
        report.rows += _rows(f"{title}, forward", names, timings, [_peak_memory(f, cfg.device) for f in fns])
        fns = [_training(b, leaves, grad, partition, key_mask) for b in backends]
        timings = cfg.time_together(fns)
        report.rows += _rows(
            f"{title}, forward + backward", backends, timings, [_peak_memory(f, cfg.device) for f in fns],
            baseline="sdpa",
        )  # fmt: skip
    memory = "peak memory from torch.cuda.max_memory_allocated over one call (above what was allocated before)"
    report.footnotes += [
        f"Input: pillars (0.32 m, grid 468 x 468) of a synthetic frame (`make_lidar_frame`, "
        f"{20_000 if quick else 300_000} points, seed 0): {n} pillars, batch of one; q, k, v random (N, {CHANNELS}) "
        f"float32, {HEADS} heads (head dim {CHANNELS // HEADS}).",
        "FlatFormer: `partition_flattened`, 13 x 13 windows, x order, groups of 144, every slot a key (duplicates "
        "included). DSVT-P: `partition_rotated_sets`, 12 x 12 windows, sets of 36, y-major, padding slots masked.",
        "fused = the native `pointformer::grouped_attention` kernel (no (G, S, C) copies); sdpa = gather to "
        "(G, S, C), `scaled_dot_product_attention` (key mask where used), scatter back; reference = explicit "
        "softmax in pure PyTorch (forward only, no autograd graph). The index lists of a partition are built once "
        "and cached (not timed).",
        "Implementations of a case are timed interleaved, round by round. Speedup = baseline median / row median.",
        memory if cfg.device.type == "cuda" else "Peak memory: not measured on the CPU.",
    ]
    return report


def _forward(backend: str, qkv, partition: Partition, key_mask: bool) -> Callable[[], object]:
    """One forward call without autograd (the reference under ``reference_only``)."""

    def run():
        with torch.no_grad():
            if backend == "reference":
                with reference_only():
                    return grouped_attention(*qkv, partition, HEADS, key_mask=key_mask)
            return grouped_attention(*qkv, partition, HEADS, key_mask=key_mask, backend=backend)

    return run


def _training(backend: str, leaves, grad, partition: Partition, key_mask: bool) -> Callable[[], object]:
    """One forward + backward call into fresh gradients of ``leaves``."""

    def step():
        for t in leaves:
            t.grad = None
        grouped_attention(*leaves, partition, HEADS, key_mask=key_mask, backend=backend).backward(grad)

    return step


def _rows(case: str, names: list[str], timings: list[Timing], memory: list[str], baseline: str = "reference"):
    rows = [Row(case, name, timing, notes) for name, timing, notes in zip(names, timings, memory, strict=True)]
    return with_speedups(rows, baseline=names.index(baseline))


# Report functions of the attention ops, run in this order by ``run_attention``.
ATTENTION_REPORTS: tuple[Callable[[RunConfig, bool], Report], ...] = (grouped_attention_report, linear_attention_report)


def run_attention(cfg: RunConfig, quick: bool) -> Report:
    """Every report of ``ATTENTION_REPORTS``, concatenated."""
    report = Report()
    for make in ATTENTION_REPORTS:
        part = make(cfg, quick)
        report.rows += part.rows
        report.footnotes += part.footnotes
    return report
