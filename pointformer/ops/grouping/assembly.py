"""Equal-size groups over voxels already in group order (``partition_from_sorted``): the native
assembly of FlatFormer's groups and serialized patches into a ``Partition``, its fake kernel and its
pure-PyTorch reference (``partition_from_sorted_reference``)."""

from __future__ import annotations

import torch

from pointformer.ops import _library
from pointformer.structures.partition import Partition


@_library.register_fake("partition_from_sorted")
def _partition_from_sorted_fake(permutation, sample_of_voxel, batch_size, group_size):
    groups = torch.library.get_ctx().new_dynamic_size()
    return (
        permutation.new_empty(groups + 1),
        permutation.new_empty(groups),
        permutation.new_empty(groups, group_size),
        permutation.new_empty(groups, group_size, dtype=torch.bool),
        permutation.new_empty(permutation.shape[0]),
    )


def partition_from_sorted(
    permutation: torch.Tensor, sample_of_voxel: torch.Tensor, batch_size: int, group_size: int | None
) -> Partition:
    """Equal-size groups over voxels already in group order (FlatFormer, serialized patches).

    ``permutation`` must be sample-major. Each sample's voxels are cut into consecutive groups
    of ``group_size``; the last group of a sample is padded by FlatFormer's rule: padded slot
    ``p`` of the sample takes the voxel at position ``p - group_size`` (the same slot of the
    previous group), and, for a sample with fewer voxels than a group, the sample's voxels
    cyclically. With ``group_size=None`` there is one group per sample and no padded view.

    ``offsets`` hold the real voxels only, so a sample's last group (or a sample smaller than a
    group: PTv3's rule) is a shorter variable-length group.
    """
    if group_size is None:
        counts = torch.bincount(sample_of_voxel, minlength=batch_size)
        sample_start = torch.cumsum(counts, 0) - counts
        nonempty = torch.nonzero(counts).squeeze(1)
        offsets = torch.cat([sample_start[nonempty], counts.sum().reshape(1)])
        return Partition(permutation, offsets, nonempty)
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if _library.has_kernel("partition_from_sorted", permutation.device):
        views = torch.ops.pointformer.partition_from_sorted(permutation, sample_of_voxel, batch_size, group_size)
    else:
        views = partition_from_sorted_reference(permutation, sample_of_voxel, batch_size, group_size)
    offsets, group_sample, group_index, key_mask, slot_of_voxel = views
    return Partition(permutation, offsets, group_sample, group_index, key_mask, slot_of_voxel)


def partition_from_sorted_reference(
    permutation: torch.Tensor, sample_of_voxel: torch.Tensor, batch_size: int, group_size: int
) -> tuple[torch.Tensor, ...]:
    """Pure-PyTorch ``partition_from_sorted`` (the native op of the same name): returns
    ``(offsets, group_sample, group_index, key_mask, slot_of_voxel)``."""
    device = permutation.device
    n = permutation.shape[0]
    counts = torch.bincount(sample_of_voxel, minlength=batch_size)
    sample_start = torch.cumsum(counts, 0) - counts
    groups_per_sample = (counts + group_size - 1) // group_size
    group_sample = torch.repeat_interleave(torch.arange(batch_size, device=device), groups_per_sample)
    num_groups = group_sample.shape[0]
    first_group = torch.cumsum(groups_per_sample, 0) - groups_per_sample
    # Position of each padded slot inside its sample, and the sample's voxel it takes.
    slot = torch.arange(num_groups * group_size, device=device)
    slot_sample = group_sample.repeat_interleave(group_size)
    p = slot - first_group[slot_sample] * group_size
    count = counts[slot_sample]
    is_pad = p >= count
    source = torch.where(p - group_size >= 0, p - group_size, p % count.clamp(min=1))
    source = torch.where(is_pad, source, p)
    group_index = permutation[sample_start[slot_sample] + source].reshape(num_groups, group_size)
    key_mask = is_pad.reshape(num_groups, group_size)
    # Real voxel at position q of its sample sits in slot first_group * S + q.
    position = torch.arange(n, device=device)
    ordered_sample = sample_of_voxel[permutation]
    q = position - sample_start[ordered_sample]
    slot_of_voxel = torch.empty(n, dtype=torch.int64, device=device)
    slot_of_voxel[permutation] = first_group[ordered_sample] * group_size + q
    # Variable-length view: the real voxels of each group (the last one of a sample is shorter).
    group_in_sample = torch.arange(num_groups, device=device) - first_group[group_sample]
    starts = sample_start[group_sample] + group_in_sample * group_size
    offsets = torch.cat([starts, torch.full((1,), n, dtype=torch.int64, device=device)])
    return offsets, group_sample, group_index, key_mask, slot_of_voxel
