"""FlatFormer's flattened windows: hand-checked orders, FlatFormer's own key formula, the exact
batch-major composite, partition properties, edge cases and validation."""

from __future__ import annotations

import pytest
import torch

from pointformer.ops import _library
from pointformer.ops.grouping import partition_flattened, partition_from_sorted
from pointformer.ops.grouping.flattened import flattened_window_keys, flattened_window_keys_reference

AXES_SHIFTS = [("x", False), ("x", True), ("y", False), ("y", True)]

# Position of every cell of an 8x8 grid (row = y, column = x) in the order, with 4x4 windows.
# "x": bands of window rows, windows serpentine along x (left to right in even bands, right to
# left in odd ones); inside a window, columns left to right with a serpentine y, the whole window
# reversed in odd bands. "y": the same with x and y swapped. Shifted: (y, x) + (2, 2).
EXPECTED_RANKS = {
    ("x", False): [
        [ 0,  7,  8, 15, 16, 23, 24, 31],
        [ 1,  6,  9, 14, 17, 22, 25, 30],
        [ 2,  5, 10, 13, 18, 21, 26, 29],
        [ 3,  4, 11, 12, 19, 20, 27, 28],
        [63, 56, 55, 48, 47, 40, 39, 32],
        [62, 57, 54, 49, 46, 41, 38, 33],
        [61, 58, 53, 50, 45, 42, 37, 34],
        [60, 59, 52, 51, 44, 43, 36, 35],
    ],
    ("x", True): [
        [ 0,  3,  4,  7,  8, 11, 12, 15],
        [ 1,  2,  5,  6,  9, 10, 13, 14],
        [47, 40, 39, 32, 31, 24, 23, 16],
        [46, 41, 38, 33, 30, 25, 22, 17],
        [45, 42, 37, 34, 29, 26, 21, 18],
        [44, 43, 36, 35, 28, 27, 20, 19],
        [48, 51, 52, 55, 56, 59, 60, 63],
        [49, 50, 53, 54, 57, 58, 61, 62],
    ],
    ("y", False): [
        [ 0,  1,  2,  3, 63, 62, 61, 60],
        [ 7,  6,  5,  4, 56, 57, 58, 59],
        [ 8,  9, 10, 11, 55, 54, 53, 52],
        [15, 14, 13, 12, 48, 49, 50, 51],
        [16, 17, 18, 19, 47, 46, 45, 44],
        [23, 22, 21, 20, 40, 41, 42, 43],
        [24, 25, 26, 27, 39, 38, 37, 36],
        [31, 30, 29, 28, 32, 33, 34, 35],
    ],
    ("y", True): [
        [ 0,  1, 47, 46, 45, 44, 48, 49],
        [ 3,  2, 40, 41, 42, 43, 51, 50],
        [ 4,  5, 39, 38, 37, 36, 52, 53],
        [ 7,  6, 32, 33, 34, 35, 55, 54],
        [ 8,  9, 31, 30, 29, 28, 56, 57],
        [11, 10, 24, 25, 26, 27, 59, 58],
        [12, 13, 23, 22, 21, 20, 60, 61],
        [15, 14, 16, 17, 18, 19, 63, 62],
    ],
}  # fmt: skip


def full_grid(y_size: int, x_size: int, batch: int = 0) -> torch.Tensor:
    """int32 coords of every cell of a (1, Y, X) grid, row-major: voxel ``y * X + x``."""
    y, x = torch.meshgrid(torch.arange(y_size), torch.arange(x_size), indexing="ij")
    b = torch.full_like(y, batch)
    return torch.stack([b, torch.zeros_like(y), y, x], -1).reshape(-1, 4).int()


def random_batch(counts, shape, generator) -> torch.Tensor:
    """int32 coords with ``counts[b]`` distinct cells in sample ``b``, samples interleaved."""
    z_size, y_size, x_size = shape
    parts = []
    for b, n in enumerate(counts):
        cells = torch.randperm(z_size * y_size * x_size, generator=generator)[:n]
        z, y, x = cells // (y_size * x_size), (cells // x_size) % y_size, cells % x_size
        parts.append(torch.stack([torch.full_like(cells, b), z, y, x], 1))
    coords = torch.cat(parts) if parts else torch.zeros(0, 4, dtype=torch.int64)
    return coords[torch.randperm(coords.shape[0], generator=generator)].int()


def official_keys(coords: torch.Tensor, sparse_shape, window_shape, axis: str, shift: bool) -> torch.Tensor:
    """FlatFormer's keys in its own notation (reference notes §1.1), batch term ``b * n * m * 10``."""
    n, m = sparse_shape[2], sparse_shape[1]  # x and y extents
    n2, m2 = window_shape[2], window_shape[1]
    n1, m1 = -(-n // n2) + 1, -(-m // m2) + 1
    b, y, x = (coords[:, i].long() for i in (0, 2, 3))
    if shift:
        x, y = x + n2 // 2, y + m2 // 2
    x1, y1, x2, y2 = x // n2, y // m2, x % n2, y % m2
    big_n2, big_m2, big_n1, big_m1 = 2 * n2, 2 * m2, 2 * n1, 2 * m1

    def s(v):
        return torch.where(v % 2 == 0, 1, -1)

    if axis == "x":
        v = (big_n1 * y1 + s(y1) * x1) * big_n2 * big_m2 + s(y1) * (big_m2 * x2 + s(x2) * y2)
    else:
        v = (big_m1 * x1 + s(x1) * y1) * big_m2 * big_n2 + s(x1) * (big_n2 * y2 + s(y2) * x2)
    return v + b * n * m * 10


def check_partition(p, coords: torch.Tensor, batch_size: int, group_size: int) -> None:
    n = coords.shape[0]
    sample = coords[:, 0].long().cpu()
    perm, index, mask = p.permutation.cpu(), p.group_index.cpu(), p.key_mask.cpu()
    assert torch.equal(torch.sort(perm).values, torch.arange(n)), "every voxel exactly once"
    assert torch.all(sample[perm][1:] >= sample[perm][:-1]), "batch-major"
    assert index.shape == (p.num_groups, group_size)
    assert torch.all(sample[index] == p.group_sample.cpu()[:, None]), "groups never mix samples"
    counts = torch.bincount(sample, minlength=batch_size)
    assert torch.equal(torch.bincount(p.group_sample.cpu(), minlength=batch_size), -(-counts // group_size))
    assert int(mask.sum()) == p.num_groups * group_size - n, "exactly the padded slots are masked"
    assert torch.equal(index[~mask], perm), "real slots hold the sorted voxels in order"
    assert torch.equal(index.reshape(-1)[p.slot_of_voxel.cpu()], torch.arange(n))


@pytest.mark.parametrize("axis,shift", AXES_SHIFTS)
def test_hand_checked_orders_on_8x8(device, axis, shift):
    coords = full_grid(8, 8).to(device)
    p = partition_flattened(coords, 1, (1, 8, 8), (1, 4, 4), 64, axis, shift)
    rank = torch.empty(64, dtype=torch.int64)
    rank[p.permutation.cpu()] = torch.arange(64)
    assert rank.reshape(8, 8).tolist() == EXPECTED_RANKS[axis, shift]
    check_partition(p, coords, 1, 64)


@pytest.mark.parametrize("axis,shift", AXES_SHIFTS)
def test_serpentine_traversal(device, axis, shift):
    """§1.1 in words, on the 8x8 grid with 4x4 windows: bands of windows perpendicular to the
    axis are major; windows go along the axis, reversing direction in odd bands; inside a window
    the lines perpendicular to the axis are major, serpentine, reversed in odd bands; with even
    windows every step inside a band moves to a 4-neighbour."""
    coords = full_grid(8, 8).to(device)
    perm = partition_flattened(coords, 1, (1, 8, 8), (1, 4, 4), 16, axis, shift).permutation.cpu()
    y, x = coords[perm, 2].long().cpu(), coords[perm, 3].long().cpu()
    along, across = (x, y) if axis == "x" else (y, x)  # the sequence advances along `along`
    offset = 2 if shift else 0
    band, window, inner = (across + offset) // 4, (along + offset) // 4, (along + offset) % 4
    assert torch.all(band[1:] >= band[:-1]), "bands are major"
    for b in band.unique().tolist():
        sel = band == b
        step = 1 if b % 2 == 0 else -1
        w, i, a = window[sel], inner[sel], across[sel]
        assert torch.all((w[1:] - w[:-1]) * step >= 0), "windows go along the axis, serpentine"
        same_window = w[1:] == w[:-1]
        assert torch.all(((i[1:] - i[:-1]) * step >= 0)[same_window]), "in-window lines in order"
        steps = (w * 4 + i)[1:] - (w * 4 + i)[:-1], a[1:] - a[:-1]
        assert torch.all(steps[0].abs() + steps[1].abs() == 1), "consecutive tokens are 4-neighbours"
        # Inside a line, the perpendicular coordinate runs up and down alternately.
        line = w * 4 + i
        for value in line.unique().tolist():
            run = a[line == value]
            if run.numel() > 1:
                assert torch.all(run[1:] - run[:-1] == run[1] - run[0])


@pytest.mark.parametrize("axis,shift", AXES_SHIFTS)
@pytest.mark.parametrize(
    "shape,window", [((1, 40, 40), (1, 4, 4)), ((1, 37, 29), (1, 5, 3)), ((1, 200, 200), (1, 13, 13))]
)
def test_same_order_as_flatformer_keys(device, generator, axis, shift, shape, window):
    coords = random_batch([500, 0, 3, 1, 700], shape, generator)
    official = official_keys(coords, shape, window, axis, shift)
    # The official batch term is exact on these sizes: its keys of one sample stay below the next.
    assert int((official - coords[:, 0].long() * shape[1] * shape[2] * 10).max()) < shape[1] * shape[2] * 10
    expected = torch.sort(official, stable=True).indices
    p = partition_flattened(coords.to(device), 5, shape, window, 144, axis, shift)
    assert torch.equal(p.permutation.cpu(), expected)


def test_batch_major_where_flatformer_keys_overflow(device):
    # One 8x8 window over an 8x8 grid: FlatFormer's keys reach 8 * (8 + 8) * (8 + 8) > 10 * 8 * 8,
    # so its sample 0 sorts partly after sample 1. Ours stay batch-major with the same order
    # inside each sample.
    coords = torch.cat([full_grid(8, 8, 0), full_grid(8, 8, 1)])
    official = official_keys(coords, (1, 8, 8), (1, 8, 8), "x", True)
    assert int(official[:64].max()) > int(official[64:].min())
    keys = flattened_window_keys(coords.to(device), (1, 8, 8), (1, 8, 8), "x", True).cpu()
    assert int(keys[:64].max()) < int(keys[64:].min())
    for b in (0, 1):
        sample = slice(64 * b, 64 * (b + 1))
        assert torch.equal(torch.argsort(keys[sample]), torch.argsort(official[sample]))


@pytest.mark.parametrize("axis,shift", AXES_SHIFTS)
def test_partition_properties(device, generator, axis, shift):
    # Sample 1 is empty (in the middle), sample 2 smaller than a group, sample 3 a single voxel.
    counts = [300, 0, 50, 1, 145]
    coords = random_batch(counts, (1, 64, 64), generator).to(device)
    p = partition_flattened(coords, 6, (1, 64, 64), (1, 13, 13), 144, axis, shift)
    check_partition(p, coords, 6, 144)
    assert p.group_sample.tolist() == [0, 0, 0, 2, 3, 4, 4]


def test_keys_are_unique_per_cell_and_bounded(device):
    shape, window = (1, 30, 23), (1, 7, 4)
    coords = torch.cat([full_grid(30, 23, 0), full_grid(30, 23, 2)]).to(device)
    span = 8 * (-(-23 // 4) + 1) * (-(-30 // 7) + 1) * 4 * 7
    for axis, shift in AXES_SHIFTS:
        keys = flattened_window_keys(coords, shape, window, axis, shift).cpu()
        assert keys.unique().numel() == keys.numel()
        sample = coords[:, 0].long().cpu()
        assert torch.all(keys >= sample * span) and torch.all(keys < (sample + 1) * span)


def test_duplicate_coords_keep_input_order(device):
    coords = torch.tensor([[0, 0, 5, 5], [0, 0, 1, 1], [0, 0, 5, 5], [0, 0, 5, 5]], dtype=torch.int32)
    p = partition_flattened(coords.to(device), 1, (1, 8, 8), (1, 4, 4), 4)
    assert p.permutation.tolist() == [1, 0, 2, 3]


def test_z_is_the_least_significant_key(device, generator):
    pillars = random_batch([40, 25], (1, 16, 16), generator)
    columns = pillars.repeat_interleave(3, 0)
    columns[:, 1] = torch.tensor([2, 0, 1]).repeat(pillars.shape[0])
    order_2d = partition_flattened(pillars.to(device), 2, (1, 16, 16), (1, 4, 4), 8, "y", True).permutation
    p = partition_flattened(columns.to(device), 2, (3, 16, 16), (1, 4, 4), 8, "y", True)
    expected = (order_2d.cpu()[:, None] * 3 + torch.tensor([1, 2, 0])).reshape(-1)
    assert torch.equal(p.permutation.cpu(), expected)


def test_edge_cases(device):
    empty = torch.zeros(0, 4, dtype=torch.int32, device=device)
    p = partition_flattened(empty, 2, (1, 8, 8), (1, 4, 4), 4)
    assert p.num_voxels == 0 and p.num_groups == 0 and p.group_index.shape == (0, 4)
    one = torch.tensor([[1, 0, 7, 3]], dtype=torch.int32, device=device)
    p = partition_flattened(one, 3, (1, 8, 8), (1, 4, 4), 4, "y", True)
    assert p.permutation.tolist() == [0] and p.group_index.tolist() == [[0, 0, 0, 0]]
    assert p.key_mask.tolist() == [[False, True, True, True]] and p.group_sample.tolist() == [1]
    # A window larger than the grid is well defined: one window (two with the shift).
    coords = full_grid(5, 6).to(device)
    for axis, shift in AXES_SHIFTS:
        check_partition(partition_flattened(coords, 1, (1, 5, 6), (1, 13, 13), 7, axis, shift), coords, 1, 7)


def test_reference_marks_voxels_outside_the_grid():
    coords = torch.tensor([[0, 0, 8, 0], [0, 0, 0, -1], [-1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 7, 7]], dtype=torch.int32)
    keys = flattened_window_keys_reference(coords, (1, 8, 8), (1, 4, 4), "x", False)
    assert keys[:4].tolist() == [-1] * 4 and int(keys[4]) >= 0


def test_bad_arguments_name_the_problem():
    coords = full_grid(8, 8)
    args = dict(batch_size=1, sparse_shape=(1, 8, 8), window_shape=(1, 4, 4), group_size=16)
    cases = [
        (dict(axis="z"), "axis must be 'x' or 'y'"),
        (dict(group_size=0), "group_size must be >= 1"),
        (dict(batch_size=0), "batch_size must be >= 1"),
        (dict(window_shape=(4, 4, 1)), r"window_shape\[0\] \(wz\) must be 1"),
        (dict(window_shape=(1, 0, 4)), "window_shape must be 3 entries"),
        (dict(window_shape=(1, 4)), "window_shape must be 3 entries"),
        (dict(sparse_shape=(8, 8)), "sparse_shape must be 3 entries"),
        (dict(sparse_shape=(1, 8, 4)), "coords .* must lie in"),
        (dict(sparse_shape=(1, 2**31 - 1, 2**31 - 1), batch_size=2**20), "overflows int64"),
    ]
    for override, message in cases:
        with pytest.raises(ValueError, match=message):
            partition_flattened(coords, **{**args, **override})
    for bad in (coords.long(), coords[:, :3], coords.float()):
        with pytest.raises(ValueError, match=r"int32 tensor of shape \(N, 4\)"):
            partition_flattened(bad, **args)
    with pytest.raises(ValueError, match="must lie in"):
        partition_flattened(full_grid(8, 8, batch=1), **args)


# --- native kernels ------------------------------------------------------------------------------

native = pytest.mark.skipif(not _library.NATIVE, reason="pointformer._C is not built")


@native
@pytest.mark.parametrize("axis,shift", AXES_SHIFTS)
@pytest.mark.parametrize(
    "shape,window,counts",
    [
        ((1, 468, 468), (1, 13, 13), [3000, 0, 1, 2, 5000]),  # Waymo's setting, tiny and empty samples
        ((1, 37, 29), (1, 5, 3), [400, 1, 0]),
        ((4, 50, 70), (1, 9, 6), [2000, 30]),
        ((1, 5, 6), (1, 13, 13), [30, 0]),  # window larger than the grid
        ((1, 8, 8), (1, 4, 4), []),  # empty input
    ],
)
def test_native_matches_reference(device, generator, axis, shift, shape, window, counts):
    coords = random_batch(counts, shape, generator)
    batch_size = max(len(counts), 1)
    keys = torch.ops.pointformer.flattened_window_keys(coords.to(device), list(shape), list(window), axis, shift)
    expected = flattened_window_keys_reference(coords, shape, window, axis, shift)
    assert keys.dtype == torch.int64 and keys.device.type == device.type
    assert torch.equal(keys.cpu(), expected)
    p = partition_flattened(coords.to(device), batch_size, shape, window, 144, axis, shift)
    ref_perm = torch.sort(expected, stable=True).indices
    ref = partition_from_sorted(ref_perm, coords[:, 0].long(), batch_size, 144)
    for name in ("permutation", "offsets", "group_sample", "group_index", "key_mask", "slot_of_voxel"):
        assert torch.equal(getattr(p, name).cpu(), getattr(ref, name)), name


@native
def test_native_marks_voxels_outside_the_grid(device):
    coords = torch.tensor(
        [[0, 0, 8, 0], [0, 0, 0, -1], [-1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 7, 7], [2**31 - 1, 0, 1, 1]],
        dtype=torch.int32,
    )
    shape, window = (1, 8, 8), (1, 4, 4)
    for axis, shift in AXES_SHIFTS:
        keys = torch.ops.pointformer.flattened_window_keys(coords.to(device), list(shape), list(window), axis, shift)
        assert torch.equal(keys.cpu(), flattened_window_keys_reference(coords, shape, window, axis, shift))
        assert keys[:4].tolist() == [-1] * 4 and int(keys[4]) >= 0 and int(keys[5]) > 0


@native
def test_native_checks_its_arguments(device):
    op = torch.ops.pointformer.flattened_window_keys
    coords = full_grid(4, 4).to(device)
    cases = [
        ((coords.long(), [1, 4, 4], [1, 2, 2], "x", False), "int32 tensor of shape"),
        ((coords, [1, 4, 4], [1, 2, 2], "z", False), "axis must be"),
        ((coords, [1, 4, 4], [2, 2, 2], "x", False), "wz"),
        ((coords, [1, 4], [1, 2, 2], "x", False), "3 entries"),
        ((coords, [1, 0, 4], [1, 2, 2], "x", False), "sparse_shape entries"),
        ((coords, [2**31 - 1] * 3, [1, 1, 1], "x", False), "overflows int64"),
    ]
    for args, message in cases:
        with pytest.raises(RuntimeError, match=message):
            op(*args)


@native
def test_opcheck(device, generator):
    coords = random_batch([200, 0, 3], (2, 40, 40), generator).to(device)
    for axis, shift in AXES_SHIFTS:
        args = (coords, [2, 40, 40], [1, 13, 13], axis, shift)
        torch.library.opcheck(torch.ops.pointformer.flattened_window_keys, args)
    empty = torch.zeros(0, 4, dtype=torch.int32, device=device)
    torch.library.opcheck(torch.ops.pointformer.flattened_window_keys, (empty, [1, 8, 8], [1, 4, 4], "y", True))
