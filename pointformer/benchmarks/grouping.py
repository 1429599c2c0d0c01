"""The ``grouping`` benchmark: building each partition layout (``pointformer.ops.grouping.presets``)
for a Waymo-scale frame, native kernels against the pure-PyTorch references."""

from __future__ import annotations

import torch

from pointformer.benchmarks.core import Report, Row, RunConfig, with_speedups
from pointformer.data.synthetic.scatter import make_lidar_frame
from pointformer.ops import reference_only, voxelize
from pointformer.ops.grouping.presets import PILLAR_LAYOUTS, VOXEL_LAYOUTS, LayoutFn
from pointformer.structures.partition import Partition

# FlatFormer / DSVT-P pillars (468 x 468) and DSVT-V voxels (468 x 468 x 32, 0.1875 m in z).
PILLAR_GRID = ((0.32, 0.32, 6.0), (-74.88, -74.88, -2.0, 74.88, 74.88, 4.0))
VOXEL_GRID = ((0.32, 0.32, 0.1875), (-74.88, -74.88, -2.0, 74.88, 74.88, 4.0))


def _same(a: Partition, b: Partition) -> bool:
    fields = ("permutation", "offsets", "group_sample", "group_index", "key_mask", "slot_of_voxel")
    return all(
        (getattr(a, f) is None and getattr(b, f) is None) or torch.equal(getattr(a, f), getattr(b, f)) for f in fields
    )


def bench_layouts(case: str, coords: torch.Tensor, shape, layouts: dict[str, LayoutFn], cfg: RunConfig) -> list[Row]:
    """Native and reference builds of every layout, timed interleaved; outputs must be identical."""
    rows: list[Row] = []
    for name, build in layouts.items():
        native = build(coords, 1, shape)
        with reference_only():
            reference = build(coords, 1, shape)

        def run_reference(build=build):
            with reference_only():
                return build(coords, 1, shape)

        ref_timing, native_timing = cfg.time_together([run_reference, lambda build=build: build(coords, 1, shape)])
        agree = "identical to reference" if _same(native, reference) else "DIFFERS from reference"
        title = f"{name}, {case}"
        rows += with_speedups(
            [
                Row(title, "pure-PyTorch reference", ref_timing),
                Row(title, "pointformer native", native_timing, f"{native.num_groups} groups; {agree}"),
            ],
            baseline=0,
        )
    return rows


def run_grouping(cfg: RunConfig, quick: bool) -> Report:
    """Pillars of a 180k-point frame (about 46k) and voxels of a denser frame (about 150k)."""
    report = Report()
    pillar_points = make_lidar_frame(20_000 if quick else 180_000, seed=0).to(cfg.device)
    voxel_points = make_lidar_frame(40_000 if quick else 600_000, seed=1).to(cfg.device)
    for label, points, (size, rng), layouts in (
        ("pillars", pillar_points, PILLAR_GRID, PILLAR_LAYOUTS),
        ("voxels", voxel_points, VOXEL_GRID, VOXEL_LAYOUTS),
    ):
        v = voxelize(points, size, rng)
        z, y, x = v.grid.shape
        case = f"{v.num_voxels // 1000}k {label} on {x} x {y} x {z}"
        report.rows += bench_layouts(case, v.coords, v.grid.shape, layouts, cfg)
    report.footnotes += [
        "Input: synthetic spinning-LiDAR frames (`make_lidar_frame`): 180k points for the pillars, 600k "
        "(seed 1) for the 0.32 x 0.32 x 0.1875 m voxels; batch of one.",
        "Layouts as each method's Waymo model sets them (`pointformer.ops.grouping.presets`); a row builds "
        "the whole Partition (keys, sort, padded and variable-length views).",
        "Reference = the same public function under `pointformer.ops.reference_only()`; both are timed "
        "interleaved and must return identical tensors.",
    ]
    return report
