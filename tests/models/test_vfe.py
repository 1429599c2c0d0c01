"""DynamicVFE: parameter count, a per-voxel loop reference, ignored points, gradients."""

from __future__ import annotations

import pytest
import torch

from pointformer.models.encoders import DynamicVFE
from pointformer.ops import voxelize
from pointformer.structures import VoxelGrid

RANGE = (0.0, -2.0, -1.0, 4.0, 2.0, 1.0)
VOXEL = (1.0, 1.0, 1.0)  # 4 x 4 x 2 cells


def _points(n: int, channels: int, generator: torch.Generator) -> torch.Tensor:
    low, high = torch.tensor(RANGE[:3]), torch.tensor(RANGE[3:])
    xyz = low + (high - low) * torch.rand(n, 3, generator=generator)
    return torch.cat([xyz, torch.randn(n, channels - 3, generator=generator)], dim=1)


def _randomize_norms(vfe: DynamicVFE, generator: torch.Generator) -> None:
    for layer in vfe.layers:
        bn = layer[1]
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=generator))
        bn.running_var.copy_(torch.rand(bn.num_features, generator=generator) + 0.5)
        bn.weight.data.copy_(torch.randn(bn.num_features, generator=generator))
        bn.bias.data.copy_(torch.randn(bn.num_features, generator=generator))


def _loop_reference(
    vfe: DynamicVFE, points: torch.Tensor, point_to_voxel, coords, grid: VoxelGrid, absolute_xyz: bool = True
) -> torch.Tensor:
    """Voxel by voxel, point by point where it matters: the eval-mode DynamicVFE."""

    def layer_apply(layer, x):
        linear, bn = layer[0], layer[1]
        y = x @ linear.weight.T
        y = (y - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
        return torch.relu(y)

    outputs = []
    for m in range(coords.shape[0]):
        pts = points[point_to_voxel == m]
        assert pts.shape[0] > 0
        mean = pts[:, :3].mean(0)
        _, z, y, x = (int(v) for v in coords[m])
        centre = torch.tensor([grid.range_min[d] + (idx + 0.5) * grid.voxel_size[d] for d, idx in enumerate((x, y, z))])
        own = pts if absolute_xyz else pts[:, 3:]
        feats = torch.cat([own, pts[:, :3] - mean, pts[:, :3] - centre], dim=1)
        for i, layer in enumerate(vfe.layers):
            point_feats = layer_apply(layer, feats)
            voxel_feat = point_feats.max(0).values
            if i + 1 < len(vfe.layers):
                feats = torch.cat([point_feats, voxel_feat.expand_as(point_feats)], dim=1)
        outputs.append(voxel_feat)
    return torch.stack(outputs)


def test_parameter_count_official_config() -> None:
    grid = VoxelGrid((-74.88, -74.88, -2, 74.88, 74.88, 4), (0.32, 0.32, 6))
    vfe = DynamicVFE(5, grid, feat_channels=(64, 128))
    assert sum(p.numel() for p in vfe.parameters()) == 17_472
    assert vfe.out_channels == 128
    # Without the two offsets the first layer has 5 inputs instead of 11.
    plain = DynamicVFE(5, grid, with_cluster_center=False, with_voxel_center=False)
    assert sum(p.numel() for p in plain.parameters()) == 17_472 - 6 * 64


@pytest.mark.parametrize("absolute_xyz", [True, False])
def test_matches_loop_reference(absolute_xyz: bool, generator: torch.Generator) -> None:
    torch.manual_seed(0)
    grid = VoxelGrid(RANGE, VOXEL)
    points = _points(60, 4, generator)
    points[:4, 0] += 10.0  # outside the range: ignored
    batch = (torch.arange(60) >= 35).long()
    vox = voxelize(points, VOXEL, RANGE, batch, batch_size=2)
    assert (vox.point_to_voxel == -1).sum() == 4
    vfe = DynamicVFE(4, grid, feat_channels=(8, 16, 12), with_absolute_xyz=absolute_xyz)
    assert vfe.layers[0][0].in_features == (4 if absolute_xyz else 1) + 6
    _randomize_norms(vfe, generator)
    vfe.eval()
    with torch.no_grad():
        out = vfe(points, vox)
        expected = _loop_reference(vfe, points, vox.point_to_voxel, vox.coords, grid, absolute_xyz)
    assert out.features.shape == (vox.num_voxels, 12)
    assert torch.equal(out.coords, vox.coords)
    assert out.spatial_shape == grid.shape and out.batch_size == 2
    torch.testing.assert_close(out.features, expected, rtol=1e-5, atol=1e-5)


def test_dropped_points_are_ignored(generator: torch.Generator) -> None:
    """Points marked -1 (here: capped by max_points_per_voxel) change nothing, even in training BN."""
    grid = VoxelGrid(RANGE, VOXEL)
    points = _points(50, 4, generator)
    capped = voxelize(points, VOXEL, RANGE, max_points_per_voxel=2)
    dropped = capped.point_to_voxel == -1
    assert dropped.any()
    vfe = DynamicVFE(4, grid, feat_channels=(8, 8)).train()
    out_all = vfe(points, capped).features
    garbage = points.clone()
    garbage[dropped] = 1e6  # would dominate means, maxima and BN statistics if used
    out_garbage = vfe(garbage, capped).features
    torch.testing.assert_close(out_garbage, out_all)


def test_forward_backward(generator: torch.Generator) -> None:
    torch.manual_seed(0)
    grid = VoxelGrid(RANGE, VOXEL)
    points = _points(80, 5, generator).requires_grad_(True)
    vox = voxelize(points.detach(), VOXEL, RANGE)
    vfe = DynamicVFE(5, grid, feat_channels=(16, 32)).train()
    out = vfe(points, vox).features
    assert out.shape == (vox.num_voxels, 32)
    out.square().sum().backward()
    for name, p in vfe.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert points.grad is not None and points.grad.abs().sum() > 0


def test_rejects_wrong_width(generator: torch.Generator) -> None:
    grid = VoxelGrid(RANGE, VOXEL)
    points = _points(10, 4, generator)
    vox = voxelize(points, VOXEL, RANGE)
    with pytest.raises(ValueError, match=r"points must be \(N, 5\)"):
        DynamicVFE(5, grid)(points, vox)
