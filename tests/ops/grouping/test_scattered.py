"""partition_scattered: ScatterFormer's scattered windows, hand-checked cases and properties."""

from __future__ import annotations

import pytest
import torch

import pointformer.ops
from pointformer.ops import _library
from pointformer.ops.grouping import (
    partition_scattered,
    scattered_window_key,
    scattered_window_keys,
    scattered_window_keys_reference,
)

native = pytest.mark.skipif(not _library.NATIVE, reason="pointformer._C is not built")

# (b, z, y, x) on a (Z, Y, X) = (2, 4, 4) grid, two samples, windows of 2 x 2 BEV cells.
SMALL = torch.tensor(
    [[1, 0, 0, 0], [0, 1, 3, 3], [0, 0, 0, 1], [0, 0, 2, 0], [1, 1, 1, 1], [0, 1, 1, 0], [0, 0, 0, 3], [1, 0, 3, 2]],
    dtype=torch.int32,
)


def random_voxels(counts: list[int], shape: tuple[int, int, int], generator: torch.Generator) -> torch.Tensor:
    """Distinct voxels per sample, ``counts[b]`` in sample ``b``, shuffled across the batch."""
    cells = shape[0] * shape[1] * shape[2]
    parts = []
    for b, n in enumerate(counts):
        flat = torch.randperm(cells, generator=generator)[:n]
        z, y, x = flat // (shape[1] * shape[2]), (flat // shape[2]) % shape[1], flat % shape[2]
        parts.append(torch.stack([torch.full_like(flat, b), z, y, x], dim=1))
    coords = torch.cat(parts) if parts else torch.zeros(0, 4, dtype=torch.int64)
    return coords[torch.randperm(coords.shape[0], generator=generator)].to(torch.int32)


def expected_groups(coords: torch.Tensor, window: tuple[int, int, int], shift: bool) -> list[list[int]]:
    """The layout spelled out in Python: voxels grouped by (batch, window y, window x), groups in
    that order, voxels by index."""
    sy, sx = (window[1] // 2, window[2] // 2) if shift else (0, 0)
    groups: dict[tuple[int, int, int], list[int]] = {}
    for i, (b, _, y, x) in enumerate(coords.tolist()):
        groups.setdefault((b, (y + sy) // window[1], (x + sx) // window[2]), []).append(i)
    return [groups[k] for k in sorted(groups)]


def groups_of(partition) -> list[list[int]]:
    perm, offsets = partition.permutation.tolist(), partition.offsets.tolist()
    return [perm[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


def test_small_grid_two_samples(device):
    p = partition_scattered(SMALL.to(device), 2, (2, 4, 4), (2, 2, 2))
    assert p.permutation.tolist() == [2, 5, 6, 3, 1, 0, 4, 7]
    assert p.offsets.tolist() == [0, 2, 3, 4, 5, 7, 8]
    assert p.group_lengths.tolist() == [2, 1, 1, 1, 2, 1]
    assert p.group_sample.tolist() == [0, 0, 0, 0, 1, 1]
    assert p.group_index is None and p.group_size is None
    for t in (p.permutation, p.offsets, p.group_sample):
        assert t.dtype == torch.int64 and t.device.type == device.type


def test_small_grid_shifted(device):
    # Half a window (1 cell) added on y and x before dividing.
    p = partition_scattered(SMALL.to(device), 2, (2, 4, 4), (2, 2, 2), shift=True)
    assert p.permutation.tolist() == [2, 6, 3, 5, 1, 0, 4, 7]
    assert p.offsets.tolist() == [0, 1, 2, 4, 5, 6, 7, 8]
    assert p.group_sample.tolist() == [0, 0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("shift", [False, True])
@pytest.mark.parametrize("counts", [[300, 0, 1, 5, 2000], [1], [0, 0, 7]])
def test_random_batches_match_the_layout(device, generator, shift, counts):
    shape, window = (8, 60, 50), (8, 7, 6)
    coords = random_voxels(counts, shape, generator)
    p = partition_scattered(coords.to(device), len(counts), shape, window, shift=shift)
    want = expected_groups(coords, window, shift)
    assert groups_of(p) == want
    assert p.group_sample.cpu().tolist() == [int(coords[g[0], 0]) for g in want]
    # Every voxel exactly once, batch-major, and all voxels of a group share the window.
    n = coords.shape[0]
    assert torch.equal(torch.sort(p.permutation.cpu()).values, torch.arange(n))
    ordered = coords[p.permutation.cpu()].long()
    assert torch.all(ordered[1:, 0] >= ordered[:-1, 0])
    key = scattered_window_key(coords, shape, window, shift)[p.permutation.cpu()]
    group = torch.repeat_interleave(torch.arange(p.num_groups), p.group_lengths.cpu())
    assert torch.all(key == key[p.offsets[:-1].cpu()][group])
    assert torch.all(key[p.offsets[1:-1].cpu()] > key[p.offsets[1:-1].cpu() - 1])
    assert torch.all(p.group_sample.cpu()[group] == ordered[:, 0])


def test_windows_are_bev_columns(device):
    # Every z of a column is in the same window, whatever its height.
    coords = torch.tensor([[0, z, 5, 5] for z in (7, 0, 3)], dtype=torch.int32)
    p = partition_scattered(coords.to(device), 1, (8, 10, 10), (8, 4, 4))
    assert p.offsets.tolist() == [0, 3] and p.permutation.tolist() == [0, 1, 2]


def test_empty_and_single(device):
    empty = partition_scattered(torch.zeros(0, 4, dtype=torch.int32, device=device), 3, (1, 8, 8), (1, 4, 4))
    assert empty.num_groups == 0 and empty.offsets.tolist() == [0] and empty.num_voxels == 0
    one = partition_scattered(torch.tensor([[1, 0, 7, 2]], dtype=torch.int32, device=device), 2, (1, 8, 8), (1, 4, 4))
    assert one.permutation.tolist() == [0] and one.offsets.tolist() == [0, 1] and one.group_sample.tolist() == [1]


def test_validation():
    coords = torch.tensor([[0, 0, 1, 1]], dtype=torch.int32)
    with pytest.raises(ValueError, match="BEV columns"):
        partition_scattered(coords, 1, (4, 8, 8), (1, 4, 4))
    with pytest.raises(ValueError, match="int32"):
        partition_scattered(coords.long(), 1, (1, 8, 8), (1, 4, 4))
    with pytest.raises(ValueError, match="outside sparse_shape"):
        partition_scattered(torch.tensor([[0, 0, 8, 1]], dtype=torch.int32), 1, (1, 8, 8), (1, 4, 4))
    with pytest.raises(ValueError, match="non-negative"):
        partition_scattered(torch.tensor([[0, 0, -1, 1]], dtype=torch.int32), 1, (1, 8, 8), (1, 4, 4))
    with pytest.raises(ValueError, match="batch index"):
        partition_scattered(torch.tensor([[2, 0, 1, 1]], dtype=torch.int32), 2, (1, 8, 8), (1, 4, 4))
    with pytest.raises(ValueError, match="3 entries"):
        partition_scattered(coords, 1, (8, 8), (1, 4, 4))


GRIDS = [((1, 60, 50), (1, 7, 6)), ((8, 60, 50), (8, 7, 6)), ((32, 41, 41), (32, 12, 12)), ((3, 5, 4), (3, 1, 1))]
COUNTS = [[300, 0, 1, 5, 2000], [1], [0, 0, 7], []]


@native
@pytest.mark.parametrize("shift", [False, True])
@pytest.mark.parametrize("grid", GRIDS)
def test_native_keys_match_reference(device, generator, grid, shift):
    shape, window = grid
    for counts in COUNTS:
        coords = random_voxels(counts, shape, generator).to(device)
        want = scattered_window_keys_reference(coords, shape, window, shift)
        got = scattered_window_keys(coords, shape, window, shift)
        assert got.dtype == torch.int64 and torch.equal(got, want)
        # Out of the grid (any axis, either side) or a negative batch: -1 on both paths.
        bad = torch.tensor(
            [[0, shape[0], 0, 0], [0, 0, -1, 0], [0, 0, 0, shape[2]], [-1, 0, 0, 0], [0, 0, shape[1] - 1, 0]],
            dtype=torch.int32,
            device=device,
        )
        want = scattered_window_keys_reference(bad, shape, window, shift)
        assert want[:-1].tolist() == [-1] * 4 and want[-1] >= 0
        assert torch.equal(scattered_window_keys(bad, shape, window, shift), want)


@native
@pytest.mark.parametrize("shift", [False, True])
@pytest.mark.parametrize("grid", GRIDS)
def test_native_partition_matches_reference(device, generator, grid, shift):
    shape, window = grid
    for counts in COUNTS:
        coords = random_voxels(counts, shape, generator).to(device)
        batch = max(len(counts), 1)
        got = partition_scattered(coords, batch, shape, window, shift)
        with pointformer.ops.reference_only():
            want = partition_scattered(coords, batch, shape, window, shift)
        for name in ("permutation", "offsets", "group_sample"):
            a, b = getattr(got, name), getattr(want, name)
            assert a.dtype == b.dtype == torch.int64 and a.device == b.device and torch.equal(a, b), name


@native
def test_native_sort_window_keys(device, generator):
    # Duplicates keep their input order; keys up to 2^20 take two radix passes.
    for limit in (1, 5, 1 << 20):
        keys = torch.randint(0, limit, (3000,), generator=generator).to(device)
        perm, offsets, runs = torch.ops.pointformer.sort_window_keys(keys, limit)
        sorted_keys, want_perm = torch.sort(keys, stable=True)
        want_runs, counts = torch.unique_consecutive(sorted_keys, return_counts=True)
        assert torch.equal(perm, want_perm) and torch.equal(runs, want_runs)
        assert torch.equal(offsets, torch.cat([counts.new_zeros(1), counts.cumsum(0)]))
    if _library.kernel_kind(device) == "cpu":  # the CUDA wrapper leaves the range to the caller
        with pytest.raises(RuntimeError, match="outside"):
            torch.ops.pointformer.sort_window_keys(torch.tensor([0, 4]), 4)


@native
def test_native_validation_messages(device):
    # The native path names a bad voxel as the reference does.
    cases = [
        ([[0, 0, 8, 1]], "outside sparse_shape"),
        ([[0, 0, -1, 1]], "non-negative"),
        ([[2, 0, 1, 1]], "batch index"),
        ([[-1, 0, 1, 1]], "non-negative"),
    ]
    for rows, match in cases:
        coords = torch.tensor(rows, dtype=torch.int32, device=device)
        with pytest.raises(ValueError, match=match):
            partition_scattered(coords, 2, (1, 8, 8), (1, 4, 4))


@native
def test_opcheck(device, generator):
    coords = random_voxels([200, 0, 3], (2, 40, 40), generator).to(device)
    for shift in (False, True):
        torch.library.opcheck(torch.ops.pointformer.scattered_window_keys, (coords, [2, 40, 40], [2, 12, 12], shift))
    empty = torch.zeros(0, 4, dtype=torch.int32, device=device)
    torch.library.opcheck(torch.ops.pointformer.scattered_window_keys, (empty, [1, 8, 8], [1, 4, 4], True))
    keys = scattered_window_keys(coords, (2, 40, 40), (2, 12, 12))
    torch.library.opcheck(torch.ops.pointformer.sort_window_keys, (keys, 3 * 5 * 5))
    torch.library.opcheck(torch.ops.pointformer.sort_window_keys, (keys[:0], 1))
