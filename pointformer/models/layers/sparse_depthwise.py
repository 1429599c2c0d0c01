"""Submanifold depthwise sparse convolution in plain PyTorch (ScatterFormer's ``SparseDwConv``).

Each output voxel is a per-channel weighted sum of the voxels at the kernel's offsets around it
(absent neighbours count as zero) and outputs exist only on the input's voxels::

    out[n, c] = sum_k weight[k, c] * x[neighbour_k(n), c]

with ``neighbour_k(n)`` the voxel at ``coords[n] + offset_k - kernel_size // 2`` (cross-
correlation, as ``F.conv3d``: the result equals a dense ``F.conv3d(groups=C)`` read at the voxels).

ScatterFormer's own kernel is CUDA only (``pcdet/ops/dw_spconv``); spconv has no depthwise conv.
Here the neighbour table ``(K, N)`` comes from one sort of the voxel keys and a ``searchsorted``
per offset, and the convolution is a gather-sum over it, on any device. The backward gathers too:
for an odd (centred) kernel, offset ``K-1-k`` is the negation of offset ``k``, so the voxels that
read voxel ``j`` through offset ``k`` are exactly ``neighbour_{K-1-k}(j)`` and the input gradient is
``sum_k weight[k] * grad[neighbour_{K-1-k}(j)]``: no atomics, deterministic, and nothing of size
``K x N x C`` is kept for backward (the gathers are recomputed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from pointformer.structures import SparseVoxels


def kernel_offsets(kernel_size: Sequence[int], device: torch.device | None = None) -> torch.Tensor:
    """``(K, 3)`` int64 ``(dz, dy, dx)`` offsets of an odd kernel, centred, z-major then y then x
    (the flattening order of a ``(kz, ky, kx, C)`` weight)."""
    axes = [torch.arange(k, device=device) - k // 2 for k in kernel_size]
    grid = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([g.reshape(-1) for g in grid], dim=1)


def submanifold_neighbours(
    coords: torch.Tensor, spatial_shape: Sequence[int], kernel_size: Sequence[int]
) -> torch.Tensor:
    """``(K, N)`` int64: row of the voxel at each kernel offset around each voxel, ``N`` where there
    is none (so that index ``N`` can point at a zero row).

    Args:
        coords: ``(N, 4)`` int ``(batch, z, y, x)``, distinct, inside ``spatial_shape``.
        spatial_shape: ``(Z, Y, X)``.
        kernel_size: ``(kz, ky, kx)``, odd.
    """
    n = coords.shape[0]
    device = coords.device
    offsets = kernel_offsets(kernel_size, device)  # (K, 3)
    if n == 0:
        return torch.empty(offsets.shape[0], 0, dtype=torch.int64, device=device)
    shape = torch.tensor(list(spatial_shape), dtype=torch.int64, device=device)
    c = coords.long()

    def key(b: torch.Tensor, zyx: torch.Tensor) -> torch.Tensor:
        return ((b * shape[0] + zyx[..., 0]) * shape[1] + zyx[..., 1]) * shape[2] + zyx[..., 2]

    sorted_keys, order = torch.sort(key(c[:, 0], c[:, 1:]))
    target = c[None, :, 1:] + offsets[:, None, :]  # (K, N, 3)
    inside = ((target >= 0) & (target < shape)).all(dim=-1)
    target_key = key(c[None, :, 0].expand(offsets.shape[0], n), target)
    pos = torch.searchsorted(sorted_keys, target_key).clamp_(max=n - 1)
    found = inside & (sorted_keys[pos] == target_key)
    return torch.where(found, order[pos], torch.full_like(pos, n))


class _DepthwiseGatherConv(torch.autograd.Function):
    """``out = sum_k x_padded[neighbours[k]] * weight[k]`` (module docstring), with a gather backward."""

    @staticmethod
    def forward(ctx, features: torch.Tensor, weight: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
        padded = torch.cat([features, features.new_zeros(1, features.shape[1])])
        out = features.new_zeros(features.shape)
        for k in range(neighbours.shape[0]):
            out.addcmul_(padded[neighbours[k]], weight[k])
        ctx.save_for_backward(features, weight, neighbours)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        features, weight, neighbours = ctx.saved_tensors
        kernel = neighbours.shape[0]
        grad_features = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_padded = torch.cat([grad_out, grad_out.new_zeros(1, grad_out.shape[1])])
            grad_features = torch.zeros_like(features)
            for k in range(kernel):
                grad_features.addcmul_(grad_padded[neighbours[kernel - 1 - k]], weight[k])
        if ctx.needs_input_grad[1]:
            padded = torch.cat([features, features.new_zeros(1, features.shape[1])])
            grad_weight = torch.stack([(grad_out * padded[neighbours[k]]).sum(0) for k in range(kernel)])
        return grad_features, grad_weight, None


def depthwise_submanifold_conv(features: torch.Tensor, weight: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
    """``(N, C)`` features, ``(K, C)`` weight, ``(K, N)`` neighbour rows (``N`` = none, from
    ``submanifold_neighbours``) -> ``(N, C)``. Differentiable in features and weight."""
    if features.dim() != 2 or weight.dim() != 2 or weight.shape[1] != features.shape[1]:
        raise ValueError(
            f"depthwise_submanifold_conv: features (N, C) and weight (K, C) expected, got {tuple(features.shape)} "
            f"and {tuple(weight.shape)}"
        )
    if neighbours.shape != (weight.shape[0], features.shape[0]):
        raise ValueError(
            f"depthwise_submanifold_conv: neighbours must be (K, N) = {(weight.shape[0], features.shape[0])}, got "
            f"{tuple(neighbours.shape)}"
        )
    return _DepthwiseGatherConv.apply(features, weight.to(features.dtype), neighbours)


class SubmanifoldDepthwiseConv3d(nn.Module):
    """Depthwise submanifold sparse conv over ``SparseVoxels`` (module docstring); no bias.

    Args:
        channels: ``C`` (one filter per channel).
        kernel_size: ``(kz, ky, kx)`` cells, each odd (``(3, 3, 3)``; ``(1, 1, 13)`` runs along x,
            ``(1, 13, 1)`` along y).

    Parameters: ``weight`` of shape ``(kz, ky, kx, C)`` (ScatterFormer's layout, ``kz*ky*kx*C``
    values), initialised N(0, 1) as ScatterFormer's ``SparseDwConv`` (``torch.randn``).
    The neighbour table is cached on the input ``SparseVoxels`` per kernel size, so every conv of a
    stage with the same kernel shares it.
    """

    def __init__(self, channels: int, kernel_size: int | Sequence[int]) -> None:
        super().__init__()
        ks = (kernel_size,) * 3 if isinstance(kernel_size, int) else tuple(int(k) for k in kernel_size)
        if len(ks) != 3 or any(k < 1 or k % 2 == 0 for k in ks):
            raise ValueError(f"SubmanifoldDepthwiseConv3d: kernel_size must be 3 odd sizes (kz, ky, kx), got {ks}")
        self.channels = int(channels)
        self.kernel_size: tuple[int, int, int] = ks  # type: ignore[assignment]
        self.weight = nn.Parameter(torch.randn(*ks, self.channels))

    def neighbours(self, voxels: SparseVoxels) -> torch.Tensor:
        """The ``(K, N)`` neighbour table of ``voxels`` for this kernel (cached on ``voxels``)."""
        key = ("submanifold_neighbours", self.kernel_size)
        return voxels.cached(key, lambda: submanifold_neighbours(voxels.coords, voxels.spatial_shape, self.kernel_size))

    def forward(self, features: torch.Tensor, voxels: SparseVoxels) -> torch.Tensor:
        """``features``: ``(N, C)`` on the voxels of ``voxels`` (its own features are not used, so a
        channel slice can be passed). Returns ``(N, C)``."""
        if features.shape != (voxels.num_voxels, self.channels):
            raise ValueError(
                f"SubmanifoldDepthwiseConv3d: expected features ({voxels.num_voxels}, {self.channels}), got "
                f"{tuple(features.shape)}"
            )
        weight = self.weight.reshape(math.prod(self.kernel_size), self.channels)
        return depthwise_submanifold_conv(features, weight, self.neighbours(voxels))

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}"
