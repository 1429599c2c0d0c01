"""DSVT rotated sets and DSVT-V pooling map: hand cases, properties, an independent brute force,
native kernels against the reference, opcheck."""

from __future__ import annotations

import math

import pytest
import torch

from pointformer.ops import _library, reference_only
from pointformer.ops.grouping import (
    dsvt_pooling_map,
    dsvt_window_configs,
    partition_rotated_sets,
    windows_per_axis,
)
from pointformer.ops.grouping.rotated_sets import (
    rotated_set_index_reference,
    rotated_set_keys,
    rotated_set_order_reference,
)
from pointformer.structures.partition import Partition

PILLARS = dict(sparse_shape=(1, 64, 64), window_shape=(1, 12, 12), set_size=36)
PILLARS_SHIFTED = dict(sparse_shape=(1, 64, 64), window_shape=(1, 24, 24), set_size=36, shift=(0, 6, 6))
VOXELS = dict(sparse_shape=(16, 40, 40), window_shape=(16, 12, 12), set_size=48)
VOXELS_SHIFTED = dict(sparse_shape=(16, 40, 40), window_shape=(4, 24, 24), set_size=48, shift=(2, 6, 6))
SMALL_SETS = dict(sparse_shape=(3, 40, 40), window_shape=(2, 5, 5), set_size=4, shift=(1, 2, 2))
CONFIGS = {
    "pillars": PILLARS,
    "pillars_shifted": PILLARS_SHIFTED,
    "voxels": VOXELS,
    "voxels_shifted": VOXELS_SHIFTED,
    "small_sets": SMALL_SETS,
}


def random_coords(counts: list[int], sparse_shape, generator: torch.Generator, clustered: bool = True) -> torch.Tensor:
    """Unique ``(b, z, y, x)`` int32 coords, ``counts[b]`` voxels in sample ``b``, in random order.
    Clustered samples leave windows of very different occupancy (dense, sparse, empty)."""
    cells = math.prod(sparse_shape)
    rows = []
    for b, n in enumerate(counts):
        if n == 0:
            continue
        if clustered:
            weight = torch.rand(cells, generator=generator) ** 8
            flat = torch.multinomial(weight, n, replacement=False, generator=generator)
        else:
            flat = torch.randperm(cells, generator=generator)[:n]
        z, rest = flat // (sparse_shape[1] * sparse_shape[2]), flat % (sparse_shape[1] * sparse_shape[2])
        rows.append(torch.stack([torch.full_like(flat, b), z, rest // sparse_shape[2], rest % sparse_shape[2]], 1))
    coords = torch.cat(rows) if rows else torch.zeros(0, 4, dtype=torch.int64)
    return coords[torch.randperm(coords.shape[0], generator=generator)].to(torch.int32)


def brute_force(coords: torch.Tensor, sparse_shape, window_shape, set_size, shift=(0, 0, 0)):
    """The official algorithm written out with Python loops, independently of the module."""
    (wz, wy, wx), (Z, _, _) = window_shape, sparse_shape
    sz, sy, sx = shift
    if Z == wz:
        sz = 0
    nz, ny, nx = windows_per_axis(sparse_shape, window_shape)
    windows: dict[int, list[tuple[int, tuple, tuple]]] = {}
    for v, (b, z, y, x) in enumerate(coords.tolist()):
        zz, yy, xx = z + sz, y + sy, x + sx
        wid = b * nz * ny * nx + (xx // wx) * ny * nz + (yy // wy) * nz + zz // wz
        iz, iy, ix = zz % wz, yy % wy, xx % wx
        windows.setdefault(wid, []).append((v, (iy, ix, iz), (ix, iy, iz)))
    index = [[], []]
    set_window = []
    for w, wid in enumerate(sorted(windows)):
        members = windows[wid]
        n = len(members)
        num_sets = -(-n // set_size)
        orders = [[m[0] for m in sorted(members, key=lambda m: m[1 + k])] for k in range(2)]
        for i in range(num_sets):
            set_window.append(w)
            for k in range(2):
                ranks = [
                    math.floor(float((i * set_size + j) * n) / float(num_sets * set_size)) for j in range(set_size)
                ]
                index[k].append([orders[k][r] for r in ranks])
    index_t = torch.tensor(index, dtype=torch.int64).reshape(2, -1, set_size)
    mask = torch.zeros_like(index_t, dtype=torch.bool)
    mask[..., 1:] = index_t[..., 1:] == index_t[..., :-1]
    return index_t, mask, torch.tensor(set_window, dtype=torch.int64)


def check_properties(sets, coords: torch.Tensor, config: dict) -> None:
    coords, index, mask = coords.long().cpu(), sets.set_voxel_index.cpu(), sets.key_mask.cpu()
    n, tau = coords.shape[0], config["set_size"]
    assert index.dtype == torch.int64 and mask.dtype == torch.bool and index.shape == (2, sets.num_sets, tau)
    keys, _ = rotated_set_keys(coords, config["sparse_shape"], sets.window_shape, sets.shift)
    volume = math.prod(sets.window_shape)
    window_id = keys[0] // volume
    contiguous = torch.unique(window_id, return_inverse=True)[1]
    counts = torch.bincount(contiguous)
    set_window = sets.set_window.cpu()
    # Sets per window and set order: (window, set index).
    assert torch.equal(torch.bincount(set_window, minlength=counts.shape[0]), (counts + tau - 1) // tau)
    assert torch.all(set_window[1:] >= set_window[:-1])
    for k in range(2):
        idx = index[k]
        # Sets never mix windows or samples, and sit in their own window.
        assert torch.all(contiguous[idx] == set_window[:, None])
        assert torch.all(coords[idx, 0] == sets.set_sample.cpu()[:, None])
        # Every voxel appears; its occurrences are consecutive in flat order.
        flat = idx.reshape(-1)
        occurrences = torch.bincount(flat, minlength=n)
        assert torch.all(occurrences >= 1)
        positions = torch.arange(flat.shape[0])
        first = torch.full((n,), flat.shape[0]).scatter_reduce(0, flat, positions, "amin")
        last = torch.full((n,), -1).scatter_reduce(0, flat, positions, "amax")
        assert torch.equal(last - first + 1, occurrences)
        # Masks exactly at repeats of the previous slot; the first slot never.
        expected = torch.zeros_like(mask[k])
        expected[:, 1:] = idx[:, 1:] == idx[:, :-1]
        assert torch.equal(mask[k], expected)
        # Distinct voxels of a window follow its in-window order.
        distinct = flat[~mask[k].reshape(-1)]
        keep = torch.ones_like(distinct, dtype=torch.bool)
        keep[1:] = distinct[1:] != distinct[:-1]
        distinct = distinct[keep]
        assert torch.all(keys[k][distinct][1:] > keys[k][distinct][:-1])
        # The partition: each voxel's output slot is its first, unmasked, and scatter(gather) is identity.
        p = sets.partitions[k]
        assert torch.equal(p.slot_of_voxel.cpu(), first)
        assert not mask[k].reshape(-1)[first].any()
        features = torch.randn(n, 3, dtype=torch.float64, device=sets.set_voxel_index.device)
        assert torch.equal(p.scatter(p.gather(features)), features)


# --- hand-checked cases -------------------------------------------------------------------------


def test_window_configs():
    assert dsvt_window_configs((1, 12, 12), (1, 2, 2), ((0, 0, 0), (0, 6, 6))) == (
        ((1, 12, 12), (0, 0, 0)),
        ((1, 24, 24), (0, 6, 6)),
    )
    # Official defaults without shifts: the window itself for config 0, half the window for config 1.
    assert dsvt_window_configs((8, 12, 12), (1, 2, 2)) == (((8, 12, 12), (8, 12, 12)), ((8, 24, 24), (4, 12, 12)))


def one_window(n: int, tau: int):
    """``n`` voxels along x in one (1, 1, 16) window, shuffled: y-major rank = x."""
    x = torch.tensor([3, 0, 4, 1, 2, 7, 5, 6][:n])
    coords = torch.stack([torch.zeros_like(x), torch.zeros_like(x), torch.zeros_like(x), x], 1).int()
    sets = partition_rotated_sets(coords, 1, (1, 1, 16), (1, 1, 16), tau)
    voxel_at_rank = torch.argsort(x)
    return sets, voxel_at_rank


def test_five_voxels_in_sets_of_four():
    # S_w = ceil(5 / 4) = 2; slot a = 4i + j takes rank floor(5a / 8): 0 0 1 1 | 2 3 3 4.
    sets, voxel_at_rank = one_window(5, 4)
    ranks = [[0, 0, 1, 1], [2, 3, 3, 4]]
    assert torch.equal(sets.set_voxel_index[0], voxel_at_rank[torch.tensor(ranks)])
    assert torch.equal(sets.set_voxel_index[1], sets.set_voxel_index[0])  # one row: both orders agree
    assert sets.key_mask[0].tolist() == [[False, True, False, True], [False, False, True, False]]
    assert sets.set_window.tolist() == [0, 0] and sets.set_sample.tolist() == [0, 0]


def test_window_smaller_than_a_set():
    # S_w = 1; slot j takes rank floor(3j / 4): 0 0 1 2.
    sets, voxel_at_rank = one_window(3, 4)
    assert torch.equal(sets.set_voxel_index[0], voxel_at_rank[torch.tensor([[0, 0, 1, 2]])])
    assert sets.key_mask[0].tolist() == [[False, True, False, False]]


def test_y_major_and_x_major_orders():
    yx = [(y, x) for y in range(3) for x in range(3)]
    perm = [4, 7, 0, 2, 8, 1, 6, 3, 5]
    coords = torch.tensor([[0, 0, *yx[p]] for p in perm], dtype=torch.int32)
    sets = partition_rotated_sets(coords, 1, (1, 3, 3), (1, 3, 3), 9)
    voxel_of = {tuple(c[2:]): v for v, c in enumerate(coords.tolist())}
    y_major = [voxel_of[(y, x)] for y in range(3) for x in range(3)]
    x_major = [voxel_of[(y, x)] for x in range(3) for y in range(3)]
    assert sets.set_voxel_index[0].tolist() == [y_major]
    assert sets.set_voxel_index[1].tolist() == [x_major]
    assert not sets.key_mask.any()


def test_windows_renumbered_over_two_samples():
    # Grid (1, 8, 8), windows (1, 4, 4): (Wz, Wy, Wx) = (2, 3, 3), 18 window ids per sample;
    # id = b * 18 + win_x * 6 + win_y * 2 + win_z, so windows sort x-major inside a sample.
    coords = torch.tensor(
        [[1, 0, 0, 0], [0, 0, 1, 6], [0, 0, 5, 1], [0, 0, 6, 2], [1, 0, 0, 1]], dtype=torch.int32
    )  # window ids: 18, 6, 2, 2, 18
    sets = partition_rotated_sets(coords, 2, (1, 8, 8), (1, 4, 4), 2)
    assert sets.set_window.tolist() == [0, 1, 2]
    assert sets.set_sample.tolist() == [0, 0, 1]
    assert sets.set_voxel_index[0].tolist() == [[2, 3], [1, 1], [0, 4]]
    assert sets.key_mask[0].tolist() == [[False, False], [False, True], [False, False]]
    check_properties(sets, coords, dict(sparse_shape=(1, 8, 8), set_size=2))


def test_full_height_windows_are_not_shifted_in_z():
    coords = torch.tensor([[0, 31, 0, 0], [0, 0, 0, 0]], dtype=torch.int32)
    sets = partition_rotated_sets(coords, 1, (32, 8, 8), (32, 4, 4), 4, shift=(16, 2, 2))
    assert sets.shift == (0, 2, 2)
    assert sets.num_sets == 1  # both voxels in one window
    assert sets.coords_in_window.tolist() == [[31, 2, 2], [0, 2, 2]]


def test_rejects_bad_arguments():
    coords = torch.zeros(1, 4, dtype=torch.int32)
    with pytest.raises(ValueError, match="set_size"):
        partition_rotated_sets(coords, 1, (1, 8, 8), (1, 4, 4), 0)
    with pytest.raises(ValueError, match="shifts within"):
        partition_rotated_sets(coords, 1, (1, 8, 8), (1, 4, 4), 4, shift=(0, 5, 0))
    with pytest.raises(ValueError, match="integer"):
        partition_rotated_sets(coords.float(), 1, (1, 8, 8), (1, 4, 4), 4)


def test_float64_rank_equals_integer_division():
    # The module docstring's claim, exhaustively for every window size up to 1500 voxels.
    for tau in (4, 36, 48, 90):
        n = torch.arange(1, 1501)
        sets = (n + tau - 1) // tau
        slots = sets * tau
        window = torch.repeat_interleave(torch.arange(n.shape[0]), slots)
        start = torch.cumsum(slots, 0) - slots
        a = (torch.arange(window.shape[0]) - start[window]) * n[window]
        d = slots[window]
        assert torch.equal(torch.floor(a.double() / d.double()).long(), a // d)


# --- properties and the brute force -------------------------------------------------------------


@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_brute_force(name, generator):
    config = CONFIGS[name]
    coords = random_coords([150, 0, 90], config["sparse_shape"], generator)
    sets = partition_rotated_sets(coords, 3, **config)
    index, mask, set_window = brute_force(coords, **config)
    assert torch.equal(sets.set_voxel_index, index)
    assert torch.equal(sets.key_mask, mask)
    assert torch.equal(sets.set_window, set_window)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("counts", [[3000, 1, 0, 1200], [0], [5]], ids=["batch", "empty", "tiny"])
def test_properties(device, generator, name, counts):
    config = CONFIGS[name]
    coords = random_coords(counts, config["sparse_shape"], generator).to(device)
    sets = partition_rotated_sets(coords, len(counts), **config)
    assert sets.set_voxel_index.device == coords.device
    check_properties(sets, coords, config)


# --- closed-form partitions ---------------------------------------------------------------------

PARTITION_FIELDS = ("permutation", "offsets", "group_sample", "group_index", "key_mask", "slot_of_voxel")


@pytest.mark.parametrize("tau", [1, 3, 36, 48])
@pytest.mark.parametrize("name", ["pillars", "pillars_shifted", "voxels", "voxels_shifted"])
@pytest.mark.parametrize("counts", [[2500, 1, 0, 900], [0], [1], [7]], ids=["batch", "empty", "one", "tiny"])
@pytest.mark.parametrize("backend", ["native", "reference"])
def test_partitions_equal_from_padded(device, generator, tau, name, counts, backend):
    # The closed-form views (module docstring, point 6) against Partition.from_padded's scatter + argsort.
    if backend == "native" and not _library.NATIVE:
        pytest.skip("pointformer._C is not built")
    config = {**CONFIGS[name], "set_size": tau}
    coords = random_coords(counts, config["sparse_shape"], generator, clustered=len(counts) > 2).to(device)
    if backend == "reference":
        with reference_only():
            sets = partition_rotated_sets(coords, len(counts), **config)
    else:
        sets = partition_rotated_sets(coords, len(counts), **config)
    n = coords.shape[0]
    for k, got in enumerate(sets.partitions):
        expected = Partition.from_padded(sets.set_voxel_index[k], sets.key_mask[k], sets.set_sample, n)
        for field in PARTITION_FIELDS:
            g, e = getattr(got, field), getattr(expected, field)
            assert g.device == e.device and g.dtype == e.dtype and torch.equal(g, e), field
        assert int(got.offsets[-1]) == n and bool((got.group_lengths >= 1).all())


# --- native kernels ----------------------------------------------------------------------------

needs_native = pytest.mark.skipif(not _library.NATIVE, reason="pointformer._C is not built")


def set_index_inputs(coords: torch.Tensor, config: dict):
    """The native op's inputs, as partition_rotated_sets builds them."""
    shift = config.get("shift", (0, 0, 0))
    if config["sparse_shape"][0] == config["window_shape"][0]:
        shift = (0, *shift[1:])
    keys, _ = rotated_set_keys(coords, config["sparse_shape"], config["window_shape"], shift)
    sorted_keys, order = torch.sort(keys, dim=1, stable=True)
    volume = math.prod(config["window_shape"])
    counts = torch.unique_consecutive(sorted_keys[0] // volume, return_counts=True)[1]
    return order, counts


@needs_native
@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("counts", [[4000, 2, 0, 1500], [0], [1], [0, 37]], ids=["batch", "empty", "one", "late"])
def test_native_matches_reference(device, generator, name, counts):
    config = CONFIGS[name]
    coords = random_coords(counts, config["sparse_shape"], generator, clustered=len(counts) > 2)
    order, window_counts = set_index_inputs(coords, config)
    expected = rotated_set_index_reference(order, window_counts, config["set_size"])
    got = torch.ops.pointformer.dsvt_set_index(order.to(device), window_counts.to(device), config["set_size"])
    for g, e in zip(got, expected, strict=True):
        assert g.device == device and g.dtype == e.dtype
        assert torch.equal(g.cpu(), e)


@needs_native
@pytest.mark.parametrize("tau", [1, 3, 36, 90])
def test_native_matches_reference_on_every_window_size(device, tau):
    # One window of every size 1..300: every (n_w, S_w) pair of the sampling formula.
    counts = torch.arange(1, 301)
    order = torch.stack([torch.randperm(int(counts.sum())), torch.arange(int(counts.sum()))])
    expected = rotated_set_index_reference(order, counts, tau)
    got = torch.ops.pointformer.dsvt_set_index(order.to(device), counts.to(device), tau)
    for g, e in zip(got, expected, strict=True):
        assert torch.equal(g.cpu(), e)


@needs_native
@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("counts", [[4000, 2, 0, 1500], [0], [1], [0, 37]], ids=["batch", "empty", "one", "late"])
def test_native_window_order_matches_reference(device, generator, name, counts):
    config = CONFIGS[name]
    shift = config.get("shift", (0, 0, 0))
    if config["sparse_shape"][0] == config["window_shape"][0]:
        shift = (0, *shift[1:])
    coords = random_coords(counts, config["sparse_shape"], generator, clustered=len(counts) > 2)
    args = (len(counts), config["sparse_shape"], config["window_shape"], shift)
    expected = rotated_set_order_reference(coords, *args)
    got = torch.ops.pointformer.dsvt_window_order(coords.to(device), args[0], *map(list, args[1:]))
    for g, e in zip(got, expected, strict=True):
        assert g.device == device and g.dtype == e.dtype
        assert torch.equal(g.cpu(), e)


@needs_native
def test_native_window_order_rejects_bad_coords():
    coords = torch.tensor([[0, 0, 0, 0], [0, 0, 8, 0]], dtype=torch.int32)
    with pytest.raises(RuntimeError, match="outside"):
        torch.ops.pointformer.dsvt_window_order(coords, 1, [1, 8, 8], [1, 4, 4], [0, 0, 0])
    with pytest.raises(RuntimeError, match="outside"):
        torch.ops.pointformer.dsvt_window_order(coords[:1], 0, [1, 8, 8], [1, 4, 4], [0, 0, 0])
    with pytest.raises(RuntimeError, match="overflow"):
        torch.ops.pointformer.dsvt_window_order(coords, 2**40, [1, 2**20, 2**20], [1, 1, 1], [0, 0, 0])


@needs_native
def test_native_rejects_inconsistent_counts(device):
    order = torch.arange(6, device=device).reshape(1, 6)
    with pytest.raises(RuntimeError, match="add up"):
        torch.ops.pointformer.dsvt_set_index(order, torch.tensor([2, 3], device=device), 4)
    with pytest.raises(RuntimeError, match=">= 1"):
        torch.ops.pointformer.dsvt_set_index(order, torch.tensor([6, 0], device=device), 4)


@needs_native
def test_opcheck(device, generator):
    for config, counts in [(SMALL_SETS, [300, 0, 40]), (PILLARS, [500]), (VOXELS, [0])]:
        order, window_counts = set_index_inputs(random_coords(counts, config["sparse_shape"], generator), config)
        args = (order.to(device), window_counts.to(device), config["set_size"])
        torch.library.opcheck(torch.ops.pointformer.dsvt_set_index, args)
        coords = random_coords(counts, config["sparse_shape"], generator).to(device)
        shift = list(config.get("shift", (0, 0, 0)))
        order_args = (coords, len(counts), list(config["sparse_shape"]), list(config["window_shape"]), shift)
        torch.library.opcheck(torch.ops.pointformer.dsvt_window_order, order_args)


# --- pooling map --------------------------------------------------------------------------------


def test_pooling_map_z_stride():
    coords = torch.tensor([[0, 5, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 3, 0, 0], [0, 6, 1, 0]], dtype=torch.int32)
    m = dsvt_pooling_map(coords, 2, (8, 2, 2), (4, 1, 1))
    assert m.cell_of_voxel.tolist() == [1, 0, 2, 0, 1]
    assert m.slot_of_voxel.tolist() == [1, 1, 0, 3, 2]  # z % 4
    assert m.coords.tolist() == [[0, 0, 0, 0], [0, 1, 1, 0], [1, 0, 0, 0]]
    assert m.coords.dtype == torch.int32
    assert m.spatial_shape == (2, 2, 2) and m.num_slots == 4 and m.num_cells == 3


def test_pooling_map_slot_is_x_major():
    # Official in-cell index: ((x % sx) * sy + y % sy) * sz + z % sz.
    coords = torch.tensor([[0, 1, 0, 1], [0, 0, 1, 0], [0, 2, 3, 4]], dtype=torch.int32)
    m = dsvt_pooling_map(coords, 1, (3, 5, 5), (2, 2, 2))
    assert m.slot_of_voxel.tolist() == [5, 2, 2]
    assert m.cell_of_voxel.tolist() == [0, 0, 1]
    assert m.coords.tolist() == [[0, 0, 0, 0], [0, 1, 1, 2]]
    assert m.spatial_shape == (2, 3, 3)


def test_pooling_map_empty(device):
    m = dsvt_pooling_map(torch.zeros(0, 4, dtype=torch.int32, device=device), 2, (32, 8, 8), (4, 1, 1))
    assert m.num_cells == 0 and m.cell_of_voxel.shape == (0,) and m.coords.shape == (0, 4)
    assert m.spatial_shape == (8, 8, 8)


def test_reference_on_empty_input():
    index, mask, set_window, offsets, slot_of_voxel = rotated_set_index_reference(
        torch.zeros(2, 0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64), 4
    )
    assert index.shape == (2, 0, 4) and mask.shape == (2, 0, 4) and set_window.shape == (0,)
    assert offsets.tolist() == [0] and slot_of_voxel.shape == (2, 0)
