"""pointformer.benchmarks.peers: the peers of the ops and grouping benchmarks return exactly what the
native ops return, so that the benchmark's ratios compare like with like."""

from __future__ import annotations

import pytest
import torch

from pointformer.benchmarks.core import PILLARS, VOXELS, RunConfig, VoxelSetup
from pointformer.benchmarks.grouping import (
    FLATFORMER_NAMES,
    PEER,
    PILLAR_GRID,
    bench_flatformer_frame,
    bench_layouts,
    same_as_flatformer,
)
from pointformer.benchmarks.ops import STRAIGHTFORWARD, bench_voxelize
from pointformer.benchmarks.peers import flatformer_mapping, flatformer_padding_map, voxelize_straightforward
from pointformer.data.synthetic.scatter import make_lidar_frame
from pointformer.ops import voxelize
from pointformer.ops.grouping.presets import FLATFORMER_GROUP_SIZE, FLATFORMER_WINDOW, PILLAR_LAYOUTS
from pointformer.structures.grid import VoxelGrid

QUICK = RunConfig(torch.device("cpu"), repeats=1, warmup=0)


def _two_frames(num_points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two synthetic frames concatenated, and the sample of each point."""
    a, b = make_lidar_frame(num_points, seed=0), make_lidar_frame(num_points, seed=3)
    batch = torch.cat([torch.zeros(a.shape[0], dtype=torch.int64), torch.ones(b.shape[0], dtype=torch.int64)])
    return torch.cat([a, b]), batch


@pytest.mark.parametrize("setup", [PILLARS, VOXELS], ids=lambda s: s.name)
@pytest.mark.parametrize("batched", [False, True])
def test_straightforward_voxelize_equals_native_dynamic(setup: VoxelSetup, batched: bool) -> None:
    points, batch = _two_frames(3000) if batched else (make_lidar_frame(3000, seed=0), None)
    grid = VoxelGrid.from_config(setup.point_cloud_range, setup.voxel_size)
    native = voxelize(points, setup.voxel_size, setup.point_cloud_range, batch_index=batch)
    peer = voxelize_straightforward(points, grid, batch, native.batch_size)
    assert (native.point_to_voxel == -1).any()  # the frame has points outside the range
    torch.testing.assert_close(peer.coords, native.coords, rtol=0, atol=0)
    torch.testing.assert_close(peer.point_to_voxel, native.point_to_voxel, rtol=0, atol=0)
    torch.testing.assert_close(peer.num_points, native.num_points, rtol=0, atol=0)
    assert peer.batch_size == native.batch_size and peer.grid == native.grid


def _pillar_coords(batched: bool) -> tuple[torch.Tensor, int, tuple[int, int, int]]:
    points, batch = _two_frames(3000) if batched else (make_lidar_frame(3000, seed=0), None)
    v = voxelize(points, *PILLAR_GRID, batch_index=batch)
    return v.coords, v.batch_size, v.grid.shape


@pytest.mark.parametrize("batched", [False, True])
def test_official_style_flatformer_mapping_groups_as_native(batched: bool) -> None:
    coords, batch_size, shape = _pillar_coords(batched)
    mappings = flatformer_mapping(coords, batch_size, shape, FLATFORMER_WINDOW, FLATFORMER_GROUP_SIZE)
    # Pad slots exist (no sample is a multiple of the group size), so the padding rule is compared too.
    assert mappings["flat2win"].shape[0] > coords.shape[0]
    for layout, name in FLATFORMER_NAMES.items():
        native = PILLAR_LAYOUTS[layout](coords, batch_size, shape)
        assert same_as_flatformer(native, mappings, name), layout
        # The comparison can fail: another order's mapping is not this partition.
        other = "y" if name.startswith("x") else "x"
        assert not same_as_flatformer(native, mappings, other), layout


def test_same_as_flatformer_compares_the_padding() -> None:
    coords, batch_size, shape = _pillar_coords(False)
    mappings = flatformer_mapping(coords, batch_size, shape, FLATFORMER_WINDOW, FLATFORMER_GROUP_SIZE, ("x",))
    native = PILLAR_LAYOUTS["flattened-x"](coords, batch_size, shape)
    flat2win = mappings["flat2win"].clone()
    flat2win[-1] = flat2win[0]  # another real voxel in the last pad slot: same permutation, other groups
    assert not same_as_flatformer(native, {**mappings, "flat2win": flat2win}, "x")


def test_flatformer_padding_map_repeats_the_previous_group_within_each_sample() -> None:
    coords = torch.zeros(17, 4, dtype=torch.int64)
    coords[10:, 0] = 1  # samples of 10 and 7 voxels, groups of 4
    flat2win, win2flat = flatformer_padding_map(coords, 2, 4)
    expected = list(range(10)) + [6, 7] + list(range(10, 17)) + [13]
    assert flat2win.tolist() == expected
    assert win2flat.tolist() == list(range(10)) + list(range(12, 19))


@pytest.mark.parametrize("counts", [[3, 8], [8, 0]])
def test_flatformer_padding_map_rejects_samples_the_official_loop_mishandles(counts: list[int]) -> None:
    coords = torch.zeros(sum(counts), 4, dtype=torch.int64)
    coords[counts[0] :, 0] = 1
    with pytest.raises(ValueError, match="voxels"):
        flatformer_padding_map(coords, 2, 4)


def test_voxelize_rows_carry_the_straightforward_ratio() -> None:
    rows = bench_voxelize(make_lidar_frame(3000, seed=0), PILLARS, QUICK)
    by_name = {r.implementation: r for r in rows}
    assert by_name[STRAIGHTFORWARD].notes.startswith("same coords, point_to_voxel, num_points")
    assert "x vs straightforward torch" in by_name["pointformer native (dynamic)"].notes
    hard = next(r for r in rows if r.implementation.startswith("pointformer native (hard"))
    assert "x vs straightforward torch (dynamic, no caps)" in hard.notes


def test_grouping_rows_carry_the_official_mapping_ratio() -> None:
    coords, _, shape = _pillar_coords(False)
    layouts = {name: PILLAR_LAYOUTS[name] for name in ("flattened-y-shift", "scattered")}
    rows = bench_layouts("small", coords, shape, layouts, QUICK) + bench_flatformer_frame("small", coords, shape, QUICK)
    peers = [r for r in rows if r.implementation == PEER]
    assert [r.case.split(",")[0] for r in peers] == ["flattened-y-shift", "flattened x4 (x"]
    assert all(r.notes == "same order and groups as native" for r in peers)
    native = [r for r in rows if r.implementation == "pointformer native"]
    assert [f"x vs {PEER}" in r.notes for r in native] == [True, False, True]
