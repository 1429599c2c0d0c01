"""Fake kernel of ``partition_from_sorted``, the native assembly behind ``Partition.from_sorted``
(whose pure-PyTorch reference is ``Partition.padded_views_reference``)."""

from __future__ import annotations

import torch

from pointformer.ops import _library


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
