"""ScatterFormer: official parameter counts, the depthwise submanifold conv against dense conv3d,
the attention, CWI and pillar-pooling layers against direct computations, forward and backward,
batch consistency and empty samples."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("spconv", reason="ScatterFormer's stem needs the `spconv` package")

from random_voxels import count, random_voxels, sample_alone

from pointformer.models.backbones.scatterformer import ScatterFormer, ScatterFormerBlock  # noqa: E402
from pointformer.models.bev.pillar_pool import AttentionPillarPool  # noqa: E402
from pointformer.models.bev.scatter import ScatterToBEV  # noqa: E402
from pointformer.models.layers.cwi import CrossWindowInteraction  # noqa: E402
from pointformer.models.layers.scattered_attention import ScatteredLinearAttention  # noqa: E402
from pointformer.models.layers.sparse_depthwise import (  # noqa: E402
    SubmanifoldDepthwiseConv3d,
    depthwise_submanifold_conv,
    submanifold_neighbours,
)
from pointformer.structures import SparseVoxels  # noqa: E402

GRID = (6, 16, 16)  # (Z, Y, X) of the tiny model


_count, _voxels, _sample = count, random_voxels, sample_alone


def _tiny_model(**kwargs) -> ScatterFormer:
    args = dict(channels=16, num_heads=2, num_blocks=2, window_size=4, stem_blocks=1, pool_heads=2)
    args.update(kwargs)
    return ScatterFormer(4, GRID, **args)


def _randomise_norms(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Non-trivial running statistics and affine parameters, so eval mode tests the norms too."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=generator))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=generator))
            m.weight.data.copy_(1 + 0.1 * torch.randn(m.num_features, generator=generator))
            m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=generator))


# --- parameter counts ---------------------------------------------------------------------------


def test_parameter_counts_official_waymo_config() -> None:
    # Official BACKBONE_3D of tools/cfgs/waymo_models/scatterformer.yaml: its input is the
    # 64-channel DynamicVoxelVFE output (the VFE's own 4,640 parameters are not part of it).
    model = ScatterFormer(64, (32, 480, 480), channels=128, num_heads=4, num_blocks=3, window_size=12)
    assert _count(model) == 4_241_856
    assert _count(model.stem) == 221_440 + 3 * 885_504 + 49_408 == 2_927_360
    assert _count(model.stage1) + _count(model.stage1_norm) + _count(model.downsample) == 844_768
    assert _count(model.stage2) + _count(model.stage2_norm) == 402_400
    assert _count(model.pillar_pool) == 67_328
    assert _count(ScatterFormerBlock(128, 4, 13)) == 134_048
    assert _count(ScatteredLinearAttention(128, 4)) == 65_664
    assert _count(CrossWindowInteraction(128, 13)) == 68_128
    assert model.out_channels == 128
    assert model.out_spatial_shape == (1, 240, 240) and model.out_stride == (32, 2, 2)
    assert model.pillar_pool.num_z == 8 == 33 // 4  # official AttnPillarPool(C, sparse_shape[0] // 4)
    # ScatterFormer's depthwise weights: (kz, ky, kx, C / 4), no bias.
    cwi = model.stage1.blocks[0].cwi
    assert tuple(cwi.conv_xyz.weight.shape) == (3, 3, 3, 32)
    assert tuple(cwi.conv_x.weight.shape) == (1, 1, 13, 32) and tuple(cwi.conv_y.weight.shape) == (1, 13, 1, 32)
    # nuScenes (0.2 m over 8 m: Z = 40): the same rule gives 41 // 4 = 10 z cells to pool.
    assert ScatterFormer(64, (40, 360, 360), window_size=20).pillar_pool.num_z == 10


# --- layers -------------------------------------------------------------------------------------


def _dense_depthwise(voxels: SparseVoxels, features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Reference: a dense grouped conv3d (zero padding) read at the voxels."""
    dense = voxels.replace_features(features).dense()  # (B, C, Z, Y, X)
    kernel = weight.permute(3, 0, 1, 2).unsqueeze(1)  # (C, 1, kz, ky, kx)
    padding = tuple(k // 2 for k in weight.shape[:3])
    out = F.conv3d(dense, kernel, padding=padding, groups=features.shape[1])
    c = voxels.coords.long()
    return out[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]]


@pytest.mark.parametrize("kernel", [(3, 3, 3), (1, 1, 5), (1, 5, 1)])
def test_depthwise_conv_matches_dense_conv3d(kernel) -> None:
    g = torch.Generator().manual_seed(0)
    voxels = _voxels([40, 25], 3, (4, 6, 7), g, torch.float64)
    conv = SubmanifoldDepthwiseConv3d(3, kernel).double()
    x = voxels.features.clone().requires_grad_(True)
    got = conv(x, voxels)
    x_ref = voxels.features.clone().requires_grad_(True)
    w_ref = conv.weight.detach().clone().requires_grad_(True)
    want = _dense_depthwise(voxels, x_ref, w_ref)
    torch.testing.assert_close(got, want)
    grad = torch.randn(got.shape, generator=g, dtype=torch.float64)
    got.backward(grad)
    want.backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(conv.weight.grad, w_ref.grad)


def test_depthwise_conv_gradcheck_and_neighbours() -> None:
    g = torch.Generator().manual_seed(1)
    voxels = _voxels([9, 6], 2, (2, 3, 4), g, torch.float64)
    neighbours = submanifold_neighbours(voxels.coords, voxels.spatial_shape, (3, 3, 3))
    n = voxels.num_voxels
    assert neighbours.shape == (27, n)
    assert torch.equal(neighbours[13], torch.arange(n))  # the centre tap is the voxel itself
    # Neighbours never cross samples.
    found = neighbours < n
    b = voxels.coords[:, 0].long()
    assert torch.equal(b[neighbours[found]], b.expand(27, n)[found])
    x = voxels.features.clone().requires_grad_(True)
    w = torch.randn(27, 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: depthwise_submanifold_conv(x, w, neighbours), (x, w))


def test_depthwise_conv_rejects_even_kernels() -> None:
    with pytest.raises(ValueError, match="odd"):
        SubmanifoldDepthwiseConv3d(4, (1, 1, 12))


def test_scattered_linear_attention_layer_matches_per_window_computation() -> None:
    g = torch.Generator().manual_seed(2)
    layer = ScatteredLinearAttention(8, 2).double()
    x = torch.randn(11, 8, generator=g, dtype=torch.float64)
    offsets = torch.tensor([0, 4, 4, 11])  # an empty window in the middle
    got = layer(x, offsets)
    q, k, v = layer.qkv(x).chunk(3, dim=1)
    want = torch.empty_like(x)
    for s, e in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
        for h in range(2):
            cols = slice(4 * h, 4 * h + 4)
            qh, kh, vh = q[s:e, cols].relu(), k[s:e, cols].relu(), v[s:e, cols]
            want[s:e, cols] = (qh @ (kh.T @ vh)) / ((qh @ kh.sum(0, keepdim=True).T) + 1e-6)
    torch.testing.assert_close(got, layer.proj(want))


def test_cwi_matches_direct_computation() -> None:
    g = torch.Generator().manual_seed(3)
    voxels = _voxels([30, 20], 8, (3, 6, 6), g, torch.float64)
    cwi = CrossWindowInteraction(8, kernel_length=5).double().eval()
    _randomise_norms(cwi, g)
    got = cwi(voxels.features, voxels)
    x = cwi.norm(voxels.features)
    parts = [
        _dense_depthwise(voxels, x[:, 0:2], cwi.conv_xyz.weight),
        _dense_depthwise(voxels, x[:, 2:4], cwi.conv_x.weight),
        _dense_depthwise(voxels, x[:, 4:6], cwi.conv_y.weight),
        x[:, 6:],
    ]
    x = x + torch.cat(parts, dim=1)  # the residual is on the normalised features (official)
    want = x + cwi.fc2(torch.relu(cwi.fc1(cwi.ffn_norm(x))))
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("query", ["max", "spconv"])
def test_pillar_pool_matches_per_pillar_attention(query: str) -> None:
    g = torch.Generator().manual_seed(4)
    voxels = _voxels([20, 15], 8, (3, 4, 4), g, torch.float64)
    pool = AttentionPillarPool(8, 3, num_heads=2, query=query).double()
    out = pool(voxels)
    assert out.spatial_shape == (1, 4, 4) and out.stride == (3, 1, 1)
    c = voxels.coords.long()
    columns = sorted({(b, y, x) for b, _, y, x in c.tolist()})
    assert out.coords.tolist() == [[b, 0, y, x] for b, y, x in columns]  # sorted by (batch, y, x)
    for row, (b, y, x) in enumerate(columns):
        members = ((c[:, 0] == b) & (c[:, 2] == y) & (c[:, 3] == x)).nonzero().squeeze(1)
        feats, zs = voxels.features[members], c[members, 1]
        q = feats.max(0).values[None, None]
        if query == "spconv":
            q = q.clamp(min=0)  # spconv's max-pool starts from 0
        keys = (feats + pool.pos_embedding.weight[zs])[None]
        attn, _ = pool.attn(q, keys, feats[None], need_weights=False)
        torch.testing.assert_close(out.features[row], pool.norm(q[0, 0] + attn[0, 0]))


def test_pillar_pool_spconv_query_is_spconvs_max_pool(one_thread) -> None:
    """The official query, spconv's SparseMaxPool3d((Z, 1, 1)), run here: max(0, max) in every channel,
    columns full or not; the true-max option differs exactly where a column's channel is all negative."""
    from pointformer.models.layers.spconv import from_spconv, import_spconv, to_spconv

    g = torch.Generator().manual_seed(6)
    voxels = _voxels([40, 30], 8, (3, 4, 4), g, torch.float64)
    features = voxels.features - 1.0  # many all-negative channels
    voxels = voxels.replace_features(features)
    spconv = import_spconv()
    pooled = from_spconv(spconv.SparseMaxPool3d((3, 1, 1), (3, 1, 1))(to_spconv(voxels)))
    c = pooled.coords.long()
    order = torch.argsort((c[:, 0] * 4 + c[:, 2]) * 4 + c[:, 3])
    spconv_query = pooled.features[order]
    true_max = torch.stack([features[(voxels.coords[:, [0, 2, 3]] == pooled.coords[i, [0, 2, 3]]).all(1)].max(0).values
                            for i in order.tolist()])  # fmt: skip
    assert (true_max < 0).any()
    torch.testing.assert_close(spconv_query, true_max.clamp(min=0))
    # The pooling in its spconv mode uses that query.
    pool = AttentionPillarPool(8, 3, num_heads=2, query="spconv").double()
    captured = {}
    pool.attn.register_forward_pre_hook(lambda module, args: captured.update(q=args[0]))
    pool(voxels)
    torch.testing.assert_close(captured["q"][:, 0], spconv_query)


# --- the whole backbone -------------------------------------------------------------------------


def test_forward_backward_tiny() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(5)
    model = _tiny_model()
    voxels = _voxels([120, 70], 4, GRID, g)
    out = model(voxels)
    assert out.num_channels == 16 and out.spatial_shape == model.out_spatial_shape == (1, 8, 8)
    assert out.stride == model.out_stride and out.coords[:, 1].eq(0).all()
    # One pillar per occupied output column; every sample keeps pillars.
    assert torch.unique(out.coords, dim=0).shape[0] == out.num_voxels
    assert set(out.coords[:, 0].tolist()) == {0, 1}
    assert torch.isfinite(out.features).all()
    out.features.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    # The BEV mapping of the pillars (HeightCompression with Z = 1).
    bev = ScatterToBEV(model.out_channels, model.out_spatial_shape[0])(out)
    assert bev.shape == (2, 16, 8, 8)


def test_stage_keeps_voxels_in_window_order() -> None:
    g = torch.Generator().manual_seed(6)
    model = _tiny_model()
    voxels = _voxels([60, 40], 16, (3, 16, 16), g)
    out = model.stage1(voxels)
    assert sorted(map(tuple, out.coords.tolist())) == sorted(map(tuple, voxels.coords.tolist()))
    c = out.coords.long()
    window = (c[:, 0] * 4 + c[:, 2] // 4) * 4 + c[:, 3] // 4
    assert (window[1:] >= window[:-1]).all()


def test_batch_consistency_and_empty_samples_in_eval() -> None:
    torch.manual_seed(1)
    g = torch.Generator().manual_seed(7)
    model = _tiny_model().eval()
    _randomise_norms(model, g)
    voxels = _voxels([90, 0, 60], 4, GRID, g)  # sample 1 has no voxel
    with torch.no_grad():
        batch = model(voxels)
        assert batch.batch_size == 3 and not (batch.coords[:, 0] == 1).any()
        dense = batch.dense()
        assert dense[1].abs().sum() == 0
        for b in (0, 2):
            alone = model(_sample(voxels, b))
            torch.testing.assert_close(dense[b], alone.dense()[0], atol=1e-5, rtol=1e-4)


def test_batch_without_voxels() -> None:
    model = _tiny_model()
    empty = SparseVoxels(torch.zeros(0, 4), torch.zeros(0, 4, dtype=torch.int32), GRID, 2)
    out = model(empty)
    assert out.num_voxels == 0 and out.num_channels == 16 and out.spatial_shape == (1, 8, 8)


def test_errors() -> None:
    model = _tiny_model()
    g = torch.Generator().manual_seed(8)
    with pytest.raises(ValueError, match="channels"):
        model(_voxels([5], 3, GRID, g))
    with pytest.raises(ValueError, match="grid"):
        model(_voxels([5], 4, (6, 16, 12), g))
    with pytest.raises(ValueError, match="divide"):
        ScatterFormer(4, GRID, channels=16, num_heads=3)


def test_dynamic_vfe_matches_the_official_64_channel_vfe_count() -> None:
    # OpenPCDet's DynamicVoxelVFE with NUM_FILTERS [64, 64] halves every layer but the last and
    # concatenates the voxel max back: Linear(11, 32) + BN, then Linear(64, 64) + BN. mmdet3d-style
    # DynamicVFE with feat_channels (32, 64) is the same network: 4,640 parameters.
    from pointformer.models.encoders.dynamic_vfe import DynamicVFE
    from pointformer.structures import VoxelGrid

    grid = VoxelGrid((-76.8, -76.8, -2.0, 76.8, 76.8, 4.0), (0.32, 0.32, 0.1875))
    assert grid.shape == (32, 480, 480)
    vfe = DynamicVFE(5, grid, feat_channels=(32, 64))
    assert _count(vfe) == 11 * 32 + 2 * 32 + 64 * 64 + 2 * 64 == 4_640 and vfe.out_channels == 64
    assert _count(ScatterFormer(vfe.out_channels, grid.shape)) == 4_241_856
