"""CenterHead's separate heads in training mode as a few stacked convolutions (same math, fewer ops).

Every branch of every task's ``SeparateHead`` reads the same map (the shared conv's output), and each
is ``depth - 1`` x (conv + BatchNorm + ReLU) then a conv with 1-3 outputs. On the CPU such narrow
convolutions run far below oneDNN's throughput and their backward passes dominate the head (the demo
training profile, docs/benchmarks.md), so ``stacked_branches`` computes, each step, from the
modules' own parameters:

- layer 0: ONE convolution whose filters are the branches' first filters concatenated (``torch.cat``,
  differentiable: each branch's weight gets its own slice of the gradient);
- hidden layers ``0 < k < depth - 1``: one grouped convolution, a group per branch;
- after each hidden conv: BatchNorm over the concatenated channels with the modules' weights and
  biases, updating each module's running statistics and ``num_batches_tracked`` exactly as
  ``nn.BatchNorm2d`` would (the statistics are per channel, so the concatenation changes nothing),
  then ReLU;
- the last layer: one convolution with a block-diagonal weight: each branch's filters read its own
  channels of the stacked map and zeros elsewhere (``F.pad`` of the branch's weight: the zero blocks
  are constants, so they take no gradient and add exact zeros).

Chosen by measurement (forward + backward of the demo head, 7 branches of 32 channels at 80 x 80,
CPU, one thread, ms): per-branch (the modules' own forward) 74; stacked with the block-diagonal last
conv 58, with a grouped last conv padded to the widest branch 118, with per-branch last convs on
channel slices 74. With two threads beside a competing process (whose OpenMP barriers wait on a
starved thread) the block-diagonal tower stayed the fastest (295 against 1573 ms per-branch). A
channels-last tower measured 49 ms but its weight gradients were 5-10x further from a float64
reference than the per-branch path's (oneDNN's channels-last backward accumulates differently);
the NCHW tower's outputs equal the per-branch ones bit for bit here, and its gradients are as close.

The parameters, buffers and state-dict keys are the separate heads' own; outputs and gradients equal
the per-branch path's to float32 rounding (tests/models/test_stacked_branches.py). One difference: a
branch whose outputs take no loss gets an exactly zero gradient here instead of none (its filters are
part of the stacked weight); a training loss covers every branch, so that does not arise in training. ``stackable``
says whether the towers have the shape this needs; otherwise the head runs its branches one by one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# center_head imports this module, so the separate heads are typed by what is used of them: a module
# whose ``heads`` ModuleDict maps each output name to its conv tower.
SeparateHead = nn.Module
Tower = list[tuple[nn.Conv2d, nn.BatchNorm2d | None]]


def _tower(head: nn.Sequential) -> Tower | None:
    """A branch as ``[(conv, bn), ..., (last conv, None)]``, or None if it is not conv + BN + ReLU
    units followed by one conv (as ``SeparateHead`` builds it)."""
    layers: Tower = []
    units = list(head)
    for unit in units[:-1]:
        parts = list(unit) if isinstance(unit, nn.Sequential) else []
        if len(parts) != 3 or type(parts[0]) is not nn.Conv2d or type(parts[1]) is not nn.BatchNorm2d:
            return None
        if type(parts[2]) is not nn.ReLU:
            return None
        layers.append((parts[0], parts[1]))
    if not units or type(units[-1]) is not nn.Conv2d:
        return None
    layers.append((units[-1], None))
    return layers


def _same_conv(convs: Sequence[nn.Conv2d]) -> bool:
    first = convs[0]
    return all(
        c.kernel_size == first.kernel_size
        and c.stride == first.stride
        and c.padding == first.padding
        and c.dilation == first.dilation
        and c.groups == 1
        and c.padding_mode == "zeros"
        and isinstance(c.padding, tuple)
        and c.in_channels == first.in_channels
        for c in convs
    )


def _trainable_norms(norms: Sequence[nn.BatchNorm2d]) -> bool:
    """Norms that normalise with the batch statistics and update their running ones with a fixed
    momentum, all with the same settings (so one ``F.batch_norm`` call is each one's update)."""
    first = norms[0]
    return all(
        n.training
        and n.affine
        and n.track_running_stats
        and n.momentum is not None
        and n.momentum == first.momentum
        and n.eps == first.eps
        and n.num_features == first.num_features
        for n in norms
    )


def stackable(heads: Sequence[SeparateHead]) -> list[Tower] | None:
    """The towers of every branch of ``heads`` (task order, then branch order), or None when they
    cannot be stacked: a tower that is not (conv + BN + ReLU) x (depth - 1) + conv, towers of different
    depth, convs of different geometry, grouped convs, or norms not in training mode with one momentum."""
    towers = [_tower(tower) for head in heads for tower in head.heads.values()]
    if not towers or any(t is None for t in towers):
        return None
    depth = len(towers[0])
    if any(len(t) != depth for t in towers):
        return None
    for k in range(depth):
        convs = [t[k][0] for t in towers]
        if not _same_conv(convs):
            return None
        if k < depth - 1:
            # Hidden layers: one width, so that layer k + 1's groups are equal.
            if any(c.out_channels != convs[0].out_channels for c in convs):
                return None
            if not _trainable_norms([t[k][1] for t in towers]):
                return None
    return towers


def _batch_norm(x: torch.Tensor, norms: Sequence[nn.BatchNorm2d]) -> torch.Tensor:
    """``x`` ``(B, n * C, H, W)`` normalised as ``norms[i]`` (train mode) normalises channels
    ``[i * C, (i + 1) * C)``, whose running statistics and batch counters are updated as each
    module's own forward would update them."""
    first = norms[0]
    running_mean = torch.cat([n.running_mean for n in norms])
    running_var = torch.cat([n.running_var for n in norms])
    weight = torch.cat([n.weight for n in norms])
    bias = torch.cat([n.bias for n in norms])
    out = F.batch_norm(x, running_mean, running_var, weight, bias, True, first.momentum, first.eps)
    with torch.no_grad():
        for n, mean, var in zip(norms, running_mean.split(first.num_features), running_var.split(first.num_features),
                                strict=True):  # fmt: skip
            n.running_mean.copy_(mean)
            n.running_var.copy_(var)
            n.num_batches_tracked.add_(1)
    return out


def _conv(
    x: torch.Tensor, like: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None, groups: int
) -> torch.Tensor:
    return F.conv2d(x, weight, bias, like.stride, like.padding, like.dilation, groups)


def _cat_bias(convs: Sequence[nn.Conv2d]) -> torch.Tensor | None:
    if all(c.bias is None for c in convs):
        return None
    return torch.cat(
        [c.bias if c.bias is not None else c.weight.new_zeros(c.out_channels) for c in convs]  # a zero: no bias
    )


def stacked_branches(heads: Sequence[SeparateHead], towers: Sequence[Tower], x: torch.Tensor) -> list[dict]:
    """Every branch of ``heads`` on ``x`` ``(B, C, H, W)`` (``towers = stackable(heads)``): per task a
    dict name -> ``(B, channels, H, W)`` contiguous map, as the heads' own forward returns.

    (Module docstring for the layout and why.)
    """
    depth = len(towers[0])
    n = len(towers)
    for k in range(depth - 1):
        convs = [t[k][0] for t in towers]
        weight = torch.cat([c.weight for c in convs])
        x = _conv(x, convs[0], weight, _cat_bias(convs), 1 if k == 0 else n)
        x = torch.relu_(_batch_norm(x, [t[k][1] for t in towers]))
    last = [t[-1][0] for t in towers]
    if depth == 1:
        weight = torch.cat([c.weight for c in last])
    else:
        # Branch b's filters on its own block of in-channels, zero (constant, no gradient) elsewhere.
        per = last[0].in_channels
        weight = torch.cat([F.pad(c.weight, (0, 0, 0, 0, b * per, (n - 1 - b) * per)) for b, c in enumerate(last)])
    out = _conv(x, last[0], weight, _cat_bias(last), 1).split([c.out_channels for c in last], dim=1)
    result: list[dict] = []
    b = 0
    for head in heads:
        maps = {}
        for name in head.heads:
            maps[name] = out[b].contiguous()
            b += 1
        result.append(maps)
    return result
