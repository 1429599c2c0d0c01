"""pooled_linear_bn_relu against the per-point layer it replaces: values, gradients, running stats."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from pointformer.models.layers.pooled_pointnet import COVARIANCE_MAX_INPUTS, pooled_linear_bn_relu
from pointformer.ops import segment_reduce


def _layer(in_ch: int, out_ch: int, bias: bool, generator: torch.Generator, momentum=0.1):
    linear = nn.Linear(in_ch, out_ch, bias=bias).double()
    norm = nn.BatchNorm1d(out_ch, eps=1e-3, momentum=momentum).double()
    with torch.no_grad():
        linear.weight.copy_(torch.randn(out_ch, in_ch, generator=generator, dtype=torch.float64))
        if bias:
            linear.bias.copy_(torch.randn(out_ch, generator=generator, dtype=torch.float64))
        # Negative scales too: their max over points becomes a min before the norm.
        norm.weight.copy_(torch.randn(out_ch, generator=generator, dtype=torch.float64))
        norm.bias.copy_(torch.randn(out_ch, generator=generator, dtype=torch.float64))
        norm.running_mean.copy_(torch.randn(out_ch, generator=generator, dtype=torch.float64))
        norm.running_var.copy_(torch.rand(out_ch, generator=generator, dtype=torch.float64) + 0.5)
    assert (norm.weight < 0).any() and (norm.weight > 0).any()
    return linear, norm


def _inputs(rows: int, in_ch: int, segments: int, generator: torch.Generator):
    # Coordinates tens of metres from the origin, as raw LiDAR points are.
    x = torch.randn(rows, in_ch, generator=generator, dtype=torch.float64) * 3 + 20
    segment = torch.randint(0, segments, (rows,), generator=generator)
    return x.requires_grad_(True), segment


def _per_point(x, segment, segments, linear, norm):
    return segment_reduce(torch.relu(norm(linear(x))), segment, segments, "max")


def _both(x, segment, segments, linear, norm, grad_out):
    """Outputs and gradients of the per-point layer and of the pooled form on copies of the layer."""
    results = []
    for fn in (_per_point, pooled_linear_bn_relu):
        lin, bn = copy.deepcopy(linear), copy.deepcopy(norm)
        xi = x.detach().clone().requires_grad_(True)
        out = fn(xi, segment, segments, lin, bn)
        params = [p for p in (*lin.parameters(), *bn.parameters())]
        grads = torch.autograd.grad(out, [xi, *params], grad_out)
        results.append((out, grads, bn))
    return results


@pytest.mark.parametrize("in_ch", [11, COVARIANCE_MAX_INPUTS + 8])  # covariance and direct statistics
@pytest.mark.parametrize("bias", [False, True])
def test_training_mode_matches_per_point_layer(in_ch: int, bias: bool, generator: torch.Generator) -> None:
    linear, norm = _layer(in_ch, 16, bias, generator)
    x, segment = _inputs(300, in_ch, 40, generator)
    segment[:5] = 55  # an id past num_segments: in the statistics, not pooled
    segments = 50  # ids 40..49 never occur: empty segments are 0
    grad_out = torch.randn(segments, 16, generator=generator, dtype=torch.float64)
    (ref, ref_grads, ref_bn), (out, grads, bn) = _both(x, segment, segments, linear.train(), norm.train(), grad_out)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)
    assert (out[40:] == 0).all()
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(bn.running_mean, ref_bn.running_mean, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(bn.running_var, ref_bn.running_var, rtol=1e-10, atol=1e-10)
    assert bn.num_batches_tracked == ref_bn.num_batches_tracked == 1


def test_eval_mode_and_cumulative_momentum(generator: torch.Generator) -> None:
    linear, norm = _layer(7, 8, True, generator, momentum=None)
    x, segment = _inputs(120, 7, 10, generator)
    grad_out = torch.randn(10, 8, generator=generator, dtype=torch.float64)
    (ref, ref_grads, _), (out, grads, _) = _both(x, segment, 10, linear.eval(), norm.eval(), grad_out)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-10)
    # momentum None: the cumulative average over batches, as BatchNorm1d keeps it.
    norm.train()
    ref_bn, bn = copy.deepcopy(norm), copy.deepcopy(norm)
    for _ in range(3):
        x, segment = _inputs(50, 7, 10, generator)
        _per_point(x, segment, 10, linear, ref_bn)
        pooled_linear_bn_relu(x, segment, 10, linear, bn)
    torch.testing.assert_close(bn.running_mean, ref_bn.running_mean)
    torch.testing.assert_close(bn.running_var, ref_bn.running_var)


def test_float32_waymo_scale_coordinates(generator: torch.Generator) -> None:
    """float32 points tens of metres out: the float64 moments keep the statistics exact enough."""
    linear, norm = _layer(11, 32, False, generator)
    linear, norm = linear.float(), norm.float()
    x = torch.cat([torch.rand(20000, 3, generator=generator) * 64 - 32, torch.rand(20000, 8, generator=generator)], 1)
    segment = torch.randint(0, 800, (20000,), generator=generator)
    ref = _per_point(x, segment, 800, linear, copy.deepcopy(norm).train())
    out = pooled_linear_bn_relu(x, segment, 800, linear, copy.deepcopy(norm).train())
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_one_row_in_training_raises_like_batchnorm(generator: torch.Generator) -> None:
    linear, norm = _layer(4, 4, False, generator)
    x, segment = _inputs(1, 4, 1, generator)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        pooled_linear_bn_relu(x, segment, 1, linear.train(), norm.train())
    # In eval mode one point (and no point at all) is fine.
    out = pooled_linear_bn_relu(x, segment, 1, linear.eval(), norm.eval())
    torch.testing.assert_close(out, _per_point(x, segment, 1, linear, norm))
    empty = pooled_linear_bn_relu(x[:0], segment[:0], 3, linear, norm)
    assert empty.shape == (3, 4) and (empty == 0).all()


def test_row_moments_values_and_gradients(generator: torch.Generator) -> None:
    """The wide inputs' statistics: BatchNorm's one-pass moments with a hand-written backward."""
    from pointformer.models.layers.pooled_pointnet import _RowMoments

    y = (torch.randn(40, 5, generator=generator, dtype=torch.float64) * 3 + 7).requires_grad_(True)
    mean, var = _RowMoments.apply(y)
    torch.testing.assert_close(mean, y.mean(0))
    torch.testing.assert_close(var, y.var(0, unbiased=False))
    assert torch.autograd.gradcheck(_RowMoments.apply, (y,))
    # Only one of the two used: the other's gradient arrives as None.
    assert torch.autograd.gradcheck(lambda t: _RowMoments.apply(t)[0], (y,))
    assert torch.autograd.gradcheck(lambda t: _RowMoments.apply(t)[1], (y,))


def test_float32_wide_inputs_match_per_point_layer(generator: torch.Generator) -> None:
    """FlatFormer's last VFE layer (128 -> 128) in float32: values and gradients within float rounding."""
    linear, norm = _layer(128, 128, False, generator)
    linear, norm = linear.float(), norm.float()
    x = torch.relu(torch.randn(5000, 128, generator=generator)) * 2
    segment = torch.randint(0, 400, (5000,), generator=generator)
    grad_out = torch.randn(400, 128, generator=generator)
    (ref, ref_grads, ref_bn), (out, grads, bn) = _both(x, segment, 400, linear.train(), norm.train(), grad_out)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-3, atol=1e-3 * r.abs().max().item())
    torch.testing.assert_close(bn.running_var, ref_bn.running_var)


@pytest.mark.parametrize("training", [False, True])
def test_segment_inputs_equal_the_gathered_rows(training: bool, generator: torch.Generator) -> None:
    """Shared per-segment inputs: the layer over ``[x, shared[segment]]``; in eval their product is
    taken per segment (different summation order, same values), in training the rows are built."""
    linear, norm = _layer(10, 12, True, generator)
    linear.train(training), norm.train(training)
    x, segment = _inputs(400, 6, 30, generator)
    segments = 35  # ids 30..34 never occur: empty segments are 0
    shared = (torch.randn(segments, 4, generator=generator, dtype=torch.float64) * 5).requires_grad_(True)
    grad_out = torch.randn(segments, 12, generator=generator, dtype=torch.float64)
    outs = []
    for split in (False, True):
        lin, bn = copy.deepcopy(linear), copy.deepcopy(norm)
        xi, si = x.detach().clone().requires_grad_(True), shared.detach().clone().requires_grad_(True)
        if split:
            out = pooled_linear_bn_relu(xi, segment, segments, lin, bn, segment_inputs=si)
        else:
            out = _per_point(torch.cat([xi, si[segment]], dim=1), segment, segments, lin, bn)
        grads = torch.autograd.grad(out, [xi, si, *lin.parameters(), *bn.parameters()], grad_out)
        outs.append((out, grads, bn))
    (ref, ref_grads, ref_bn), (out, grads, bn) = outs
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)
    assert (out[30:] == 0).all() and (out[:30] != 0).any()
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(bn.running_mean, ref_bn.running_mean, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(bn.running_var, ref_bn.running_var, rtol=1e-10, atol=1e-10)
