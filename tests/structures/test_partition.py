"""Partition builders: FlatFormer-style equal-size groups (``ops.grouping.partition_from_sorted``) and
padded views from sampled sets (``Partition.from_padded``)."""

import pytest
import torch

from pointformer.ops.grouping import partition_from_sorted
from pointformer.structures import Partition


def check_invariants(p: Partition, sample_of_voxel: torch.Tensor) -> None:
    n = sample_of_voxel.shape[0]
    assert torch.equal(torch.sort(p.permutation).values, torch.arange(n)), "every voxel exactly once"
    assert p.offsets[0] == 0 and p.offsets[-1] == n and torch.all(p.group_lengths >= 0)
    for g in range(p.num_groups):
        members = p.permutation[p.offsets[g] : p.offsets[g + 1]]
        assert torch.all(sample_of_voxel[members] == p.group_sample[g]), "a group never mixes samples"
    if p.group_index is not None:
        assert torch.all(sample_of_voxel[p.group_index] == p.group_sample[:, None]), "padding stays in the sample"
        flat = p.group_index.reshape(-1)
        assert torch.equal(flat[p.slot_of_voxel], torch.arange(n)), "each voxel's output slot holds it"
        assert not p.key_mask.reshape(-1)[p.slot_of_voxel].any(), "output slots are never masked"
        features = torch.randn(n, 3)
        torch.testing.assert_close(p.scatter(p.gather(features)), features)
    features = torch.randn(n, 2)
    torch.testing.assert_close(p.scatter_varlen(p.gather_varlen(features)), features)


def test_flatformer_padding_rule():
    # FlatFormer's example: group 4, samples of 10 and 7 voxels; the last group of sample 0 is
    # [8, 9, 6, 7]: the missing slots repeat the same slots of the previous group.
    sample = torch.tensor([0] * 10 + [1] * 7)
    p = partition_from_sorted(torch.arange(17), sample, 2, 4)
    assert p.group_index.tolist() == [
        [0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 6, 7], [10, 11, 12, 13], [14, 15, 16, 13],
    ]  # fmt: skip
    assert p.key_mask[2].tolist() == [False, False, True, True]
    assert p.group_sample.tolist() == [0, 0, 0, 1, 1]
    assert p.group_lengths.tolist() == [4, 4, 2, 4, 3]
    check_invariants(p, sample)


def test_small_and_empty_samples_stay_in_their_sample():
    # Sample 0 has 2 voxels (fewer than a group), sample 1 none, sample 2 has 5.
    sample = torch.tensor([2, 0, 2, 2, 0, 2, 2])
    permutation = torch.tensor([1, 4, 0, 2, 3, 5, 6])  # sample-major
    p = partition_from_sorted(permutation, sample, 3, 4)
    assert p.group_index.tolist() == [[1, 4, 1, 4], [0, 2, 3, 5], [6, 2, 3, 5]]
    assert p.key_mask.tolist() == [[False, False, True, True], [False] * 4, [False, True, True, True]]
    assert p.group_sample.tolist() == [0, 2, 2]
    check_invariants(p, sample)


def test_one_group_per_sample_without_padded_view():
    sample = torch.tensor([1, 1, 3, 3, 3])
    p = partition_from_sorted(torch.arange(5), sample, 4, None)
    assert p.group_index is None and p.group_size is None
    assert p.offsets.tolist() == [0, 2, 5] and p.group_sample.tolist() == [1, 3]
    with pytest.raises(ValueError, match="variable-length only"):
        p.gather(torch.zeros(5, 2))
    check_invariants(p, sample)


def test_empty_batch():
    p = partition_from_sorted(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), 2, 8)
    assert p.num_groups == 0 and p.group_index.shape == (0, 8) and p.offsets.tolist() == [0]


def test_from_padded_takes_first_occurrence():
    # Sets sampled with repeats (DSVT-style); voxel 2 appears at the end of set 0 and start of set 1.
    group_index = torch.tensor([[0, 0, 1, 2], [2, 3, 3, 4]])
    key_mask = torch.tensor([[False, True, False, False], [False, False, True, False]])
    p = Partition.from_padded(group_index, key_mask, torch.tensor([0, 0]), 5)
    assert p.slot_of_voxel.tolist() == [0, 2, 3, 5, 7]
    assert p.permutation.tolist() == [0, 1, 2, 3, 4] and p.offsets.tolist() == [0, 3, 5]
    check_invariants(p, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="appear in no group"):
        Partition.from_padded(group_index, key_mask, torch.tensor([0, 0]), 6)


def test_random_batches(generator):
    for _ in range(20):
        batch_size = int(torch.randint(1, 5, (1,), generator=generator))
        n = int(torch.randint(0, 60, (1,), generator=generator))
        sample = torch.randint(0, batch_size, (n,), generator=generator)
        permutation = torch.argsort(sample * 1000 + torch.randperm(n, generator=generator))
        size = int(torch.randint(1, 9, (1,), generator=generator))
        check_invariants(partition_from_sorted(permutation, sample, batch_size, size), sample)


def test_native_assembly_matches_reference(device, generator):
    from pointformer.ops import reference_only

    fields = ("permutation", "offsets", "group_sample", "group_index", "key_mask", "slot_of_voxel")
    for _ in range(10):
        batch_size = int(torch.randint(1, 5, (1,), generator=generator))
        n = int(torch.randint(0, 400, (1,), generator=generator))
        sample = torch.randint(0, batch_size, (n,), generator=generator)
        permutation = torch.argsort(sample * 1000 + torch.randperm(n, generator=generator))
        size = int(torch.randint(1, 40, (1,), generator=generator))
        native = partition_from_sorted(permutation.to(device), sample.to(device), batch_size, size)
        with reference_only():
            reference = partition_from_sorted(permutation, sample, batch_size, size)
        for field in fields:
            assert torch.equal(getattr(native, field).cpu(), getattr(reference, field)), field


def test_native_assembly_opcheck(device, generator):
    sample = torch.tensor([0, 0, 0, 2, 2, 0, 2]).to(device)
    permutation = torch.tensor([0, 1, 2, 5, 3, 4, 6]).to(device)
    torch.library.opcheck(torch.ops.pointformer.partition_from_sorted, (permutation, sample, 3, 2))
    torch.library.opcheck(torch.ops.pointformer.partition_from_sorted, (permutation[:0], sample[:0], 1, 4))


def test_gather_and_scatter_equal_advanced_indexing_with_gradients(generator):
    """gather/scatter go through index_select (a faster backward on the CPU): values and gradients
    as ``features[group_index]`` and ``grouped[slot_of_voxel]``, padding repeats included; extra
    feature dimensions kept."""
    sample = torch.tensor([0] * 10 + [1] * 7)
    p = partition_from_sorted(torch.arange(17), sample, 2, 4)
    features = torch.randn(17, 3, 2, generator=generator, dtype=torch.float64)
    upstream = torch.randn(5, 4, 3, 2, generator=generator, dtype=torch.float64)
    got, want = features.clone().requires_grad_(True), features.clone().requires_grad_(True)
    grouped = p.gather(got)
    assert torch.equal(grouped, want[p.group_index])
    grouped.backward(upstream)
    want[p.group_index].backward(upstream)
    torch.testing.assert_close(got.grad, want.grad, rtol=1e-12, atol=1e-12)  # repeated voxels summed
    assert not torch.equal(got.grad, upstream.reshape(-1, 3, 2)[p.slot_of_voxel])  # padding did add

    grouped = upstream.clone().requires_grad_(True)
    plain = upstream.clone().requires_grad_(True)
    out = p.scatter(grouped)
    assert torch.equal(out, plain.reshape(-1, 3, 2)[p.slot_of_voxel])
    out.backward(features)
    plain.reshape(-1, 3, 2)[p.slot_of_voxel].backward(features)
    assert torch.equal(grouped.grad, plain.grad)  # padding slots get exact zeros
