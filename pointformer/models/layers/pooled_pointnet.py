"""A PointNet layer followed by a max over each voxel's points, computed in pooled form.

``segment_max(ReLU(BN(x W^T + b)))`` is what a pillar/voxel feature encoder computes for every
point (``P`` rows, e.g. 170k points of a Waymo frame) before keeping one value per voxel and channel
(``M`` rows, e.g. 5k pillars). BatchNorm is a per-channel affine map with scale
``s = gamma / sqrt(var + eps)`` and ReLU is monotone, so the max moves inside both:

    max_p ReLU(s (y_p - mu) + beta) = ReLU(|s| (max_p (sign(s) y_p) - sign(s) mu) + beta)

and ``sign(s) = sign(gamma)``. The batch statistics ``mu`` and ``var`` of ``y = x W^T + b`` follow from
the mean and covariance of ``x`` when ``x`` is narrow (``W mean(x) + b`` and ``diag(W cov(x) W^T)``),
and from one pass over ``y`` otherwise (``_RowMoments``).
So the per-point work is one matrix product and one segment max; BatchNorm, ReLU and their backward
passes run on ``M`` rows instead of ``P``. The values, the gradients (to ``x``, ``W``, ``b``, ``gamma``,
``beta``) and the running-statistics updates are those of the per-point layer, up to float rounding.
"""

from __future__ import annotations

import torch
from torch import nn

from pointformer.ops import segment_reduce

# Inputs at most this wide take their BatchNorm statistics from the input covariance (an F x F
# product); wider inputs from the per-point outputs, which is cheaper then.
COVARIANCE_MAX_INPUTS = 32


def pooled_linear_bn_relu(
    x: torch.Tensor,
    segment: torch.Tensor,
    num_segments: int,
    linear: nn.Linear,
    norm: nn.BatchNorm1d,
    segment_inputs: torch.Tensor | None = None,
) -> torch.Tensor:
    """``segment_reduce(relu(norm(linear(x))), segment, num_segments, "max")`` in pooled form.

    Args:
        x: ``(P, F)`` float per-point inputs (all rows enter the BatchNorm statistics, as in the
            per-point layer; rows whose segment is outside ``[0, num_segments)`` are not pooled).
        segment: ``(P,)`` integer segment (voxel) id of each row.
        num_segments: ``M``.
        linear: ``nn.Linear(F, C)``, with or without bias (``nn.Linear(F + G, C)`` with
            ``segment_inputs``).
        norm: ``nn.BatchNorm1d(C)``; in training mode its running statistics are updated exactly as
            its own forward would (momentum, or the cumulative average when momentum is None).
        segment_inputs: optional ``(M, G)`` inputs shared by the rows of each segment (a previous
            layer's pooled features; every ``segment`` then in ``[0, M)``): the layer reads
            ``[x, segment_inputs[segment]]``. With
            running statistics (eval) their product is formed once per segment instead of once per
            row, since ``max_p (a_p + c) = max_p a_p + c`` for a ``c`` shared by the segment (the
            sums' order differs from the per-row product's: equal to float rounding); batch
            statistics need every row's output, so in training the rows are built.

    Returns:
        ``(M, C)`` pooled features; empty segments are 0, as the per-point layer's max gives.
    """
    batch_stats = norm.training or norm.running_mean is None
    if segment_inputs is not None and batch_stats:
        x, segment_inputs = torch.cat([x, segment_inputs[segment]], dim=1), None
    if batch_stats and x.shape[0] < 2:
        # Too few rows for batch statistics: the per-point layer, with BatchNorm's own error.
        return segment_reduce(torch.relu(norm(linear(x))), segment, num_segments, "max")
    channels = linear.out_features
    gamma = norm.weight if norm.affine else x.new_ones(channels)
    beta = norm.bias if norm.affine else x.new_zeros(channels)
    sign = torch.where(gamma.detach() < 0, -1.0, 1.0).to(x.dtype)
    weight = linear.weight * sign[:, None]
    if not batch_stats:
        # Running statistics: what is shared by a segment's rows (the bias, the product with
        # segment_inputs) is added after the max, to M rows instead of P.
        own = x.shape[1]
        top = segment_reduce(x @ weight[:, :own].t(), segment, num_segments, "max")
        if segment_inputs is not None:
            top = top + segment_inputs @ weight[:, own:].t()
        if linear.bias is not None:
            top = top + linear.bias * sign
        return _normalized_max(top, x, segment, num_segments, gamma, beta, sign * norm.running_mean,
                               norm.running_var, norm.eps)  # fmt: skip
    # x @ (contiguous F x C): autograd then forms the weight gradient as x^T G, several times faster
    # for P >> F than the G^T x that F.linear (or a transposed view) leads to.
    y = x @ weight.t().contiguous()
    if linear.bias is not None:
        y = y + linear.bias * sign
    top = segment_reduce(y, segment, num_segments, "max")

    if batch_stats:
        mean, var = _signed_batch_stats(x, y, weight, linear.bias, sign)
        if norm.training and norm.track_running_stats:
            _update_running_stats(norm, sign * mean.detach(), var.detach(), x.shape[0])
    return _normalized_max(top, x, segment, num_segments, gamma, beta, mean, var, norm.eps)


def _normalized_max(top, x, segment, num_segments, gamma, beta, mean, var, eps) -> torch.Tensor:
    """``relu(|gamma| (top - mean) / sqrt(var + eps) + beta)`` of the signed maxima ``top`` ``(M, C)``
    (``mean`` of the signed outputs), 0 for the segments without rows."""
    scale = gamma.abs() * torch.rsqrt(var + eps)
    out = torch.relu(scale * (top - mean) + beta)
    # Empty segments: 0, as the max of nothing is in segment_reduce. (A segment sum rather than a
    # bincount keeps every size static, for export.)
    counts = segment_reduce(x.new_ones(x.shape[0], 1), segment, num_segments, "sum")
    return torch.where(counts > 0, out, torch.zeros_like(out))


def _signed_batch_stats(x, y, weight, bias, sign):
    """Mean (of ``sign * y``) and biased variance of each channel of ``y`` over the rows."""
    if x.shape[1] > COVARIANCE_MAX_INPUTS:
        return _RowMoments.apply(y)
    # float64: the moments of raw coordinates (tens of metres) lose digits in float32.
    x64, w64 = x.double(), weight.double()
    mean_x = x64.mean(0)
    centred = x64 - mean_x
    cov = centred.t() @ centred / x.shape[0]
    mean = w64 @ mean_x
    if bias is not None:
        mean = mean + (bias * sign).double()
    var = ((w64 @ cov) * w64).sum(1).clamp(min=0)
    return mean.to(x.dtype), var.to(x.dtype)


class _RowMoments(torch.autograd.Function):
    """Per-column mean and biased variance of ``(P, C)`` rows, computed as BatchNorm's own forward
    computes them (one pass of ``batch_norm_update_stats``; ``y.mean`` with ``y.var`` over dim 0
    took 15x longer on the CPU), with the backward as one fused ``P x C`` expression:
    ``d mean / d y = 1 / P`` and ``d var / d y = 2 (y - mean) / P``."""

    @staticmethod
    def forward(ctx, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # (CUDA returns float32 moments for half inputs: they are handed on in the input's dtype.)
        mean, var = torch.batch_norm_update_stats(y, None, None, 0.0)
        ctx.save_for_backward(y, mean)
        return mean.to(y.dtype), var.to(y.dtype)

    @staticmethod
    def backward(ctx, grad_mean: torch.Tensor | None, grad_var: torch.Tensor | None) -> torch.Tensor:
        y, mean = ctx.saved_tensors
        rows = y.shape[0]
        grad_mean = torch.zeros_like(mean) if grad_mean is None else grad_mean
        grad_var = torch.zeros_like(mean) if grad_var is None else grad_var
        coeff = grad_var * (2.0 / rows)
        offset = grad_mean / rows - coeff * mean
        return torch.addcmul(offset.expand_as(y), y, coeff.expand_as(y)).to(y.dtype)


@torch.no_grad()
def _update_running_stats(norm: nn.BatchNorm1d, mean: torch.Tensor, var: torch.Tensor, rows: int) -> None:
    """``BatchNorm1d``'s running-statistics update from the batch mean and biased variance."""
    if norm.num_batches_tracked is not None:
        norm.num_batches_tracked.add_(1)
    factor = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
    norm.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
    norm.running_var.mul_(1 - factor).add_(var * (rows / (rows - 1)), alpha=factor)
