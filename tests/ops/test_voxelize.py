"""voxelize: native kernels against the pure-PyTorch reference, semantics, edge cases, opcheck."""

from __future__ import annotations

import math

import pytest
import torch

from pointformer.ops import voxelize
from pointformer.ops.voxelize import voxelize_reference
from pointformer.structures import VoxelGrid

PILLARS = dict(voxel_size=(0.32, 0.32, 6.0), point_cloud_range=(-74.88, -74.88, -2.0, 74.88, 74.88, 4.0))
VOXELS = dict(voxel_size=(0.5, 0.5, 0.25), point_cloud_range=(-20.0, -20.0, -2.0, 20.0, 20.0, 4.0))


def random_points(n: int, extent: float, generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    """Points spread a little beyond [-extent, extent] in x/y and [-3, 5] in z, 5 features."""
    pts = torch.rand(n, 5, generator=generator, dtype=torch.float64)
    pts[:, :2] = (pts[:, :2] * 2 - 1) * extent * 1.05
    pts[:, 2] = pts[:, 2] * 8 - 3
    return pts.to(dtype)


def assert_same(result, expected) -> None:
    for got, want, name in zip(
        (result.point_to_voxel, result.coords, result.num_points),
        expected,
        ("point_to_voxel", "coords", "num_points"),
        strict=True,
    ):
        assert got.dtype == want.dtype, name
        torch.testing.assert_close(got.cpu(), want.cpu(), rtol=0, atol=0, msg=name)


def run_both(points, device, batch_index=None, batch_size=None, max_points=-1, max_voxels=-1, **grid):
    result = voxelize(
        points.to(device), batch_index=None if batch_index is None else batch_index.to(device),
        batch_size=batch_size, max_points_per_voxel=max_points, max_voxels=max_voxels, **grid,
    )  # fmt: skip
    expected = voxelize_reference(points, result.grid, batch_index, result.batch_size, max_points, max_voxels)
    return result, expected


@pytest.mark.parametrize("grid", [PILLARS, VOXELS], ids=["pillars", "voxels"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_dynamic_matches_reference(device, generator, grid, dtype, batch_size):
    extent = grid["point_cloud_range"][3]
    points = random_points(20000, extent, generator, dtype)
    batch = torch.randint(0, batch_size, (points.shape[0],), generator=generator)
    result, expected = run_both(points, device, batch_index=batch, batch_size=batch_size, **grid)
    assert_same(result, expected)
    assert result.num_voxels > 1000


@pytest.mark.parametrize("max_points,max_voxels", [(1, -1), (3, -1), (-1, 50), (2, 200), (5, 100000)])
def test_hard_matches_reference(device, generator, max_points, max_voxels):
    points = random_points(6000, 20.0, generator)
    # Clustered points so that voxels hold several points each.
    points[:, :3] = torch.round(points[:, :3] * 2) / 2 + 0.01
    batch = torch.randint(0, 2, (points.shape[0],), generator=generator)
    result, expected = run_both(points, device, batch, 2, max_points, max_voxels, **VOXELS)
    assert_same(result, expected)
    if max_points > 0:
        assert int(result.num_points.max()) <= max_points
    if max_voxels > 0:
        assert int(torch.bincount(result.coords[:, 0].long(), minlength=2).max()) <= max_voxels


def test_outputs_are_consistent(device, generator):
    points = random_points(5000, 20.0, generator)
    batch = torch.randint(0, 2, (5000,), generator=generator)
    v = voxelize(points.to(device), batch_index=batch.to(device), **VOXELS)
    p2v, coords, counts = v.point_to_voxel.cpu(), v.coords.cpu().long(), v.num_points.cpu()
    # Sorted lexicographically by (batch, z, y, x) and unique.
    key = ((coords[:, 0] * 1000 + coords[:, 1]) * 1000 + coords[:, 2]) * 1000 + coords[:, 3]
    assert torch.all(key[1:] > key[:-1])
    # Every kept point lies in its voxel; the counts add up.
    kept = p2v >= 0
    cell = torch.floor(
        (points[kept, :3] - torch.tensor(VOXELS["point_cloud_range"][:3])) / torch.tensor(VOXELS["voxel_size"])
    )
    assert torch.equal(coords[p2v[kept]][:, [3, 2, 1]], cell.long())
    assert torch.equal(coords[p2v[kept], 0], batch[kept])
    assert torch.equal(torch.bincount(p2v[kept], minlength=v.num_voxels), counts.long())


def test_half_open_range_and_non_finite(device):
    grid = dict(voxel_size=(1.0, 1.0, 1.0), point_cloud_range=(0.0, 0.0, 0.0, 4.0, 4.0, 4.0))
    below_max = math.nextafter(4.0, 0.0)
    points = torch.tensor(
        [
            [0.0, 0.0, 0.0],  # on range_min: inside, cell 0
            [4.0, 1.0, 1.0],  # on range_max: outside (half-open)
            [below_max, 1.0, 1.0],  # just below range_max: last cell
            [float("nan"), 1.0, 1.0],
            [1.0, float("inf"), 1.0],
            [1.0, 1.0, -float("inf")],
            [-1e-7, 1.0, 1.0],  # just below range_min: outside
            [1.0, 1.0, 1.0],  # on a cell border: the upper cell
        ],
        dtype=torch.float64,
    )
    v = voxelize(points.to(device), **grid)
    assert v.point_to_voxel.cpu().tolist()[1:7] == [-1, 2, -1, -1, -1, -1]  # 0 -> voxel 0, 2 -> voxel 2
    assert v.coords.cpu().tolist() == [[0, 0, 0, 0], [0, 1, 1, 1], [0, 1, 1, 3]]
    assert v.point_to_voxel.cpu().tolist() == [0, -1, 2, -1, -1, -1, -1, 1]


def test_edge_cases(device):
    grid = dict(voxel_size=(1.0, 1.0, 1.0), point_cloud_range=(0.0, 0.0, 0.0, 4.0, 4.0, 4.0))
    empty = voxelize(torch.zeros(0, 4, device=device), **grid)
    assert empty.num_voxels == 0 and empty.point_to_voxel.shape == (0,) and empty.coords.shape == (0, 4)

    one = voxelize(torch.tensor([[1.5, 2.5, 3.5, 0.0]], device=device), **grid)
    assert one.coords.cpu().tolist() == [[0, 3, 2, 1]] and one.num_points.cpu().tolist() == [1]

    outside = voxelize(torch.full((10, 3), 9.0, device=device), **grid)
    assert outside.num_voxels == 0 and outside.point_to_voxel.cpu().eq(-1).all()

    # An empty sample inside a batch: sample 1 has no points, sample 2 only outside points.
    points = torch.tensor([[0.5, 0.5, 0.5], [1.5, 0.5, 0.5], [9.0, 9.0, 9.0], [3.5, 3.5, 3.5]], device=device)
    batch = torch.tensor([0, 0, 2, 3], device=device)
    v = voxelize(points, batch_index=batch, batch_size=4, **grid)
    assert v.coords[:, 0].cpu().tolist() == [0, 0, 3]
    assert v.point_to_voxel.cpu().tolist() == [0, 1, -1, 2]


def test_max_voxels_is_first_come_per_sample(device):
    grid = dict(voxel_size=(1.0, 1.0, 1.0), point_cloud_range=(0.0, 0.0, 0.0, 4.0, 4.0, 4.0))
    # Sample 0 meets voxels x=3, x=1, x=2 in that order; sample 1 meets x=0 only.
    points = torch.tensor([[3.5, 0, 0], [1.5, 0, 0], [3.2, 0, 0], [2.5, 0, 0], [0.5, 0, 0]], device=device)
    batch = torch.tensor([0, 0, 0, 0, 1], device=device)
    v = voxelize(points, batch_index=batch, max_voxels=2, max_points_per_voxel=1, **grid)
    assert v.coords.cpu().tolist() == [[0, 0, 0, 1], [0, 0, 0, 3], [1, 0, 0, 0]]
    # The second point of voxel x=3 is over the per-voxel cap; voxel x=2 came third.
    assert v.point_to_voxel.cpu().tolist() == [1, 0, -1, -1, 2]
    assert v.num_points.cpu().tolist() == [1, 1, 1]


def test_huge_grid_uses_64_bit_keys(device, generator):
    # 200000 x 200000 x 6000 cells (2.4e14): far past int32 linear indices, fine as int64 keys.
    grid = dict(voxel_size=(0.001, 0.001, 0.001), point_cloud_range=(-100.0, -100.0, -3.0, 100.0, 100.0, 3.0))
    points = random_points(3000, 100.0, generator, torch.float64)
    result, expected = run_both(points, device, **grid)
    assert_same(result, expected)
    assert int(result.coords[:, 3].max()) > 100000


def test_grid_overflowing_int32_is_rejected():
    with pytest.raises(ValueError, match="int32"):
        voxelize(torch.zeros(1, 3), voxel_size=(1e-8, 1.0, 1.0), point_cloud_range=(0, 0, 0, 100, 1, 1))


def test_bad_arguments_name_the_problem():
    points = torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"voxel_size\[0\] = 0.3 does not divide the x extent"):
        voxelize(points, voxel_size=(0.3, 0.32, 6), point_cloud_range=(-74.88, -74.88, -2, 74.88, 74.88, 4))
    with pytest.raises(ValueError, match="points must have shape"):
        voxelize(torch.zeros(4, 2), **PILLARS)
    with pytest.raises(ValueError, match="batch_index values"):
        voxelize(points, batch_index=torch.tensor([0, 1, 2, 5]), batch_size=3, **PILLARS)
    with pytest.raises(ValueError, match="max_points_per_voxel"):
        voxelize(points, max_points_per_voxel=0, **PILLARS)


def test_deterministic(device, generator):
    points = random_points(20000, 74.0, generator).to(device)
    a = voxelize(points, max_points_per_voxel=4, max_voxels=3000, **PILLARS)
    b = voxelize(points, max_points_per_voxel=4, max_voxels=3000, **PILLARS)
    assert_same(a, (b.point_to_voxel, b.coords, b.num_points))


def test_opcheck(device, generator):
    grid = VoxelGrid(VOXELS["point_cloud_range"], VOXELS["voxel_size"])
    points = random_points(500, 20.0, generator).to(device)
    batch = torch.randint(0, 2, (500,), generator=generator).to(device)
    for args in [
        (points, batch, 2, list(grid.voxel_size), list(grid.range_min), list(grid.range_max), list(grid.shape), -1, -1),
        (points, None, 1, list(grid.voxel_size), list(grid.range_min), list(grid.range_max), list(grid.shape), 2, 40),
    ]:
        torch.library.opcheck(torch.ops.pointformer.voxelize, args)


def test_voxel_features_become_sparse_voxels(device, generator):
    from pointformer.ops import segment_reduce

    points = random_points(3000, 20.0, generator).to(device)
    v = voxelize(points, **VOXELS)
    features = segment_reduce(points, v.point_to_voxel, v.num_voxels, "mean")
    voxels = v.to_sparse_voxels(features)
    assert voxels.spatial_shape == (24, 80, 80) and voxels.batch_size == 1
    assert voxels.num_voxels == v.num_voxels and voxels.coords is v.coords
    # The mean of each voxel's points lies inside that voxel.
    lo = torch.tensor(VOXELS["point_cloud_range"][:3], device=device)
    cell = torch.floor((features[:, :3] - lo) / torch.tensor(VOXELS["voxel_size"], device=device)).long()
    assert torch.equal(cell.flip(1), voxels.coords[:, 1:].long())
