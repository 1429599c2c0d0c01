"""ScatterFormer (He et al., ECCV 2024): scattered linear attention over variable-length BEV windows,
with cross-window interaction instead of shifted windows."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pointformer.models.bev.pillar_pool import AttentionPillarPool
from pointformer.models.layers.cwi import CrossWindowInteraction
from pointformer.models.layers.scattered_attention import ScatteredLinearAttention
from pointformer.models.layers.sparse_conv import (
    SparseBasicBlock,
    SparseChain,
    conv_output_size,
    sparse_conv_block,
    spconv_tensor,
)
from pointformer.models.layers.spconv import from_spconv, import_spconv
from pointformer.ops import partition_scattered
from pointformer.structures import SparseVoxels


class ScatterFormerBlock(nn.Module):
    """One block: ``x = x + SLA(BN(x))``, then cross-window interaction and FFN
    (``CrossWindowInteraction``). 134,048 parameters at C = 128, kernel 13."""

    def __init__(
        self, channels: int, num_heads: int, kernel_length: int, norm_eps: float = 1e-3, norm_momentum: float = 0.01
    ) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(channels, eps=norm_eps, momentum=norm_momentum)
        self.attn = ScatteredLinearAttention(channels, num_heads)
        self.cwi = CrossWindowInteraction(channels, kernel_length, 2 * channels, norm_eps, norm_momentum)

    def forward(self, x: torch.Tensor, offsets: torch.Tensor, voxels: SparseVoxels) -> torch.Tensor:
        """``x``: ``(N, C)`` in window order (the order of ``voxels``), ``offsets`` the windows."""
        x = x + self.attn(self.norm(x), offsets)
        return self.cwi(x, voxels)


class ScatterFormerStage(nn.Module):
    """``num_blocks`` blocks over one window layout (official ``ScatterFormerLayer3x``).

    Windows are BEV columns of ``window_size x window_size`` (y, x) cells covering the whole height
    (``partition_scattered``), never shifted. The stage sorts its voxels into window order once and
    returns them in that order (as the official stage does): every block then works on contiguous
    windows without gathering.
    """

    def __init__(
        self,
        channels: int,
        num_heads: int,
        num_blocks: int,
        window_size: int,
        norm_eps: float = 1e-3,
        norm_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        self.window_size = int(window_size)
        self.blocks = nn.ModuleList(
            ScatterFormerBlock(channels, num_heads, window_size + 1, norm_eps, norm_momentum) for _ in range(num_blocks)
        )

    def forward(self, voxels: SparseVoxels) -> SparseVoxels:
        """Returns the same voxels, permuted into window order, with new ``(N, C)`` features."""
        z = voxels.spatial_shape[0]
        window = (z, self.window_size, self.window_size)
        partition = partition_scattered(voxels.coords, voxels.batch_size, voxels.spatial_shape, window)
        perm = partition.permutation
        # A new SparseVoxels (and cache): the neighbour tables of the CWI convs are built for this order.
        voxels = SparseVoxels(
            voxels.features[perm], voxels.coords[perm], voxels.spatial_shape, voxels.batch_size, voxels.stride
        )
        x = voxels.features
        for block in self.blocks:
            x = block(x, partition.offsets, voxels)
        return voxels.replace_features(x)


class ScatterFormer(nn.Module):
    """ScatterFormer's 3D backbone, the official ``BACKBONE_3D`` module: sparse-conv stem,
    two attention stages with a strided sparse conv between them, attention pillar pooling.

    Shapes (Waymo: input grid ``(Z, Y, X) = (32, 480, 480)``, C = 128)::

        voxels (N, in)   on (Z + 1, Y, X)   # OpenPCDet's extra z cell (``grid_size[::-1] + [1, 0, 0]``)
        stem: SubM3x3x3(in -> C)+BN+ReLU, 3 SparseBasicBlocks, SparseConv (3,1,1)/(2,1,1)+BN+ReLU
                        -> (16, 480, 480)
        stage 1: num_blocks x ScatterFormerBlock (windows 12 x 12 columns); BN;
                 SparseConv 3x3x3 / 2, padding 1, no bias, no norm -> (8, 240, 240)
        stage 2: num_blocks x ScatterFormerBlock; BN
        AttentionPillarPool over the 8 z cells -> pillars (P, C) on (1, 240, 240), stride 2 in BEV

    Args:
        in_channels: voxel feature width (the VFE's output: 64 in the Waymo config).
        sparse_shape: ``(Z, Y, X)`` of the input voxel grid (the builder passes the grid's).
        channels: ``C`` (``FEATURE_DIM``).
        num_heads: attention heads (4).
        num_blocks: blocks per attention stage (3).
        window_size: window side in cells (``WIN_SIZE``, 12); the 1-D CWI convs are ``window_size + 1``.
        stem_blocks: SparseBasicBlocks in the stem (3).
        pool_heads: heads of the pillar pooling attention (8).
        pool_query: the pooling's query, ``"spconv"`` (default: the official spconv max-pool, which
            starts from 0, so ``max(0, max)``; what official checkpoints expect) or ``"max"`` (the
            true maximum); see ``AttentionPillarPool``.
        norm_eps, norm_momentum: every BatchNorm1d.

    Attributes: ``out_channels`` (C), ``out_spatial_shape`` ``(1, Y', X')``, ``out_stride``.

    Parameter count, Waymo config (in 64, C 128, 4 heads, windows 12, 3 + 3 blocks, Z = 32):
    4,241,856 = stem 2,927,360 + stage 1 844,768 (blocks 3 x 134,048, BN 256, conv 442,368)
    + stage 2 402,400 + pillar pool 67,328. This is the official ``BACKBONE_3D`` alone: its
    64-channel ``DynamicVoxelVFE`` (4,640 parameters) is a separate module and not included; "64"
    is the input width.

    Initialisation as the official module: PyTorch defaults for linear layers and norms, N(0, 1) for
    the depthwise convs, spconv's for the sparse convs, ``nn.MultiheadAttention``'s for the pooling.
    A batch without any voxel returns an empty result (spconv cannot run on zero voxels).
    """

    def __init__(
        self,
        in_channels: int,
        sparse_shape: Sequence[int],
        channels: int = 128,
        num_heads: int = 4,
        num_blocks: int = 3,
        window_size: int = 12,
        stem_blocks: int = 3,
        pool_heads: int = 8,
        pool_query: str = "spconv",
        norm_eps: float = 1e-3,
        norm_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        if len(sparse_shape) != 3 or min(sparse_shape) < 1:
            raise ValueError(
                f"ScatterFormer: sparse_shape must be 3 positive cell counts (Z, Y, X), got {sparse_shape}"
            )
        if window_size < 1:
            raise ValueError(f"ScatterFormer: window_size must be >= 1, got {window_size}")
        if channels % num_heads:
            raise ValueError(f"ScatterFormer: num_heads {num_heads} must divide channels {channels}")
        self.in_channels = int(in_channels)
        self.out_channels = int(channels)
        self.sparse_shape: tuple[int, int, int] = tuple(int(s) for s in sparse_shape)  # type: ignore[assignment]
        z, y, x = self.sparse_shape
        self.conv_shape = (z + 1, y, x)  # OpenPCDet's extra z cell
        self.stem_shape = conv_output_size(self.conv_shape, (3, 1, 1), (2, 1, 1), 0)
        self.stage2_shape = conv_output_size(self.stem_shape, 3, 2, 1)
        if self.stem_shape[0] < 1:
            raise ValueError(f"ScatterFormer: the grid needs Z >= 2 z cells, got sparse_shape {self.sparse_shape}")
        self.out_spatial_shape = (1, self.stage2_shape[1], self.stage2_shape[2])
        # z: the two z-halvings times the pooled cells (the pillar spans the whole height).
        self.out_stride = (4 * self.stage2_shape[0], 2, 2)
        norm = dict(norm_eps=norm_eps, norm_momentum=norm_momentum)

        self.stem = SparseChain(
            sparse_conv_block(in_channels, channels, 3, padding=1, conv_type="subm", indice_key="stem_subm", **norm),
            *(SparseBasicBlock(channels, indice_key="stem_block", **norm) for _ in range(stem_blocks)),
            sparse_conv_block(channels, channels, (3, 1, 1), (2, 1, 1), 0, conv_type="spconv", **norm),
        )
        self.stage1 = ScatterFormerStage(channels, num_heads, num_blocks, window_size, **norm)
        self.stage1_norm = nn.BatchNorm1d(channels, eps=norm_eps, momentum=norm_momentum)
        self.downsample = import_spconv().SparseConv3d(channels, channels, 3, stride=2, padding=1, bias=False)
        self.stage2 = ScatterFormerStage(channels, num_heads, num_blocks, window_size, **norm)
        self.stage2_norm = nn.BatchNorm1d(channels, eps=norm_eps, momentum=norm_momentum)
        # Official: AttnPillarPool(C, (Z + 1) // 4), which equals the z cells left after the two
        # z-halvings whenever the official model runs; the exact count is used here.
        self.pillar_pool = AttentionPillarPool(channels, self.stage2_shape[0], pool_heads, pool_query)

    def forward(self, voxels: SparseVoxels) -> SparseVoxels:
        """``voxels``: ``(N, in_channels)`` features on the ``sparse_shape`` grid, distinct coords.
        Returns ``(P, C)`` pillar features on ``out_spatial_shape``, sorted by (batch, y, x)."""
        if voxels.num_channels != self.in_channels:
            raise ValueError(f"ScatterFormer: expected {self.in_channels} channels, got {voxels.num_channels}")
        if voxels.spatial_shape != self.sparse_shape:
            raise ValueError(f"ScatterFormer: built for the grid {self.sparse_shape}, got {voxels.spatial_shape}")
        sz, sy, sx = voxels.stride
        if voxels.num_voxels == 0:
            features = voxels.features.new_zeros(0, self.out_channels)
            coords = voxels.coords.new_zeros(0, 4)
            stride = (sz * self.out_stride[0], sy * 2, sx * 2)
            return SparseVoxels(features, coords, self.out_spatial_shape, voxels.batch_size, stride)
        x = self.stem(spconv_tensor(voxels, self.conv_shape))
        v = self.stage1(from_spconv(x, (sz * 2, sy, sx)))
        x = spconv_tensor(v.replace_features(self.stage1_norm(v.features)))
        v = from_spconv(self.downsample(x), (sz * 4, sy * 2, sx * 2))
        v = self.stage2(v)
        v = v.replace_features(self.stage2_norm(v.features))
        return self.pillar_pool(v)
