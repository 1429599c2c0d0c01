"""DSVT backbone: official parameter counts, the whole backbone against a written-out official
forward (nn.MultiheadAttention over the padded sets, the dense pooling placeholder), training
forward/backward, batch consistency, small and empty samples, checkpointing, argument errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pointformer.models.backbones.dsvt import DSVT
from pointformer.models.layers.attention_pooling import AttentionPooling
from pointformer.models.layers.learned_position import LearnedPositionEmbedding
from pointformer.models.layers.set_attention import DSVTBlock, SetAttentionLayer
from pointformer.ops import partition_rotated_sets
from pointformer.structures import SparseVoxels

WAYMO_PILLAR = dict(
    sparse_shape=(1, 468, 468), set_sizes=(36,), num_blocks=(4,), window_shapes=((12, 12, 1),),
    hybrid_factor=(2, 2, 1), shifts=(((0, 0, 0), (6, 6, 0)),), num_heads=8, ffn_channels=384,
)  # fmt: skip
WAYMO_VOXEL = dict(
    sparse_shape=(32, 468, 468), set_sizes=(48,) * 4, num_blocks=(1,) * 4,
    window_shapes=((12, 12, 32), (12, 12, 8), (12, 12, 2), (12, 12, 1)), hybrid_factor=(2, 2, 1),
    shifts=(((0, 0, 0), (6, 6, 0)),) * 4, downsample_strides=((1, 1, 4), (1, 1, 4), (1, 1, 2)),
    num_heads=8, ffn_channels=384,
)  # fmt: skip

# Tiny versions: a pillar stage of 2 blocks (both window configurations), and 3 voxel stages whose
# second pooling also strides in x and y (P = 4, then 8), on 16 channels.
TINY_PILLAR = dict(
    sparse_shape=(1, 20, 24), set_sizes=(5,), num_blocks=(2,), window_shapes=((4, 4, 1),),
    hybrid_factor=(2, 2, 1), shifts=(((0, 0, 0), (2, 2, 0)),), num_heads=2, ffn_channels=24,
)  # fmt: skip
TINY_VOXEL = dict(
    sparse_shape=(8, 12, 16), set_sizes=(6, 6, 5), num_blocks=(1, 1, 1),
    window_shapes=((4, 4, 8), (4, 4, 2), (4, 4, 1)), hybrid_factor=(2, 2, 1),
    shifts=(((0, 0, 0), (2, 2, 0)),) * 3, downsample_strides=((1, 1, 4), (2, 2, 2)), num_heads=2,
    ffn_channels=24, pooling_heads=4,
)  # fmt: skip
TINY = {"pillar": TINY_PILLAR, "voxel": TINY_VOXEL}
C = 16


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _voxels(counts: list[int], grid, generator: torch.Generator, dtype=torch.float32) -> SparseVoxels:
    """Distinct random voxels, ``counts[b]`` in sample ``b`` (clustered, so windows range from full to
    a single voxel), rows in random order."""
    z, y, x = grid
    rows = []
    for b, n in enumerate(counts):
        if n:
            weight = torch.rand(z * y * x, generator=generator, dtype=torch.float64) ** 6
            flat = torch.multinomial(weight, n, replacement=False, generator=generator)
            rows.append(torch.stack([torch.full_like(flat, b), flat // (y * x), flat // x % y, flat % x], 1))
    coords = torch.cat(rows) if rows else torch.zeros(0, 4, dtype=torch.int64)
    coords = coords[torch.randperm(coords.shape[0], generator=generator)].int()
    features = torch.randn(coords.shape[0], C, generator=generator, dtype=dtype)
    return SparseVoxels(features, coords, grid, len(counts))


def _model(name: str, **kwargs) -> DSVT:
    args = dict(TINY[name])
    args.update(kwargs)
    return DSVT(C, **args)


def _randomise_norms(model: nn.Module, generator: torch.Generator) -> None:
    """Non-trivial norm affines and BN statistics, so that the comparisons see them."""
    for m in model.modules():
        if isinstance(m, (nn.LayerNorm, nn.BatchNorm1d)):
            with torch.no_grad():
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=generator))
                m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=generator))
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=generator))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=generator))


def _sorted_by_coords(voxels: SparseVoxels) -> tuple[torch.Tensor, torch.Tensor]:
    c = voxels.coords.long()
    z, y, x = voxels.spatial_shape
    order = torch.argsort(((c[:, 0] * z + c[:, 1]) * y + c[:, 2]) * x + c[:, 3])
    return voxels.coords[order], voxels.features[order]


# --- the official forward, written out ------------------------------------------------------------


def _mha(channels: int, num_heads: int, state: dict, dtype) -> nn.MultiheadAttention:
    mha = nn.MultiheadAttention(channels, num_heads, batch_first=True, dtype=dtype)
    mha.load_state_dict(state)
    return mha.eval()


def _official_set_attention(layer: SetAttentionLayer, src, pos, inds, mask):
    """DSVT_EncoderLayer(SetAttention): gather the (S, tau) sets, MHA with the key-padding mask,
    each voxel from its first occurrence, post-norm FFN, then the encoder layer's residual norm."""
    post = layer.attn
    mha = _mha(src.shape[1], post.attn.num_heads, post.attn.state_dict(), src.dtype)
    feats, set_pos = src[inds], pos[inds]
    out = mha(feats + set_pos, feats + set_pos, feats, key_padding_mask=mask, need_weights=False)[0]
    flat = inds.reshape(-1)
    first = torch.full((src.shape[0],), flat.shape[0]).scatter_reduce(0, flat, torch.arange(flat.shape[0]), "amin")
    x = post.norm1(src + out.reshape(-1, src.shape[1])[first])
    x = post.norm2(x + post.fc2(post.act(post.fc1(x))))
    return layer.norm(x + src)


def _official_pooling(pool: AttentionPooling, x, coords, shape, stride):
    """Stage_ReductionAtt_Block on the official placeholder: cells numbered in the official
    (batch, x, y, z) window order (not ours), slots x-major, MaxPool1d query, unmasked MHA with the
    slot embedding on the keys only."""
    (sz, sy, sx), (nz, ny, nx) = stride, tuple(-(-n // k) for n, k in zip(shape, stride, strict=True))
    c = coords.long()
    b, z, y, xx = c.unbind(1)
    window = b * (nx * ny * nz) + (xx // sx) * ny * nz + (y // sy) * nz + z // sz
    cells, cell = torch.unique(window, return_inverse=True)
    slot = (xx % sx) * sy * sz + (y % sy) * sz + z % sz
    p = sz * sy * sx
    holder = x.new_zeros(cells.shape[0], p, x.shape[1])
    holder[cell, slot] = x
    query = nn.MaxPool1d(p)(holder.permute(0, 2, 1)).permute(0, 2, 1)
    state = {k: v for k, v in pool.state_dict().items() if not k.startswith(("norm", "pos"))}
    mha = _mha(x.shape[1], pool.num_heads, state, x.dtype)
    key = holder + pool.pos_embedding[None]
    no_mask = torch.zeros(cells.shape[0], p, dtype=torch.bool)
    out = mha(query, key, holder, key_padding_mask=no_mask, need_weights=False)[0]
    pooled = pool.norm(out + query).squeeze(1)
    first = torch.full((cells.shape[0],), c.shape[0]).scatter_reduce(0, cell, torch.arange(c.shape[0]), "amin")
    new_coords = torch.stack([b[first], z[first] // sz, y[first] // sy, xx[first] // sx], 1).int()
    return pooled, new_coords, (-(-shape[0] // sz), -(-shape[1] // sy), -(-shape[2] // sx))


def _official_forward(model: DSVT, voxels: SparseVoxels) -> SparseVoxels:
    x, coords, shape = voxels.features, voxels.coords, voxels.spatial_shape
    block_id = 0
    for stage, blocks in enumerate(model.stages):
        sets = [
            partition_rotated_sets(coords, voxels.batch_size, shape, w, model.set_sizes[stage], s)
            for w, s in model.window_configs[stage]
        ]
        for b, block in enumerate(blocks):
            shift_id = block_id % 2
            out = x
            for i in range(2):
                # Official: layer i embeds configuration i's in-window coordinates (its known quirk).
                cfg = shift_id if model.match_pos_embed_windows else i
                (wz, wy, wx), shift = sets[cfg].window_shape, sets[cfg].shift
                inw = (coords[:, 1:].long() + torch.tensor(shift)) % torch.tensor([wz, wy, wx])
                loc = [inw[:, 2] - wx / 2, inw[:, 1] - wy / 2] + ([inw[:, 0] - wz / 2] if shape[0] > 1 else [])
                pos = model.pos_embeds[stage][b][i](torch.stack(loc, 1).to(x.dtype))
                inds, mask = sets[shift_id].set_voxel_index[i], sets[shift_id].key_mask[i]
                out = _official_set_attention(block.layers[i], out, pos, inds, mask)
            x = block.norm(out + x)
            block_id += 1
        if stage < len(model.poolings):
            x, coords, shape = _official_pooling(
                model.poolings[stage], x, coords, shape, model.downsample_strides[stage]
            )
    return SparseVoxels(x, coords, shape, voxels.batch_size)


# --- tests ------------------------------------------------------------------------------------------


def test_parameter_counts_official_configs() -> None:
    torch.manual_seed(0)
    pillar = DSVT(192, **WAYMO_PILLAR)
    voxel = DSVT(192, **WAYMO_VOXEL)
    assert _count(pillar) == 2_684_928
    assert _count(voxel) == 3_133_824
    # By hand: the attention layer (MHA 4C^2 + 4C, FFN 2 * C * F + F + C, 2 norms) ...
    assert _count(SetAttentionLayer(192, 8, 384).attn) == 148_224 + 148_032 + 768 == 297_024
    assert _count(SetAttentionLayer(192, 8, 384)) == 297_408  # ... + the encoder layer's norm
    assert _count(DSVTBlock(192, 8, 384)) == 2 * 297_408 + 384 == 595_200  # + the block's residual norm
    assert _count(LearnedPositionEmbedding(2, 192)) == 576 + 384 + 37_056 == 38_016
    assert _count(LearnedPositionEmbedding(3, 192)) == 768 + 384 + 37_056 == 38_208
    assert _count(AttentionPooling(192, 4)) == 148_224 + 384 + 768 == 149_376
    assert _count(AttentionPooling(192, 2)) == 148_992
    assert 4 * 595_200 + 8 * 38_016 == 2_684_928
    assert 4 * 595_200 + 6 * 38_208 + 2 * 38_016 + 2 * 149_376 + 148_992 == 3_133_824
    assert voxel.stage_shapes == ((32, 468, 468), (8, 468, 468), (2, 468, 468), (1, 468, 468))
    assert voxel.out_spatial_shape == (1, 468, 468) and voxel.out_stride == (32, 1, 1)
    assert pillar.out_spatial_shape == (1, 468, 468) and pillar.out_stride == (1, 1, 1)
    assert pillar.out_channels == voxel.out_channels == 192
    # Window configurations in (z, y, x): 12 x 12 unshifted, 24 x 24 shifted by 6.
    assert pillar.window_configs == ((((1, 12, 12), (0, 0, 0)), ((1, 24, 24), (0, 6, 6))),)
    assert voxel.window_configs[1] == (((8, 12, 12), (0, 0, 0)), ((8, 24, 24), (0, 6, 6)))
    # nn.MultiheadAttention's names and shapes, so official weights map one to one.
    shapes = {k: tuple(v.shape) for k, v in voxel.poolings[0].state_dict().items()}
    assert shapes == {
        "in_proj_weight": (576, 192), "in_proj_bias": (576,), "out_proj.weight": (192, 192),
        "out_proj.bias": (192,), "norm.weight": (192,), "norm.bias": (192,), "pos_embedding": (4, 192),
    }  # fmt: skip


def test_xavier_init_everywhere() -> None:
    torch.manual_seed(0)
    model = _model("voxel")
    for name, p in model.named_parameters():
        if p.dim() > 1:
            bound = (6.0 / (p.shape[0] + p.shape[1])) ** 0.5
            assert p.abs().max() <= bound and p.abs().max() > 0.5 * bound, name


@pytest.mark.parametrize(
    "name, match", [("pillar", False), ("pillar", True), ("voxel", False)], ids=["pillar", "pillar-matched", "voxel"]
)
def test_matches_official_forward(name: str, match: bool) -> None:
    """Eval mode, float64: the module equals the written-out official forward on a batch with an
    empty sample and a sample smaller than a set."""
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    model = _model(name, match_pos_embed_windows=match).double().eval()
    _randomise_norms(model, g)
    voxels = _voxels([60, 0, 3, 35], TINY[name]["sparse_shape"], g, torch.float64)
    with torch.no_grad():
        out = model(voxels)
        ref = _official_forward(model, voxels)
    assert out.spatial_shape == ref.spatial_shape == model.out_spatial_shape
    assert out.stride == model.out_stride and out.batch_size == 4
    out_coords, out_features = _sorted_by_coords(out)
    ref_coords, ref_features = _sorted_by_coords(ref)
    assert torch.equal(out_coords, ref_coords)
    torch.testing.assert_close(out_features, ref_features, rtol=1e-9, atol=1e-9)
    if name == "pillar":
        assert torch.equal(out.coords, voxels.coords)  # pillars keep their voxels and order


def test_matched_pos_embed_differs_from_official() -> None:
    # The official quirk matters: in a block on the shifted windows, layer 0 embeds config 0.
    g = torch.Generator().manual_seed(2)
    torch.manual_seed(2)
    official = _model("pillar").eval()
    matched = _model("pillar", match_pos_embed_windows=True).eval()
    matched.load_state_dict(official.state_dict())
    voxels = _voxels([60], TINY_PILLAR["sparse_shape"], g)
    with torch.no_grad():
        assert not torch.allclose(official(voxels).features, matched(voxels).features, atol=1e-4)


@pytest.mark.parametrize("name", ["pillar", "voxel"])
def test_forward_backward(name: str) -> None:
    g = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    model = _model(name).train()
    voxels = _voxels([50, 3, 0, 40], TINY[name]["sparse_shape"], g)
    features = voxels.features.requires_grad_()
    out = model(voxels)
    assert out.num_channels == C and out.spatial_shape == model.out_spatial_shape
    assert out.coords.dtype == torch.int32 and torch.isfinite(out.features).all()
    counts = out.batch_counts()
    assert counts[2] == 0 and counts[1] >= 1  # the empty sample stays empty
    (out.features * torch.randn(out.features.shape, generator=g)).sum().backward()
    assert torch.isfinite(features.grad).all() and features.grad.abs().sum() > 0
    for n, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
        assert p.grad.abs().sum() > 0, n


@pytest.mark.parametrize("name", ["pillar", "voxel"])
def test_batch_consistency(name: str) -> None:
    """Eval mode: a batch (with an empty sample between) equals its samples one by one."""
    g = torch.Generator().manual_seed(4)
    torch.manual_seed(4)
    model = _model(name).eval()
    _randomise_norms(model, g)
    grid = TINY[name]["sparse_shape"]
    a, b = _voxels([45], grid, g), _voxels([4], grid, g)
    coords_b = b.coords.clone()
    coords_b[:, 0] = 2
    batch = SparseVoxels(torch.cat([a.features, b.features]), torch.cat([a.coords, coords_b]), grid, 3)
    with torch.no_grad():
        joint = model(batch)
        alone = [model(a), model(b)]
    joint_coords, joint_features = _sorted_by_coords(joint)
    counts = joint.batch_counts().tolist()
    assert counts[1] == 0
    split = [joint_features[: counts[0]], joint_features[counts[0] :]]
    for k, single in enumerate(alone):
        coords, features = _sorted_by_coords(single)
        assert torch.equal(joint_coords[joint_coords[:, 0] == 2 * k][:, 1:], coords[:, 1:])
        torch.testing.assert_close(split[k], features, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["pillar", "voxel"])
def test_sample_smaller_than_a_set(name: str) -> None:
    g = torch.Generator().manual_seed(5)
    torch.manual_seed(5)
    model = _model(name).eval()
    voxels = _voxels([2], TINY[name]["sparse_shape"], g)
    with torch.no_grad():
        out = model(voxels)
    assert out.num_voxels >= 1 and torch.isfinite(out.features).all()


@pytest.mark.parametrize("name", ["pillar", "voxel"])
@pytest.mark.parametrize("training", [True, False])
def test_all_empty_batch(name: str, training: bool) -> None:
    torch.manual_seed(6)
    model = _model(name).train(training)
    grid = TINY[name]["sparse_shape"]
    voxels = SparseVoxels(torch.zeros(0, C), torch.zeros(0, 4, dtype=torch.int32), grid, 2)
    out = model(voxels)
    assert out.features.shape == (0, C) and out.coords.shape == (0, 4)
    assert out.spatial_shape == model.out_spatial_shape and out.batch_size == 2


def test_checkpointing_gives_the_same_gradients() -> None:
    g = torch.Generator().manual_seed(7)
    torch.manual_seed(7)
    plain = _model("voxel").train()
    ckpt = _model("voxel", use_checkpoint=True).train()
    ckpt.load_state_dict(plain.state_dict())
    voxels = _voxels([40, 20], TINY_VOXEL["sparse_shape"], g)
    grads = []
    for model in (plain, ckpt):
        out = model(voxels.replace_features(voxels.features.clone()))
        out.features.pow(2).sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_errors() -> None:
    with pytest.raises(ValueError, match="one entry per stage"):
        DSVT(C, (8, 12, 16), set_sizes=(6, 6), num_blocks=(1,), window_shapes=((4, 4, 8), (4, 4, 2)),
             shifts=None, downsample_strides=((1, 1, 4),))  # fmt: skip
    with pytest.raises(ValueError, match="windows must be 3D"):
        DSVT(C, (8, 12, 16), set_sizes=(6,), num_blocks=(1,), window_shapes=((4, 4, 1),), shifts=None)
    with pytest.raises(ValueError, match=r"\(x, y, z\)"):
        DSVT(C, (1, 12, 16), window_shapes=((4, 4),), shifts=None)
    model = _model("pillar")
    g = torch.Generator().manual_seed(8)
    with pytest.raises(ValueError, match="grid"):
        model(_voxels([5], (1, 20, 20), g))
    with pytest.raises(ValueError, match="channels"):
        model(_voxels([5], TINY_PILLAR["sparse_shape"], g).replace_features(torch.zeros(5, 8)))
