"""partition_serialized and serialization_codes: PTv3 curves and patches, native against reference."""

from __future__ import annotations

import itertools

import pytest
import torch

from pointformer.ops.grouping import partition_serialized, serialization_codes
from pointformer.ops.grouping.serialized import ORDERS, serialization_codes_reference


def random_voxels(counts: list[int], extent: int, generator: torch.Generator) -> torch.Tensor:
    """Distinct voxels per sample inside ``[0, extent)^3``, shuffled across the batch."""
    parts = []
    for b, n in enumerate(counts):
        flat = torch.randperm(extent**3, generator=generator)[:n]
        z, y, x = flat // extent**2, (flat // extent) % extent, flat % extent
        parts.append(torch.stack([torch.full_like(flat, b), z, y, x], dim=1))
    coords = torch.cat(parts)
    return coords[torch.randperm(coords.shape[0], generator=generator)].to(torch.int32)


def full_cube(depth: int) -> torch.Tensor:
    side = torch.arange(1 << depth)
    z, y, x = torch.meshgrid(side, side, side, indexing="ij")
    return torch.stack([torch.zeros_like(x), z, y, x], dim=-1).reshape(-1, 4).to(torch.int32)


def xyz(coords: torch.Tensor) -> list[tuple[int, int, int]]:
    return [(x, y, z) for _, z, y, x in coords.tolist()]


# --- codes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("counts", [[500, 0, 1, 3, 2000], [1], [0, 4]])
def test_codes_match_reference(device, generator, order, counts):
    # Any coordinates up to 2^15 (duplicates allowed): codes need not be distinct.
    batch = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    extent = torch.randint(1, 1 << 15, (1,), generator=generator).item()
    spatial = torch.randint(0, extent, (batch.shape[0], 3), generator=generator)
    coords = torch.cat([batch[:, None], spatial], dim=1).to(torch.int32)
    codes = serialization_codes(coords.to(device), order)
    depth = int(coords[:, 1:].max()).bit_length()
    assert codes.dtype == torch.int64 and codes.shape == (coords.shape[0],)
    assert torch.equal(codes.cpu(), serialization_codes_reference(coords, order, depth))
    for d in (depth, 16):  # a given depth, up to the largest
        assert torch.equal(
            serialization_codes(coords.to(device), order, d).cpu(), serialization_codes_reference(coords, order, d)
        )


def test_z_order_by_hand(device):
    coords = torch.tensor([[0, 0, 0, 1], [0, 0, 1, 0], [0, 1, 0, 0], [0, 6, 5, 3], [2, 6, 5, 3]], dtype=torch.int32)
    # x = 3 = 0b011, y = 5 = 0b101, z = 6 = 0b110: bit 0 -> 0b110, bit 1 -> 0b101 << 3, bit 2 -> 0b011 << 6.
    assert 0b011_101_110 == 238
    codes = serialization_codes(coords.to(device), "z", depth=3).tolist()
    assert codes == [4, 2, 1, 238, 238 | 2 << 9]
    assert serialization_codes(coords.to(device), "z-trans", depth=3).tolist()[:3] == [2, 4, 1]


def test_hilbert_depth_one_by_hand(device):
    # One level of Skilling's transform is the Gray code: code bits (x, x^y, x^y^z).
    codes = serialization_codes(full_cube(1).to(device), "hilbert").cpu()
    cells = full_cube(1)[torch.argsort(codes)]
    assert xyz(cells) == [(0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 1, 0), (1, 1, 0), (1, 1, 1), (1, 0, 1), (1, 0, 0)]


@pytest.mark.parametrize("native", [True, False], ids=["native", "reference"])
@pytest.mark.parametrize("order", ["hilbert", "hilbert-trans"])
@pytest.mark.parametrize("depth", [2, 3])
def test_hilbert_visits_face_neighbours(device, order, depth, native):
    cube = full_cube(depth)
    if native:
        codes = torch.ops.pointformer.serialization_codes(cube.to(device), depth, order).cpu()
    else:
        codes = serialization_codes_reference(cube, order, depth)
    assert torch.equal(torch.sort(codes).values, torch.arange(8**depth))  # a bijection onto [0, 8^d)
    path = cube[torch.argsort(codes)].long()
    steps = (path[1:, 1:] - path[:-1, 1:]).abs().sum(dim=1)
    assert torch.all(steps == 1)
    assert path[0].tolist() == [0, 0, 0, 0]


def test_z_order_is_the_morton_bijection(device):
    cube = full_cube(3)
    codes = serialization_codes(cube.to(device), "z").cpu()
    assert torch.equal(torch.sort(codes).values, torch.arange(512))
    # Within each 2x2x2 block, the order is (z, y, x) fastest-last: x is the top bit.
    first = xyz(cube[torch.argsort(codes)][:8])
    assert first == [(x, y, z) for x, y, z in itertools.product((0, 1), repeat=3)]


@pytest.mark.parametrize("base", ["z", "hilbert"])
def test_trans_is_the_base_order_of_swapped_coordinates(device, generator, base):
    coords = random_voxels([200, 50], 64, generator).to(device)
    swapped = coords[:, [0, 1, 3, 2]]
    assert torch.equal(serialization_codes(coords, base + "-trans", 6), serialization_codes(swapped, base, 6))


def test_depth_and_overflow():
    coords = torch.tensor([[0, 0, 0, 5], [1, 0, 0, 0]], dtype=torch.int32)
    # Default depth is the bit length of the largest coordinate (5 -> 3 bits): batch starts at bit 9.
    assert serialization_codes(coords, "z").tolist() == [4 | 1 << 8, 1 << 9]  # x bits 0 and 2 -> code bits 2 and 8
    with pytest.raises(ValueError, match="does not fit in depth"):
        serialization_codes(coords, "z", depth=2)
    with pytest.raises(ValueError, match="depth must be in"):
        serialization_codes(torch.tensor([[0, 0, 0, 1 << 16]], dtype=torch.int32), "z")
    big = torch.tensor([[0, 0, 0, (1 << 16) - 1]], dtype=torch.int32)
    assert serialization_codes(big, "hilbert", batch_size=1 << 15).shape == (1,)  # 48 + 15 bits
    with pytest.raises(ValueError, match="63 bits"):
        serialization_codes(big, "z", batch_size=(1 << 15) + 1)
    with pytest.raises(ValueError, match="63 bits"):
        partition_serialized(big, (1 << 15) + 1)
    with pytest.raises(ValueError, match="non-negative"):
        serialization_codes(torch.tensor([[0, -1, 0, 0]], dtype=torch.int32), "z")
    with pytest.raises(ValueError, match="order must be"):
        serialization_codes(coords, "peano")
    with pytest.raises(ValueError, match="batch index"):
        partition_serialized(coords, 1)


@pytest.mark.parametrize("order", ORDERS)
def test_native_op_matches_reference_at_every_depth(device, generator, order):
    # The op itself: the low `depth` bits of each coordinate, batch on top, for every depth.
    coords = torch.randint(0, 1 << 16, (3000, 4), generator=generator, dtype=torch.int32)
    coords[:, 0] = torch.randint(0, 4, (3000,), generator=generator)
    for depth in range(17):
        got = torch.ops.pointformer.serialization_codes(coords.to(device), depth, order)
        assert torch.equal(got.cpu(), serialization_codes_reference(coords, order, depth)), depth


def test_opcheck(device, generator):
    coords = torch.randint(0, 200, (500, 4), generator=generator, dtype=torch.int32).to(device)
    for order in ORDERS:
        torch.library.opcheck(torch.ops.pointformer.serialization_codes, (coords, 8, order))
    torch.library.opcheck(torch.ops.pointformer.serialization_codes, (coords[:0], 0, "hilbert"))
    with pytest.raises(RuntimeError, match="order must be"):
        torch.ops.pointformer.serialization_codes(coords, 8, "peano")
    with pytest.raises(RuntimeError, match="depth must be"):
        torch.ops.pointformer.serialization_codes(coords, 17, "z")
    with pytest.raises(RuntimeError, match="int32"):
        torch.ops.pointformer.serialization_codes(coords.long(), 8, "z")


def test_compile(device, generator):
    coords = random_voxels([100, 20], 32, generator).to(device)
    compiled = torch.compile(lambda c: torch.ops.pointformer.serialization_codes(c, 5, "hilbert"), fullgraph=True)
    assert torch.equal(compiled(coords), serialization_codes(coords, "hilbert", 5))


# --- patches -----------------------------------------------------------------------------------


def check_partition(p, coords: torch.Tensor, codes: torch.Tensor, batch_size: int, patch_size: int) -> None:
    coords, codes = coords.cpu(), codes.cpu()
    perm, offsets, sample = p.permutation.cpu(), p.offsets.cpu(), p.group_sample.cpu()
    n = coords.shape[0]
    assert torch.equal(torch.sort(perm).values, torch.arange(n))  # every voxel exactly once
    ordered_sample = coords[perm, 0].long()
    assert torch.all(ordered_sample[1:] >= ordered_sample[:-1])  # batch-major
    assert torch.all(codes[perm][1:] >= codes[perm][:-1])  # along the curve
    counts = torch.bincount(coords[:, 0].long(), minlength=batch_size)
    groups = (counts + patch_size - 1) // patch_size
    assert torch.equal(sample, torch.repeat_interleave(torch.arange(batch_size), groups))
    lengths = p.group_lengths.cpu()
    assert torch.all((lengths >= 1) & (lengths <= patch_size))
    group_of_position = torch.repeat_interleave(torch.arange(p.num_groups), lengths)
    assert torch.equal(sample[group_of_position], ordered_sample)  # patches never mix samples
    # Padded view: slots hold voxels of the group's sample; real slots are the group's voxels.
    index, mask = p.group_index.cpu(), p.key_mask.cpu()
    assert index.shape == (p.num_groups, patch_size)
    assert torch.all(coords[index, 0].long() == sample[:, None])
    for g in range(p.num_groups):
        real = index[g][~mask[g]]
        assert torch.equal(real, perm[offsets[g] : offsets[g + 1]])
        assert int(mask[g].sum()) == patch_size - int(lengths[g])
    assert torch.equal(index.reshape(-1)[p.slot_of_voxel.cpu()], torch.arange(n))


@pytest.mark.parametrize("order", ORDERS)
def test_patches_on_random_batches(device, generator, order):
    batch_size, patch_size = 5, 64
    coords = random_voxels([300, 0, 1, 40, 128], 100, generator).to(device)
    p = partition_serialized(coords, batch_size, order, patch_size)
    check_partition(p, coords, serialization_codes(coords, order), batch_size, patch_size)
    # Sample 0: 300 = 4 full patches and 44, padded by the voxels 64 positions earlier (PTv3).
    lengths = p.group_lengths.cpu().tolist()
    assert lengths == [64, 64, 64, 64, 44, 1, 40, 64, 64]
    last = p.group_index[4].cpu()
    assert torch.equal(last[44:], p.group_index[3].cpu()[44:])
    assert p.key_mask[4].cpu().tolist() == [False] * 44 + [True] * 20
    # The one-voxel sample and the 40-voxel sample are one shorter group each.
    assert p.group_index[5].cpu().tolist() == [int(p.permutation[300])] * 64
    assert int(p.key_mask[6].sum()) == 24


def test_one_group_per_sample_and_edge_cases(device, generator):
    coords = random_voxels([30, 0, 5], 16, generator).to(device)
    p = partition_serialized(coords, 3, "hilbert", patch_size=None)
    assert p.group_index is None and p.offsets.tolist() == [0, 30, 35] and p.group_sample.tolist() == [0, 2]
    empty = partition_serialized(torch.zeros(0, 4, dtype=torch.int32, device=device), 2, "z", 8)
    assert empty.num_groups == 0 and empty.offsets.tolist() == [0] and empty.group_index.shape == (0, 8)
    assert serialization_codes(torch.zeros(0, 4, dtype=torch.int32, device=device), "hilbert").shape == (0,)
    one = partition_serialized(torch.tensor([[1, 3, 2, 1]], dtype=torch.int32, device=device), 2, "z-trans", 4)
    assert one.permutation.tolist() == [0] and one.offsets.tolist() == [0, 1] and one.group_sample.tolist() == [1]
    assert one.group_index.tolist() == [[0, 0, 0, 0]] and one.key_mask.tolist() == [[False, True, True, True]]
    with pytest.raises(ValueError, match="patch_size"):
        partition_serialized(coords, 3, "z", 0)


def test_equal_codes_keep_index_order(device):
    coords = torch.tensor([[0, 1, 1, 1], [0, 0, 0, 0], [0, 1, 1, 1], [0, 1, 1, 1]], dtype=torch.int32)
    p = partition_serialized(coords.to(device), 1, "hilbert", 2)
    assert p.permutation.tolist() == [1, 0, 2, 3]
