"""Segment reductions: reduce the rows of ``values`` that share a segment id (e.g. the points of
a voxel, ``Voxelization.point_to_voxel``), for voxel encoders.

``segment_reduce`` is differentiable: sum and mean spread the gradient over a segment's rows;
max sends it to the arg-max row only (the first row in input order among equal maxima).
Rows whose segment id is outside ``[0, num_segments)`` (e.g. -1 for dropped points) are ignored;
empty segments reduce to 0.
"""

from __future__ import annotations

import math

import torch

from pointformer.ops import _library

REDUCTIONS = ("sum", "mean", "max")


def segment_reduce(values: torch.Tensor, segment: torch.Tensor, num_segments: int, reduce: str = "sum") -> torch.Tensor:
    """Reduces rows of ``values`` by segment.

    Args:
        values: ``(N, *)`` floating tensor (float16/bfloat16 accumulate in float32).
        segment: ``(N,)`` integer segment id of each row.
        num_segments: ``S``, the number of output rows.
        reduce: ``"sum"``, ``"mean"`` or ``"max"``.

    Returns:
        ``(S, *)`` tensor of ``values``' dtype.
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"segment_reduce: reduce must be one of {REDUCTIONS}, got {reduce!r}")
    if values.dim() < 1 or not values.is_floating_point():
        raise ValueError(
            f"segment_reduce: values must be a floating tensor (N, *), got {values.dtype} {tuple(values.shape)}"
        )
    if segment.shape != values.shape[:1] or segment.dtype.is_floating_point:
        raise ValueError(
            f"segment_reduce: segment must be an integer tensor of shape ({values.shape[0]},), got "
            f"{segment.dtype} {tuple(segment.shape)}"
        )
    if num_segments < 0:
        raise ValueError(f"segment_reduce: num_segments must be >= 0, got {num_segments}")
    flat = values.reshape(values.shape[0], math.prod(values.shape[1:]))
    segment = segment.to(torch.int64)
    if _library.has_kernel("segment_reduce", values.device):
        out, _ = torch.ops.pointformer.segment_reduce(flat, segment, num_segments, reduce)
    else:
        out = segment_reduce_reference(flat, segment, num_segments, reduce)
    return out.reshape(num_segments, *values.shape[1:])


def segment_reduce_reference(
    values: torch.Tensor, segment: torch.Tensor, num_segments: int, reduce: str
) -> torch.Tensor:
    """Pure-PyTorch ``segment_reduce`` on ``(N, C)`` values; differentiable by torch's autograd,
    with the same gradient rules (max through a gather of the first arg-max row).

    Export-friendly (``pointformer.export`` traces it): rows outside ``[0, num_segments)`` go to
    one extra dump row that is cut off at the end, so no size depends on the data (no
    ``nonzero``, no ``bincount``)."""
    valid = (segment >= 0) & (segment < num_segments)
    seg = torch.where(valid, segment, torch.full_like(segment, num_segments))
    rows = num_segments + 1  # the last row collects the invalid rows
    channels = values.shape[1]
    seg_c = seg[:, None].expand(-1, channels)
    if reduce in ("sum", "mean"):
        # scatter_add, not index_add: exported, index_add becomes ScatterND(add), which onnxruntime
        # 1.30 gets wrong with more than one thread when indices repeat; ScatterElements is right.
        acc_dtype = torch.float32 if values.dtype in (torch.float16, torch.bfloat16) else values.dtype
        out = values.new_zeros(rows, channels, dtype=acc_dtype).scatter_add(0, seg_c, values.to(acc_dtype))
        if reduce == "mean":
            ones = values.new_ones(seg.shape, dtype=acc_dtype)
            counts = values.new_zeros(rows, dtype=acc_dtype).scatter_add(0, seg, ones)
            out = out / counts.clamp(min=1)[:, None]
        return out[:num_segments].to(values.dtype)
    x = values
    best = values.new_zeros(rows, channels).scatter_reduce(0, seg_c, x.detach(), "amax", include_self=False)
    if not (torch.is_grad_enabled() and x.requires_grad):
        # Without a gradient to route, the maximum is the result (empty segments keep the zeros:
        # include_self=False). This is also the exported form: the arg-max search below tests
        # x == best[seg] exactly, and onnxruntime 1.30's CPU provider runs a float16 MatMul in
        # float32 and drops the Cast back to float16 before that Equal, so in a float16 graph the
        # unrounded x never equals its rounded maximum and every segment came out empty (0).
        return best[:num_segments]
    # First row (in input order) reaching the maximum, per segment and channel.
    sentinel = x.shape[0]
    position = torch.arange(sentinel, device=values.device)[:, None].expand(-1, channels)
    at_max = torch.where(x.detach() == best[seg], position, torch.full_like(position, sentinel))
    first = torch.full((rows, channels), sentinel, dtype=torch.int64, device=values.device)
    first = first.scatter_reduce(0, seg_c, at_max, "amin", include_self=True)[:num_segments]
    empty = first == sentinel
    # An empty input gathers from a one-row zero pad (no branch on the size).
    padded = torch.cat([x, x.new_zeros(1, channels)])
    gathered = padded.gather(0, first)
    return torch.where(empty, torch.zeros_like(gathered), gathered)


def _setup_context(ctx, inputs, output) -> None:
    values, segment, _, reduce = inputs
    out, counts = output
    # Max finds each output's first arg-max row in backward from values and out; sum and mean
    # need neither, so they do not keep values alive.
    if reduce == "max":
        ctx.save_for_backward(segment, counts, values, out)
    else:
        ctx.save_for_backward(segment, counts)
    ctx.reduce = reduce


def _backward(ctx, grad_out, _grad_counts):
    segment, counts, *max_inputs = ctx.saved_tensors
    if not max_inputs:
        max_inputs = [grad_out.new_empty(0), grad_out.new_empty(0)]
    grad = torch.ops.pointformer.segment_reduce_backward(
        grad_out.contiguous(), segment, counts, *max_inputs, ctx.reduce
    )
    return grad, None, None, None


if _library.NATIVE:
    torch.library.register_autograd("pointformer::segment_reduce", _backward, setup_context=_setup_context)


@_library.register_fake("segment_reduce")
def _segment_reduce_fake(values, segment, num_segments, reduce):
    return values.new_empty(num_segments, values.shape[1]), values.new_empty(num_segments, dtype=torch.int64)


@_library.register_fake("segment_reduce_backward")
def _segment_reduce_backward_fake(grad_out, segment, counts, values, out, reduce):
    return grad_out.new_empty(segment.shape[0], grad_out.shape[1])
