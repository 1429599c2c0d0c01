"""spconv building blocks shared by the sparse-convolution backbones (CenterPoint's
``VoxelResBackBone8x``, ScatterFormer's stem): conv + BatchNorm + ReLU, the sparse residual block,
and a sequential container over ``spconv.SparseConvTensor``.

spconv is imported through ``pointformer.models.layers.spconv.import_spconv()`` when a block is built,
never at module import, so ``pointformer.models`` imports without spconv installed.

Module layouts follow OpenPCDet's (``post_act_block`` and ``SparseBasicBlock`` of its
``spconv_backbone``), so parameter counts and state-dict names match the official models:
a conv block is ``[conv, BatchNorm1d, ReLU]`` (indices 0, 1, 2), a residual block has
``conv1, bn1, conv2, bn2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from pointformer.models.layers.spconv import import_spconv
from pointformer.structures import SparseVoxels

IntOrTriple = int | Sequence[int]


def _triple(value: IntOrTriple) -> tuple[int, int, int]:
    if isinstance(value, int):
        return (value, value, value)
    out = tuple(int(v) for v in value)
    if len(out) != 3:
        raise ValueError(f"expected an int or 3 ints (z, y, x), got {value!r}")
    return out  # type: ignore[return-value]


def conv_output_size(
    size: Sequence[int], kernel_size: IntOrTriple, stride: IntOrTriple = 1, padding: IntOrTriple = 0
) -> tuple[int, int, int]:
    """``(Z, Y, X)`` cells after a (non-submanifold) sparse conv: ``(n + 2p - k) // s + 1`` per axis,
    as spconv computes it."""
    k, s, p = _triple(kernel_size), _triple(stride), _triple(padding)
    return tuple((n + 2 * pp - kk) // ss + 1 for n, kk, ss, pp in zip(size, k, s, p, strict=True))  # type: ignore[return-value]


def _is_sparse_module(module: nn.Module) -> bool:
    """Modules that take the whole SparseConvTensor: spconv's, and ours marked ``takes_sparse_tensor``."""
    return getattr(module, "takes_sparse_tensor", False) or isinstance(module, import_spconv().SparseModule)


class SparseChain(nn.Sequential):
    """``nn.Sequential`` over a ``spconv.SparseConvTensor``: spconv modules and this package's sparse
    blocks take the tensor; any other module (BatchNorm1d, ReLU, ...) is applied to its ``(N, C)``
    features. (spconv's own ``SparseSequential`` would hand our blocks the features only.)"""

    takes_sparse_tensor = True

    def forward(self, x: Any) -> Any:  # noqa: D102 - the class docstring says it
        for module in self:
            x = module(x) if _is_sparse_module(module) else x.replace_feature(module(x.features))
        return x


def sparse_conv_block(
    in_channels: int,
    out_channels: int,
    kernel_size: IntOrTriple = 3,
    stride: IntOrTriple = 1,
    padding: IntOrTriple = 0,
    conv_type: str = "subm",
    indice_key: str | None = None,
    norm_eps: float = 1e-3,
    norm_momentum: float = 0.01,
) -> SparseChain:
    """``[conv (no bias), BatchNorm1d, ReLU]``, OpenPCDet's ``post_act_block``.

    Args:
        conv_type: ``"subm"`` (submanifold: output on the input's voxels; stride and padding are
            ignored by spconv's submanifold rule, which keeps the same cells) or ``"spconv"``
            (a regular strided sparse conv: output on every cell that any input reaches).
        indice_key: spconv's key for reusing index pairs between convs of the same layout.
    """
    spconv = import_spconv()
    if conv_type == "subm":
        conv = spconv.SubMConv3d(
            in_channels, out_channels, kernel_size, stride=1, padding=padding, bias=False, indice_key=indice_key
        )
    elif conv_type == "spconv":
        conv = spconv.SparseConv3d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False, indice_key=indice_key
        )
    else:
        raise ValueError(f"sparse_conv_block: conv_type must be 'subm' or 'spconv', got {conv_type!r}")
    return SparseChain(conv, nn.BatchNorm1d(out_channels, eps=norm_eps, momentum=norm_momentum), nn.ReLU())


class SparseBasicBlock(nn.Module):
    """The sparse ResNet basic block: ``relu(x + bn2(conv2(relu(bn1(conv1(x))))))`` with two 3x3x3
    submanifold convs, so the voxels (and the channels) are unchanged.

    As in OpenPCDet (``bias = norm_fn is not None``), the convs carry a bias although a BatchNorm
    follows; the official parameter counts include those biases, so they are kept.

    Args:
        channels: ``C`` in and out.
        indice_key: spconv's key; the blocks of one stage share it (same voxels, same pairs).
        bias: conv biases (True as the official models).
    """

    takes_sparse_tensor = True

    def __init__(
        self,
        channels: int,
        indice_key: str | None = None,
        norm_eps: float = 1e-3,
        norm_momentum: float = 0.01,
        bias: bool = True,
    ) -> None:
        super().__init__()
        spconv = import_spconv()
        self.conv1 = spconv.SubMConv3d(channels, channels, 3, padding=1, bias=bias, indice_key=indice_key)
        self.bn1 = nn.BatchNorm1d(channels, eps=norm_eps, momentum=norm_momentum)
        self.conv2 = spconv.SubMConv3d(channels, channels, 3, padding=1, bias=bias, indice_key=indice_key)
        self.bn2 = nn.BatchNorm1d(channels, eps=norm_eps, momentum=norm_momentum)

    def forward(self, x: Any) -> Any:
        """``x``: a ``spconv.SparseConvTensor`` with ``(N, C)`` features; returns one on the same voxels."""
        identity = x.features
        out = _conv_with_bias(self.conv1, x)
        out = out.replace_feature(torch.relu(self.bn1(out.features)))
        out = _conv_with_bias(self.conv2, out)
        return out.replace_feature(torch.relu(self.bn2(out.features) + identity))


def _conv_with_bias(conv: nn.Module, x: Any) -> Any:
    """``conv(x)``, also for a biased conv in eval mode on the CPU.

    In eval mode spconv fuses the bias into its GEMM, which its CPU kernels refuse ("cpu don't
    support act and bias"); in training mode it adds the bias after the GEMM, which works anywhere
    and gives the same values. So on the CPU the conv runs in training mode (it has no other
    mode-dependent state: for a submanifold conv the mode only adds backward index pairs).
    """
    if conv.training or conv.bias is None or x.features.is_cuda:
        return conv(x)
    conv.train()
    try:
        return conv(x)
    finally:
        conv.eval()


def spconv_tensor(voxels: SparseVoxels, spatial_shape: Sequence[int] | None = None) -> Any:
    """A ``spconv.SparseConvTensor`` over ``voxels``, optionally on a larger ``(Z, Y, X)`` grid
    (the same cells plus room at the top, for OpenPCDet's extra z cell)."""
    spconv = import_spconv()
    shape = list(voxels.spatial_shape if spatial_shape is None else spatial_shape)
    return spconv.SparseConvTensor(voxels.features, voxels.coords.contiguous(), shape, voxels.batch_size)
