"""SparseVoxels: validation, immutability, shared cache, batch helpers, dense view."""

import pytest
import torch

from pointformer.structures import SparseVoxels


def make(batch_size=3):
    coords = torch.tensor([[0, 0, 1, 2], [0, 1, 0, 0], [2, 0, 3, 3]], dtype=torch.int32)
    features = torch.arange(6, dtype=torch.float32).reshape(3, 2)
    return SparseVoxels(features, coords, (2, 4, 4), batch_size)


def test_batch_helpers_count_empty_samples():
    voxels = make()
    assert voxels.batch_counts().tolist() == [2, 0, 1]
    assert voxels.batch_offsets().tolist() == [0, 2, 2, 3]
    assert voxels.num_voxels == 3 and voxels.num_channels == 2


def test_replace_features_shares_layout_and_cache():
    voxels = make()
    calls = []
    first = voxels.cached("layout", lambda: calls.append(1) or "partition")
    other = voxels.replace_features(torch.zeros(3, 5))
    assert other.cached("layout", lambda: calls.append(1) or "recomputed") == first == "partition"
    assert calls == [1] and other.num_channels == 5 and other.coords is voxels.coords
    assert voxels.features.shape == (3, 2), "never in place"


def test_dense():
    dense = make().dense()
    assert dense.shape == (3, 2, 2, 4, 4)
    assert dense[0, :, 0, 1, 2].tolist() == [0.0, 1.0]
    assert dense[2, :, 0, 3, 3].tolist() == [4.0, 5.0]
    assert dense.abs().sum() == sum(range(6))


@pytest.mark.parametrize(
    "features,coords,message",
    [
        (torch.zeros(3), torch.zeros(3, 4, dtype=torch.int32), r"features must have shape \(N, C\)"),
        (torch.zeros(3, 2), torch.zeros(3, 4, dtype=torch.int64), "coords must be int32"),
        (torch.zeros(2, 2), torch.zeros(3, 4, dtype=torch.int32), "has 2 rows but coords has 3"),
    ],
)
def test_validation(features, coords, message):
    with pytest.raises(ValueError, match=message):
        SparseVoxels(features, coords, (1, 1, 1), 1)
