"""ScatterToBEV against SparseVoxels.dense(), SECOND and SECONDFPN: counts, shapes, residuals, gradients."""

from __future__ import annotations

import pytest
import torch

from pointformer.models.backbones import SECOND
from pointformer.models.bev import ScatterToBEV
from pointformer.models.necks import SECONDFPN
from pointformer.structures import SparseVoxels


def _voxels(grid, counts, channels, generator) -> SparseVoxels:
    z, y, x = grid
    coords = []
    for b, n in enumerate(counts):
        cell = torch.randperm(z * y * x, generator=generator)[:n]
        coords.append(torch.stack([torch.full_like(cell, b), cell // (y * x), cell // x % y, cell % x], 1))
    coords = torch.cat(coords).int()
    return SparseVoxels(torch.randn(coords.shape[0], channels, generator=generator), coords, grid, len(counts))


@pytest.mark.parametrize("grid", [(1, 6, 7), (3, 5, 4)])
def test_scatter_matches_dense(grid, generator: torch.Generator) -> None:
    voxels = _voxels(grid, [9, 0, 13], 5, generator)  # sample 1 empty
    scatter = ScatterToBEV(5, num_z=grid[0])
    bev = scatter(voxels)
    z, y, x = grid
    assert bev.shape == (3, 5 * z, y, x) and scatter.out_channels == 5 * z
    assert torch.equal(bev, voxels.dense().reshape(3, 5 * z, y, x))
    assert (bev[1] == 0).all()


def test_scatter_gradient(generator: torch.Generator) -> None:
    voxels = _voxels((1, 6, 7), [10, 4], 3, generator)
    features = voxels.features.clone().requires_grad_(True)
    weight = torch.randn(2, 3, 6, 7, generator=generator)
    (ScatterToBEV(3)(voxels.replace_features(features)) * weight).sum().backward()
    c = voxels.coords.long()
    torch.testing.assert_close(features.grad, weight[c[:, 0], :, c[:, 2], c[:, 3]])


def test_scatter_rejects_other_z_and_width(generator: torch.Generator) -> None:
    voxels = _voxels((2, 4, 4), [3], 5, generator)
    with pytest.raises(ValueError, match="Z = 1"):
        ScatterToBEV(5)(voxels)
    with pytest.raises(ValueError, match="expected 4 channels"):
        ScatterToBEV(4, num_z=2)(voxels)


def test_second_parameter_count_and_shapes() -> None:
    second = SECOND(128, out_channels=(64, 128), layer_nums=(3, 3), strides=(1, 2))
    assert sum(p.numel() for p in second.parameters()) == 701_952
    assert second.out_channels == (64, 128)
    small = SECOND(6, out_channels=(8, 16), layer_nums=(1, 2), strides=(1, 2))
    outs = small(torch.randn(2, 6, 10, 13))
    assert [tuple(o.shape) for o in outs] == [(2, 8, 10, 13), (2, 16, 5, 7)]


def test_second_residual_units(generator: torch.Generator) -> None:
    """A unit is residual exactly when its output has its input's shape (the first unit too when
    in_channels == out_channels[0] and the stride is 1), added after the ReLU."""
    torch.manual_seed(0)
    second = SECOND(8, out_channels=(8, 16), layer_nums=(2, 1), strides=(1, 2), residual=True).eval()
    x = torch.randn(2, 8, 6, 6, generator=generator)
    with torch.no_grad():
        outs = second(x)
        s0, s1 = second.stages
        h = x
        for unit in s0:  # all shape-preserving
            h = unit(h) + h
        expected0 = h
        h = s1[0](h)  # stride 2, 8 -> 16: no residual
        expected1 = s1[1](h) + h
        plain = SECOND(8, (8, 16), (2, 1), (1, 2), residual=False).eval()
        plain.load_state_dict(second.state_dict())
        plain_outs = plain(x)
    torch.testing.assert_close(outs[0], expected0)
    torch.testing.assert_close(outs[1], expected1)
    assert not torch.allclose(outs[1], plain_outs[1])


def test_fpn_parameter_count_and_concat() -> None:
    fpn = SECONDFPN((64, 128), out_channels=(128, 128), upsample_strides=(1, 2))
    assert sum(p.numel() for p in fpn.parameters()) == 74_240
    assert fpn.out_channels == 256
    small = SECONDFPN((8, 16), out_channels=(4, 6), upsample_strides=(1, 2))
    out = small([torch.randn(2, 8, 10, 12), torch.randn(2, 16, 5, 6)])
    assert out.shape == (2, 10, 10, 12)


def test_fpn_fractional_stride_is_a_strided_conv() -> None:
    fpn = SECONDFPN((8, 16), out_channels=(4, 4), upsample_strides=(0.5, 1))
    resample = fpn.blocks[0][0]
    assert isinstance(resample, torch.nn.Conv2d) and resample.kernel_size == (2, 2) and resample.stride == (2, 2)
    out = fpn([torch.randn(1, 8, 8, 10), torch.randn(1, 16, 4, 5)])
    assert out.shape == (1, 8, 4, 5)


def test_bev_pipeline_forward_backward(generator: torch.Generator) -> None:
    """Scatter -> SECOND -> SECONDFPN on a small grid, training mode: every parameter gets a gradient."""
    torch.manual_seed(0)
    voxels = _voxels((1, 8, 10), [20, 15], 6, generator)
    features = voxels.features.clone().requires_grad_(True)
    scatter = ScatterToBEV(6)
    second = SECOND(6, out_channels=(8, 16), layer_nums=(1, 1), strides=(1, 2)).train()
    fpn = SECONDFPN(second.out_channels, out_channels=(8, 8), upsample_strides=(1, 2)).train()
    out = fpn(second(scatter(voxels.replace_features(features))))
    assert out.shape == (2, fpn.out_channels, 8, 10)
    out.square().mean().backward()
    for name, p in [*second.named_parameters(), *fpn.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert features.grad.abs().sum() > 0
