"""FlatFormer: parameter counts, the positional encoding, the layer against nn.MultiheadAttention
over the padded groups, batch consistency, small samples, shared partitions, errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pointformer.models.backbones import FlatFormer
from pointformer.models.backbones import flatformer as flatformer_module
from pointformer.models.layers import PostNormAttentionLayer, sinusoidal_position_encoding_2d
from pointformer.ops import _library, partition_flattened
from pointformer.structures import SparseVoxels

GRID = (1, 12, 16)  # (Z, Y, X)


def _voxels(counts: list[int], channels: int, generator: torch.Generator, grid=GRID) -> SparseVoxels:
    """Random distinct pillars, ``counts[b]`` in sample b."""
    _, y, x = grid
    coords = []
    for b, n in enumerate(counts):
        cell = torch.randperm(y * x, generator=generator)[:n].sort().values
        coords.append(torch.stack([torch.full_like(cell, b), torch.zeros_like(cell), cell // x, cell % x], 1))
    coords = torch.cat(coords).int()
    features = torch.randn(coords.shape[0], channels, generator=generator)
    return SparseVoxels(features, coords, grid, len(counts))


def _small_model(**kwargs) -> FlatFormer:
    args = dict(num_heads=2, num_blocks=1, window_shape=(4, 3), group_size=8, ffn_channels=32)
    args.update(kwargs)
    return FlatFormer(16, **args)


def _layer_reference(layer: PostNormAttentionLayer, x, pe, partition) -> torch.Tensor:
    """The official structure: gather the padded (G, S) groups, nn.MultiheadAttention over every
    slot (the repeats included), scatter each voxel from its slot, post-norm FFN."""
    c = x.shape[1]
    mha = nn.MultiheadAttention(c, layer.attn.num_heads, batch_first=True)
    mha.load_state_dict(layer.attn.state_dict())
    qk = partition.gather(x + pe)
    attn, _ = mha(qk, qk, partition.gather(x), need_weights=False)
    x = layer.norm1(x + partition.scatter(attn))
    return layer.norm2(x + layer.fc2(layer.act(layer.fc1(x))))


def test_parameter_counts_official_config() -> None:
    layer = PostNormAttentionLayer(128, 8, 256)
    assert sum(p.numel() for p in layer.parameters()) == 132_480
    model = FlatFormer(128, num_heads=8, num_blocks=2, window_shape=(13, 13), group_size=144, ffn_channels=256)
    assert sum(p.numel() for p in model.parameters()) == 1_059_840
    assert model.out_channels == 128
    # nn.MultiheadAttention's parameter names and shapes.
    shapes = {k: tuple(v.shape) for k, v in layer.attn.state_dict().items()}
    assert shapes == {
        "in_proj_weight": (384, 128),
        "in_proj_bias": (384,),
        "out_proj.weight": (128, 128),
        "out_proj.bias": (128,),
    }


def test_xavier_init() -> None:
    torch.manual_seed(0)
    model = FlatFormer(32, num_heads=4, num_blocks=1, ffn_channels=64)
    for name, p in model.named_parameters():
        if p.dim() > 1:
            bound = math.sqrt(6.0 / (p.shape[0] + p.shape[1]))
            assert p.abs().max() <= bound and p.abs().max() > 0.9 * bound, name


@pytest.mark.parametrize("channels", [12, 10, 128])
def test_positional_encoding_hand_formula(channels: int) -> None:
    coords = torch.tensor([[0, 0, 0, 0], [1, 0, 5, 3], [0, 0, 467, 201], [2, 0, 17, 466]], dtype=torch.int32)
    temperature = 10000.0
    pe = sinusoidal_position_encoding_2d(coords, channels, temperature)
    assert pe.shape == (4, channels) and pe.dtype == torch.float32
    length = (channels // 4) * 2
    expected = torch.zeros(4, channels, dtype=torch.float64)
    for n in range(4):
        for part, pos in enumerate((int(coords[n, 3]), int(coords[n, 2]))):  # x block, then y block
            for j in range(0, length, 2):
                freq = temperature ** (j / length)
                expected[n, part * length + j] = math.sin(pos / freq)
                expected[n, part * length + j + 1] = math.cos(pos / freq)
    torch.testing.assert_close(pe.double(), expected, rtol=0, atol=2e-4)
    if channels % 4:
        assert (pe[:, 2 * length :] == 0).all()


BACKENDS = ["sdpa", "reference"] + (["fused"] if _library.has_kernel("grouped_attention", torch.device("cpu")) else [])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("axis,shift", [("x", False), ("y", True)])
def test_layer_matches_multihead_attention_reference(backend: str, axis: str, shift: bool, generator) -> None:
    """Two samples, one with fewer voxels than a group (cyclic repeats) and one with a partial last group."""
    torch.manual_seed(0)
    voxels = _voxels([21, 5], 16, generator)
    partition = partition_flattened(voxels.coords, 2, GRID, (1, 3, 4), 8, axis, shift)
    layer = PostNormAttentionLayer(16, 2, 32, attention_backend=backend)
    for p in layer.parameters():  # non-trivial biases and norms
        nn.init.normal_(p, std=0.3)
    pe = sinusoidal_position_encoding_2d(voxels.coords, 16)
    with torch.no_grad():
        out = layer(voxels.features, pe, partition)
        expected = _layer_reference(layer, voxels.features, pe, partition)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_batch_consistency(generator: torch.Generator) -> None:
    """A batch of two (one smaller than a group) equals each sample alone, in eval mode."""
    torch.manual_seed(0)
    model = _small_model(num_blocks=2).eval()
    batch = _voxels([30, 5], 16, generator)
    with torch.no_grad():
        out = model(batch).features
        for b in range(2):
            rows = batch.coords[:, 0] == b
            coords = batch.coords[rows].clone()
            coords[:, 0] = 0
            alone = model(SparseVoxels(batch.features[rows], coords, GRID, 1)).features
            torch.testing.assert_close(out[rows], alone, rtol=1e-5, atol=1e-5)


def test_sample_smaller_than_group(generator: torch.Generator) -> None:
    torch.manual_seed(0)
    model = _small_model(group_size=64).eval()
    voxels = _voxels([3], 16, generator)
    with torch.no_grad():
        out = model(voxels).features
    assert out.shape == (3, 16) and torch.isfinite(out).all()
    # Attention mixes the three voxels: a change of one moves the others.
    changed = voxels.features.clone()
    changed[0] += 1.0
    with torch.no_grad():
        out2 = model(voxels.replace_features(changed)).features
    assert not torch.allclose(out[1:], out2[1:])


def test_forward_backward(generator: torch.Generator) -> None:
    torch.manual_seed(0)
    model = _small_model().train()
    voxels = _voxels([25, 11], 16, generator)
    features = voxels.features.clone().requires_grad_(True)
    out = model(voxels.replace_features(features))
    assert out.features.shape == (36, 16)
    assert torch.equal(out.coords, voxels.coords) and out.spatial_shape == GRID
    out.features.square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert features.grad.abs().sum() > 0


def test_partitions_computed_once_per_order(generator: torch.Generator, monkeypatch) -> None:
    calls = []
    original = flatformer_module.partition_flattened

    def counting(*args):
        calls.append(args[-2:])
        return original(*args)

    monkeypatch.setattr(flatformer_module, "partition_flattened", counting)
    model = _small_model(num_blocks=3).eval()
    voxels = _voxels([20, 9], 16, generator)
    with torch.no_grad():
        model(voxels)
        model(voxels.replace_features(voxels.features * 2))  # same layout: cache shared
    assert sorted(calls) == sorted([("x", False), ("x", True), ("y", False), ("y", True)])


def test_empty_scene() -> None:
    model = _small_model().eval()
    voxels = SparseVoxels(torch.zeros(0, 16), torch.zeros(0, 4, dtype=torch.int32), GRID, 2)
    with torch.no_grad():
        out = model(voxels)
    assert out.features.shape == (0, 16)


def test_window_larger_than_grid(generator: torch.Generator) -> None:
    voxels = _voxels([5], 16, generator)
    with pytest.raises(ValueError, match="larger than the grid"):
        _small_model(window_shape=(17, 3))(voxels)  # wx = 17 > X = 16
    with pytest.raises(ValueError, match="larger than the grid"):
        _small_model(window_shape=(4, 13))(voxels)  # wy = 13 > Y = 12
