"""The eval-mode fast path (pointformer.models.fastpath): outputs equal to the eager path's to float32
rounding for every config's dense stages (BatchNorm statistics randomised so that folding matters),
whole-detector detections equal, the original model untouched and its state dict unchanged, the
copy refusing train mode, and BatchNorm folding into grouped transposed convolutions."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

from pointformer.config import load_config
from pointformer.models import build_detector
from pointformer.models.bev import ScatterToBEV
from pointformer.models.fastpath import (
    ContiguousBranches,
    ConvReLU,
    ConvTransposeReLU,
    FusedBasicBlock,
    FusedSeparateHeads,
    conv_add_relu,
    conv_relu,
    fast_inference_copy,
    fold_batchnorm,
)
from tests.models.test_detector import make_batch, random_frame, small_detector

pytestmark = pytest.mark.usefixtures("one_thread")


def randomise_norms(model: nn.Module, seed: int = 0) -> None:
    """Running statistics and affine parameters away from their identity initialisation."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(c, generator=g) * 0.4 - 0.2)


def dense(model, x):
    return model.head(model.neck(model.backbone2d(x)))


def assert_close_outputs(ref, out) -> None:
    assert len(ref.tasks) == len(out.tasks)
    for a, b in zip(ref.tasks, out.tasks, strict=True):
        for name in ("heatmap", "center", "height", "dim", "rot", "vel", "iou"):
            x, y = getattr(a, name), getattr(b, name)
            assert (x is None) == (y is None), name
            if x is None:
                continue
            assert y.shape == x.shape and y.is_contiguous(), name
            # float32 rounding of sums over ~600-3500 products in a different order
            scale = float(x.abs().max()) + 1e-6
            torch.testing.assert_close(y, x, rtol=0, atol=2e-5 * scale, msg=name)


# Map sides divisible by every config's strides (ScatterFormer's DED blocks need 4).
CONFIGS = [
    "waymo_flatformer.yaml",
    "waymo_dsvt_pillar.yaml",
    "waymo_scatterformer.yaml",
    "waymo_centerpoint.yaml",
    "nuscenes_centerpoint.yaml",  # six tasks, velocity branches, bias before norm
]


@pytest.mark.parametrize("config", CONFIGS)
def test_dense_stages_equal_eager(config):
    torch.manual_seed(0)
    model = build_detector(load_config(config)).eval()
    randomise_norms(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = fast_inference_copy(model)
    stacked = fast_inference_copy(model, fuse_heads=True)  # the branches as off the CPU
    x = torch.randn(1, model.backbone2d.in_channels, 24, 20, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, out, out_stacked = dense(model, x), dense(fast, x), dense(stacked, x)
    assert_close_outputs(ref, out)
    assert_close_outputs(ref, out_stacked)
    # the original is untouched: same keys, same values, still BatchNorms (its state dict loads as before)
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.head.modules() if m is not fast.head.shared_conv)
    # on the CPU the branches run one after the other (fastpath docstring); fuse_heads=True stacks them
    assert isinstance(fast.head.fused_branches, ContiguousBranches)
    assert isinstance(stacked.head.fused_branches, FusedSeparateHeads)
    fused = [m for m in fast.modules() if isinstance(m, (ConvReLU, FusedBasicBlock))]
    assert fused and isinstance(fast.head.shared_conv[0], ConvReLU)
    # SECONDFPN's upsampling ConvTranspose2d + ReLU as one call
    upsampling = any(isinstance(m, nn.ConvTranspose2d) for m in model.neck.modules())
    assert any(isinstance(m, ConvTransposeReLU) for m in fast.neck.modules()) == upsampling
    if config == "waymo_dsvt_pillar.yaml":
        assert sum(isinstance(m, FusedBasicBlock) for m in fast.backbone2d.modules()) == 8


@pytest.mark.parametrize(
    "channels_last,fuse_heads,activations", [(False, False, False), (False, True, False), (True, False, True)]
)
def test_each_option_alone_equals_eager(channels_last, fuse_heads, activations):
    torch.manual_seed(0)
    model = build_detector(load_config("waymo_flatformer.yaml")).eval()
    randomise_norms(model)
    fast = fast_inference_copy(model, channels_last, fuse_heads, activations)
    x = torch.randn(2, model.backbone2d.in_channels, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert_close_outputs(dense(model, x), dense(fast, x))
    assert isinstance(getattr(fast.head, "fused_branches", None), FusedSeparateHeads) == fuse_heads


def test_whole_detector_detections_equal_and_train_mode_refused():
    model = small_detector().eval()
    randomise_norms(model)
    fast = fast_inference_copy(model)
    g = torch.Generator().manual_seed(3)
    batch = make_batch([random_frame(g, 600, 3), random_frame(g, 400, 2)])
    with torch.no_grad():
        ref, out = model(batch), fast(batch)
        # the fast copy's BEV canvas is channels-last from the start, with the same values
        voxels = model.backbone3d(model.encode_voxels(batch))
        canvas, fast_canvas = model.bev(voxels), fast.bev(voxels)
    assert isinstance(fast.bev, ScatterToBEV) and fast.bev.channels_last and not model.bev.channels_last
    assert fast_canvas.is_contiguous(memory_format=torch.channels_last) and torch.equal(fast_canvas, canvas)
    assert len(ref) == len(out) == 2
    for a, b in zip(ref, out, strict=True):
        assert len(a) > 0
        # Scores differ by rounding; the top boxes (clear of near-ties) are the same ones.
        k = min(10, len(a), len(b))
        torch.testing.assert_close(b.scores[:k], a.scores[:k], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(b.boxes[:k], a.boxes[:k], rtol=1e-4, atol=1e-4)
        assert torch.equal(b.labels[:k], a.labels[:k])
    with pytest.raises(RuntimeError, match="fast-path copy"):
        fast.train()
    # the copy's eval never touched the original's modules
    model.train()
    assert all(m.training for m in model.modules())
    assert not any(m.training for m in fast.modules())


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_conv_calls_equal_the_plain_ops(grad, channels_last):
    g = torch.Generator().manual_seed(6)
    conv = nn.Conv2d(8, 8, 3, padding=1, stride=1, groups=2)
    x = torch.randn(2, 8, 9, 7, generator=g)
    other = torch.randn(2, 8, 9, 7, generator=g)
    if channels_last:
        conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(grad)  # with autograd the plain ops run (the fused kernel has no backward)
    with torch.set_grad_enabled(grad):
        torch.testing.assert_close(conv_relu(conv, x), torch.relu(conv(x)), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(conv_add_relu(conv, x, other), torch.relu(conv(x) + other), rtol=1e-5, atol=1e-5)
        if grad:
            conv_add_relu(conv, x, other).sum().backward()
            assert x.grad is not None


@pytest.mark.parametrize("groups", [1, 2])
def test_fold_batchnorm_conv_and_transposed(groups):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 4, 6, 6, generator=g)
    for conv in (
        nn.Conv2d(4, 6, 3, padding=1, groups=groups, bias=True),
        nn.ConvTranspose2d(4, 6, 2, stride=2, groups=groups, bias=False),
    ):
        bn = nn.BatchNorm2d(6, eps=1e-3).eval()
        randomise_norms(nn.Sequential(bn), seed=5)
        fused = fold_batchnorm(conv, bn)
        with torch.no_grad():
            torch.testing.assert_close(fused(x), bn(conv(x)), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="running statistics"):
        fold_batchnorm(nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1, track_running_stats=False))


def _tensors(value) -> list[torch.Tensor]:
    """Every tensor in a head's output (dataclasses, mappings, sequences), in a fixed order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if dataclasses.is_dataclass(value):
        return [t for f in dataclasses.fields(value) for t in _tensors(getattr(value, f.name))]
    if isinstance(value, dict):
        return [t for k in sorted(value) for t in _tensors(value[k])]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def test_another_head_keeps_nchw_and_equals_eager():
    """A TransFusion head (not a CenterHead): folded and fused, no channels-last, same outputs."""
    torch.manual_seed(0)
    model = build_detector(load_config("nuscenes_dsvt_pillar.yaml")).eval()
    randomise_norms(model)
    fast = fast_inference_copy(model)
    assert not hasattr(fast.head, "fused_branches")
    _, y, x = model.grid.shape  # the head checks its map against the grid
    bev = torch.randn(1, model.backbone2d.in_channels, y, x, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ref, out = _tensors(dense(model, bev)), _tensors(dense(fast, bev))
    assert len(ref) == len(out) > 0
    for a, b in zip(ref, out, strict=True):
        assert a.shape == b.shape
        if a.is_floating_point():
            torch.testing.assert_close(b, a, rtol=0, atol=2e-5 * (float(a.abs().max()) + 1e-6))
        else:
            assert torch.equal(a, b)


@pytest.mark.parametrize("feat_channels", [(16,), (16, 32), (8, 16, 24)])
@pytest.mark.parametrize("pillar", [False, True])
def test_fast_voxel_encoder_equals_eager(feat_channels, pillar):
    """The voxel encoder's folded per-point norms and per-voxel shared product: the same voxel
    features as the eager encoder (float32 rounding), the original encoder untouched."""
    from pointformer.models.encoders.dynamic_vfe import DynamicVFE
    from pointformer.models.encoders.pillar_vfe import PillarVFE
    from pointformer.models.fastpath import fast_voxel_encoder
    from pointformer.ops import voxelize
    from pointformer.structures import VoxelGrid

    g = torch.Generator().manual_seed(7)
    rng, size = (-8.0, -8.0, -2.0, 8.0, 8.0, 4.0), (0.5, 0.5, 6.0)
    grid = VoxelGrid(rng, size)
    if pillar:
        encoder = PillarVFE(5, grid, feat_channels=feat_channels, max_points_per_voxel=8)
    else:
        encoder = DynamicVFE(5, grid, feat_channels=feat_channels)
    for m in encoder.modules():
        if isinstance(m, nn.BatchNorm1d):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.randn(c, generator=g))  # negative scales too
            m.bias.data.copy_(torch.rand(c, generator=g) * 0.4 - 0.2)
    encoder.eval()
    points = torch.cat([torch.rand(3000, 2, generator=g) * 20 - 10, torch.rand(3000, 3, generator=g)], 1)
    voxels = voxelize(points, size, rng, max_points_per_voxel=8 if pillar else -1)
    fast = copy.deepcopy(encoder)
    folded = fast_voxel_encoder(fast)
    assert folded == len(feat_channels) - 1 and fast.per_voxel_shared_inputs
    assert not encoder.per_voxel_shared_inputs
    with torch.no_grad():
        ref, out = encoder(points, voxels), fast(points, voxels)
    assert (ref.features != 0).any()
    scale = float(ref.features.abs().max())
    torch.testing.assert_close(out.features, ref.features, rtol=0, atol=2e-6 * scale)
    assert torch.equal(out.coords, ref.coords)
