"""The ``grouping`` benchmark: building each partition layout (``pointformer.ops.grouping.presets``)
for a Waymo-scale frame, native kernels against the pure-PyTorch references and, for FlatFormer's
four orders, against the official code's PyTorch mapping (``pointformer.benchmarks.peers``)."""

from __future__ import annotations

import torch

from pointformer.benchmarks.core import Report, Row, RunConfig, with_ratio, with_speedups
from pointformer.benchmarks.peers import flatformer_mapping
from pointformer.data.synthetic.scatter import make_lidar_frame
from pointformer.ops import reference_only, voxelize
from pointformer.ops.grouping.presets import (
    FLATFORMER_GROUP_SIZE,
    FLATFORMER_WINDOW,
    PILLAR_LAYOUTS,
    VOXEL_LAYOUTS,
    LayoutFn,
)
from pointformer.structures.partition import Partition

# FlatFormer / DSVT-P pillars (468 x 468) and DSVT-V voxels (468 x 468 x 32, 0.1875 m in z).
PILLAR_GRID = ((0.32, 0.32, 6.0), (-74.88, -74.88, -2.0, 74.88, 74.88, 4.0))
VOXEL_GRID = ((0.32, 0.32, 0.1875), (-74.88, -74.88, -2.0, 74.88, 74.88, 4.0))

PEER = "official-style PyTorch mapping"
# Our flattened layouts and the names of the same orders in FlatFormer's official mappings.
FLATFORMER_NAMES = {"flattened-x": "x", "flattened-x-shift": "x_shift", "flattened-y": "y",
                    "flattened-y-shift": "y_shift"}  # fmt: skip


def _same(a: Partition, b: Partition) -> bool:
    fields = ("permutation", "offsets", "group_sample", "group_index", "key_mask", "slot_of_voxel")
    return all(
        (getattr(a, f) is None and getattr(b, f) is None) or torch.equal(getattr(a, f), getattr(b, f)) for f in fields
    )


def same_as_flatformer(partition: Partition, mappings: dict[str, torch.Tensor], name: str) -> bool:
    """Whether ``partition`` groups the voxels exactly as FlatFormer's official mappings do for the
    order ``name``: the same permutation, the same padded groups (slot for slot, padding included:
    ``group_index == permutation[flat2win]`` viewed as ``(G, S)``) and the same slot for each voxel
    (``slot_of_voxel[permutation] == win2flat``). The official code has no key mask and no
    variable-length offsets, so those are not compared."""
    permutation, flat2win, win2flat = mappings[name], mappings["flat2win"], mappings["win2flat"]
    if partition.group_index is None or not torch.equal(partition.permutation, permutation):
        return False
    groups = permutation[flat2win].reshape(-1, partition.group_index.shape[1])
    return torch.equal(partition.group_index, groups) and torch.equal(partition.slot_of_voxel[permutation], win2flat)


def bench_layouts(case: str, coords: torch.Tensor, shape, layouts: dict[str, LayoutFn], cfg: RunConfig) -> list[Row]:
    """Native and reference builds of every layout, timed interleaved; outputs must be identical.
    FlatFormer's layouts also time the official-style mapping of the same order (``PEER``)."""
    rows: list[Row] = []
    for name, build in layouts.items():
        native = build(coords, 1, shape)
        with reference_only():
            reference = build(coords, 1, shape)

        def run_reference(build=build):
            with reference_only():
                return build(coords, 1, shape)

        fns = [run_reference, lambda build=build: build(coords, 1, shape)]
        peer_name = FLATFORMER_NAMES.get(name)
        if peer_name is not None:
            fns.append(lambda order=(peer_name,): _flatformer(coords, shape, order))
        timings = cfg.time_together(fns)
        agree = "identical to reference" if _same(native, reference) else "DIFFERS from reference"
        title = f"{name}, {case}"
        layout_rows = [
            Row(title, "pure-PyTorch reference", timings[0]),
            Row(title, "pointformer native", timings[1], f"{native.num_groups} groups; {agree}"),
        ]
        if peer_name is not None:
            same = same_as_flatformer(native, _flatformer(coords, shape, (peer_name,)), peer_name)
            layout_rows.append(Row(title, PEER, timings[2], _peer_note(same)))
            layout_rows[1] = with_ratio(layout_rows[1], layout_rows[2], PEER)
        rows += with_speedups(layout_rows, baseline=0)
    return rows


def _flatformer(coords: torch.Tensor, shape, orders: tuple[str, ...]) -> dict[str, torch.Tensor]:
    return flatformer_mapping(coords, 1, shape, FLATFORMER_WINDOW, FLATFORMER_GROUP_SIZE, orders)


def _peer_note(same: bool) -> str:
    return "same order and groups as native" if same else "grouping DIFFERS from native"


def bench_flatformer_frame(case: str, coords: torch.Tensor, shape, cfg: RunConfig) -> list[Row]:
    """FlatFormer's four orders of one frame together: the official mapping (one padding map, four
    sorts) against the four native partitions, timed interleaved."""
    layouts = {name: PILLAR_LAYOUTS[name] for name in FLATFORMER_NAMES}

    def native() -> list[Partition]:
        return [build(coords, 1, shape) for build in layouts.values()]

    orders = tuple(FLATFORMER_NAMES.values())
    mappings = _flatformer(coords, shape, orders)
    same = all(same_as_flatformer(p, mappings, n) for p, n in zip(native(), orders, strict=True))
    peer_timing, native_timing = cfg.time_together([lambda: _flatformer(coords, shape, orders), native])
    title = f"flattened x4 (x, x-shift, y, y-shift), {case}"
    rows = [Row(title, PEER, peer_timing, _peer_note(same)), Row(title, "pointformer native", native_timing)]
    rows = with_speedups(rows, baseline=0)
    return [rows[0], with_ratio(rows[1], rows[0], PEER)]


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
        if label == "pillars":
            report.rows += bench_flatformer_frame(case, v.coords, v.grid.shape, cfg)
    report.footnotes += [
        "Input: synthetic spinning-LiDAR frames (`make_lidar_frame`): 180k points for the pillars, 600k "
        "(seed 1) for the 0.32 x 0.32 x 0.1875 m voxels; batch of one.",
        "Layouts as each method's Waymo model sets them (`pointformer.ops.grouping.presets`); a row builds "
        "the whole Partition (keys, sort, padded and variable-length views).",
        "Reference = the same public function under `pointformer.ops.reference_only()`; both are timed "
        "interleaved and must return identical tensors.",
        f"{PEER} = the tensor ops of FlatFormer's official `FlattenedWindowMapping` (mit-han-lab/flatformer), "
        "reimplemented op for op (`pointformer.benchmarks.peers`): window coordinates, the serpentine key with "
        "`(-1) ** v` signs, `torch.sort`, and the flat2win/win2flat padding map built by a loop over the batch. "
        "A single-order row builds the padding map and one order; the x4 row builds what FlatFormer builds per "
        "frame (one padding map, four orders) against the four native partitions. It must give the same "
        "permutation, the same padded groups and the same slot per voxel; it has no key mask and no "
        "variable-length offsets (the native rows build both).",
    ]
    return report
