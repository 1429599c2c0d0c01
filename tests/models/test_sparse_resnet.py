"""CenterPoint's VoxelResBackBone8x: the official parameter count and shapes, the residual block
against dense conv3d, forward and backward, batch consistency and empty samples."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("spconv", reason="VoxelResBackBone8x needs the `spconv` package")

from random_voxels import count, random_voxels, sample_alone

from pointformer.models.backbones.sparse_resnet import VoxelResBackBone8x  # noqa: E402
from pointformer.models.bev.scatter import ScatterToBEV  # noqa: E402
from pointformer.models.layers.sparse_conv import SparseBasicBlock, conv_output_size, spconv_tensor  # noqa: E402
from pointformer.models.layers.spconv import from_spconv  # noqa: E402
from pointformer.structures import SparseVoxels  # noqa: E402

GRID = (24, 16, 16)  # the smallest Z the unpadded z convs of conv4 and conv_out allow
TINY = dict(channels=(4, 8, 8, 8), out_channels=8)


_count, _voxels, _sample = count, random_voxels, sample_alone


def _randomise_norms(model: torch.nn.Module, generator: torch.Generator) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=generator))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=generator))
            m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=generator))


def test_parameter_count_official_waymo_config() -> None:
    # OpenPCDet tools/cfgs/waymo_models/centerpoint.yaml: MeanVFE over 5 point features, grid
    # 0.1 x 0.1 x 0.15 m over [-75.2, 75.2]^2 x [-2, 4]: (Z, Y, X) = (40, 1504, 1504).
    model = VoxelResBackBone8x(5, (40, 1504, 1504))
    assert _count(model) == 2_695_312
    parts = [_count(getattr(model, n)) for n in ("conv_input", "conv1", "conv2", "conv3", "conv4", "conv_out")]
    assert parts == [2_192, 27_840, 124_864, 498_560, 1_992_448, 49_408]
    assert _count(SparseBasicBlock(128)) == 2 * (27 * 128 * 128 + 128) + 4 * 128  # biased convs, as OpenPCDet
    assert model.out_channels == 128
    assert model.out_spatial_shape == (2, 188, 188) and model.out_stride == (16, 8, 8)
    # HeightCompression: the 2 z cells fold into 256 BEV channels (the official NUM_BEV_FEATURES).
    assert ScatterToBEV(model.out_channels, model.out_spatial_shape[0]).out_channels == 256
    # OpenPCDet-style state-dict names (spconv weights are (out, kz, ky, kx, in)).
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["conv_input.0.weight"] == (16, 3, 3, 3, 5)
    assert shapes["conv2.0.0.weight"] == (32, 3, 3, 3, 16) and shapes["conv2.1.conv1.bias"] == (32,)
    assert shapes["conv_out.0.weight"] == (128, 3, 1, 1, 128)


def test_output_size_arithmetic_matches_spconv() -> None:
    assert conv_output_size((41, 1504, 1504), 3, 2, 1) == (21, 752, 752)
    assert conv_output_size((11, 376, 376), 3, 2, (0, 1, 1)) == (5, 188, 188)
    assert VoxelResBackBone8x(4, GRID, **TINY).out_spatial_shape == (1, 2, 2)
    with pytest.raises(ValueError, match="too small"):
        VoxelResBackBone8x(4, (23, 16, 16), **TINY)


@pytest.mark.parametrize("training", [True, False])
def test_basic_block_matches_dense_conv3d(training: bool) -> None:
    # Submanifold = a dense conv read at the voxels, with the intermediate kept only on the voxels.
    # Eval mode on the CPU exercises the biased-conv workaround (spconv refuses fused biases there).
    g = torch.Generator().manual_seed(0)
    voxels = _voxels([30, 20], 3, (4, 5, 6), g, torch.float64)
    block = SparseBasicBlock(3).double().train(training)
    _randomise_norms(block, g)
    with torch.no_grad():
        for conv in (block.conv1, block.conv2):
            conv.bias.copy_(torch.randn(3, generator=g, dtype=torch.float64))
    got = from_spconv(block(spconv_tensor(voxels)))
    assert torch.equal(got.coords, voxels.coords)

    c = voxels.coords.long()
    at = (c[:, 0], slice(None), c[:, 1], c[:, 2], c[:, 3])

    def subm(features, conv):
        weight = conv.weight.permute(0, 4, 1, 2, 3)  # (out, in, kz, ky, kx)
        return F.conv3d(voxels.replace_features(features).dense(), weight, conv.bias, padding=1)[at]

    hidden = torch.relu(block.bn1(subm(voxels.features, block.conv1)))
    want = torch.relu(block.bn2(subm(hidden, block.conv2)) + voxels.features)
    torch.testing.assert_close(got.features, want)


def test_forward_backward_tiny() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    model = VoxelResBackBone8x(4, GRID, **TINY)
    voxels = _voxels([150, 90], 4, GRID, g)
    out = model(voxels)
    assert out.num_channels == 8 and out.spatial_shape == model.out_spatial_shape and out.stride == (16, 8, 8)
    hi = torch.tensor(out.spatial_shape)
    assert ((out.coords[:, 1:] >= 0) & (out.coords[:, 1:] < hi)).all()
    assert torch.unique(out.coords, dim=0).shape[0] == out.num_voxels
    assert set(out.coords[:, 0].tolist()) == {0, 1}
    out.features.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    bev = ScatterToBEV(8, model.out_spatial_shape[0])(out)
    assert bev.shape == (2, 8, 2, 2)


def test_batch_consistency_and_empty_samples_in_eval() -> None:
    torch.manual_seed(1)
    g = torch.Generator().manual_seed(2)
    model = VoxelResBackBone8x(4, GRID, **TINY).eval()
    _randomise_norms(model, g)
    voxels = _voxels([120, 0, 100], 4, GRID, g)
    with torch.no_grad():
        batch = model(voxels)
        assert batch.batch_size == 3 and not (batch.coords[:, 0] == 1).any()
        dense = batch.dense()
        assert dense[0].abs().sum() > 0 and dense[1].abs().sum() == 0
        for b in (0, 2):
            torch.testing.assert_close(dense[b], model(_sample(voxels, b)).dense()[0], atol=1e-5, rtol=1e-4)


def test_batch_without_voxels_and_errors() -> None:
    model = VoxelResBackBone8x(4, GRID, **TINY)
    empty = SparseVoxels(torch.zeros(0, 4), torch.zeros(0, 4, dtype=torch.int32), GRID, 2)
    out = model(empty)
    assert out.num_voxels == 0 and out.num_channels == 8 and out.spatial_shape == (1, 2, 2)
    g = torch.Generator().manual_seed(3)
    with pytest.raises(ValueError, match="channels"):
        model(_voxels([5], 5, GRID, g))
    with pytest.raises(ValueError, match="grid"):
        model(_voxels([5], 4, (24, 16, 8), g))


def test_mean_vfe_averages_the_kept_points() -> None:
    from pointformer.models.encoders.mean_vfe import MeanVFE
    from pointformer.ops import voxelize

    g = torch.Generator().manual_seed(4)
    points = torch.rand(200, 5, generator=g) * torch.tensor([4.0, 4.0, 2.0, 1.0, 1.0])
    points[:3, 0] = 10.0  # outside the range: dropped
    batch_index = (torch.arange(200) >= 120).long()
    voxels = voxelize(points, (1.0, 1.0, 0.5), (0, 0, 0, 4, 4, 2), batch_index, max_points_per_voxel=2, batch_size=2)
    vfe = MeanVFE(5)
    out = vfe(points, voxels)
    assert out.num_channels == vfe.out_channels == 5 and _count(vfe) == 0
    assert torch.equal(out.coords, voxels.coords) and out.spatial_shape == (4, 4, 4)
    for v in (0, voxels.num_voxels // 2, voxels.num_voxels - 1):
        members = (voxels.point_to_voxel == v).nonzero().squeeze(1)
        assert 1 <= members.numel() <= 2
        torch.testing.assert_close(out.features[v], points[members].mean(0))
