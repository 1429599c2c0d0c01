"""CenterPoint's sparse-convolution 3D backbone: OpenPCDet's ``VoxelResBackBone8x`` (spconv)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from pointformer.models.layers.sparse_conv import (
    SparseBasicBlock,
    SparseChain,
    conv_output_size,
    sparse_conv_block,
    spconv_tensor,
)
from pointformer.models.layers.spconv import from_spconv
from pointformer.structures import SparseVoxels


class VoxelResBackBone8x(nn.Module):
    """Sparse 3D ResNet downsampling the voxel grid 8x in BEV, the sparse-conv baseline.

    Layout (OpenPCDet names; ``c = channels``, Waymo grid ``(Z, Y, X) = (40, 1504, 1504)``)::

        voxels (N, in)  on (Z + 1, Y, X)          # OpenPCDet's extra z cell: (41, 1504, 1504)
        conv_input: SubM 3x3x3 (in -> c0) + BN + ReLU
        conv1: 2 x SparseBasicBlock(c0)                                      (41, 1504, 1504)
        conv2: SparseConv 3x3x3 /2 pad 1 (c0 -> c1) + BN + ReLU, 2 x block   (21, 752, 752)
        conv3: SparseConv 3x3x3 /2 pad 1 (c1 -> c2) + BN + ReLU, 2 x block   (11, 376, 376)
        conv4: SparseConv 3x3x3 /2 pad (0, 1, 1) (c2 -> c3) + BN + ReLU, 2 x block  (5, 188, 188)
        conv_out: SparseConv (3, 1, 1) /(2, 1, 1) pad 0 (c3 -> out) + BN + ReLU   (2, 188, 188)

    The output keeps its z cells; the BEV mapping (OpenPCDet's ``HeightCompression``, i.e.
    ``ScatterToBEV`` with ``num_z = out_spatial_shape[0]``) folds them into channels:
    ``out_channels * 2 = 256`` on Waymo.

    Args:
        in_channels: voxel feature width (5 with a mean VFE over x, y, z, intensity, elongation).
        sparse_shape: ``(Z, Y, X)`` of the input voxel grid (the builder passes the grid's).
        channels: ``(c0, c1, c2, c3)`` of the four stages ((16, 32, 64, 128)).
        out_channels: channels of ``conv_out`` (128).
        blocks_per_stage: SparseBasicBlocks per stage (2).
        norm_eps, norm_momentum: every BatchNorm1d.

    Attributes: ``out_channels``, ``out_spatial_shape`` ``(Z', Y', X')``, ``out_stride`` ``(16, 8, 8)``.

    Parameters with 5 input features (official config): 2,695,312 = conv_input 2,192
    + conv1 27,840 + conv2 124,864 + conv3 498,560 + conv4 1,992,448 + conv_out 49,408
    (the residual blocks' convs have biases, as OpenPCDet's). A batch without any voxel returns an
    empty result (spconv cannot run on zero voxels).
    """

    def __init__(
        self,
        in_channels: int,
        sparse_shape: Sequence[int],
        channels: Sequence[int] = (16, 32, 64, 128),
        out_channels: int = 128,
        blocks_per_stage: int = 2,
        norm_eps: float = 1e-3,
        norm_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        if len(sparse_shape) != 3 or min(sparse_shape) < 1:
            raise ValueError(
                f"VoxelResBackBone8x: sparse_shape must be 3 positive cell counts (Z, Y, X), got {sparse_shape}"
            )
        if len(channels) != 4:
            raise ValueError(f"VoxelResBackBone8x: channels must give the 4 stages' widths, got {channels}")
        c0, c1, c2, c3 = (int(c) for c in channels)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.sparse_shape: tuple[int, int, int] = tuple(int(s) for s in sparse_shape)  # type: ignore[assignment]
        z, y, x = self.sparse_shape
        self.conv_shape = (z + 1, y, x)  # OpenPCDet: grid_size[::-1] + [1, 0, 0]
        shape = self.conv_shape
        for kernel, stride, padding in ((3, 2, 1), (3, 2, 1), (3, 2, (0, 1, 1)), ((3, 1, 1), (2, 1, 1), 0)):
            shape = conv_output_size(shape, kernel, stride, padding)
        if min(shape) < 1:
            raise ValueError(
                f"VoxelResBackBone8x: the grid {self.sparse_shape} is too small for four strided convs (the z "
                f"axis needs Z >= 24: conv4 and conv_out have no z padding)"
            )
        self.out_spatial_shape: tuple[int, int, int] = shape
        self.out_stride = (16, 8, 8)
        norm = dict(norm_eps=norm_eps, norm_momentum=norm_momentum)

        def blocks(c: int, key: str) -> list[SparseBasicBlock]:
            return [SparseBasicBlock(c, indice_key=key, **norm) for _ in range(blocks_per_stage)]

        def down(cin: int, cout: int, padding, key: str) -> SparseChain:
            return sparse_conv_block(cin, cout, 3, 2, padding, conv_type="spconv", indice_key=key, **norm)

        self.conv_input = sparse_conv_block(in_channels, c0, 3, padding=1, conv_type="subm", indice_key="subm1", **norm)
        self.conv1 = SparseChain(*blocks(c0, "res1"))
        self.conv2 = SparseChain(down(c0, c1, 1, "spconv2"), *blocks(c1, "res2"))
        self.conv3 = SparseChain(down(c1, c2, 1, "spconv3"), *blocks(c2, "res3"))
        self.conv4 = SparseChain(down(c2, c3, (0, 1, 1), "spconv4"), *blocks(c3, "res4"))
        self.conv_out = sparse_conv_block(
            c3, out_channels, (3, 1, 1), (2, 1, 1), 0, conv_type="spconv", indice_key="spconv_down2", **norm
        )

    def forward(self, voxels: SparseVoxels) -> SparseVoxels:
        """``voxels``: ``(N, in_channels)`` features on the ``sparse_shape`` grid, distinct coords.
        Returns ``(M, out_channels)`` features on ``out_spatial_shape`` (spconv's row order)."""
        if voxels.num_channels != self.in_channels:
            raise ValueError(f"VoxelResBackBone8x: expected {self.in_channels} channels, got {voxels.num_channels}")
        if voxels.spatial_shape != self.sparse_shape:
            raise ValueError(f"VoxelResBackBone8x: built for the grid {self.sparse_shape}, got {voxels.spatial_shape}")
        stride = tuple(s * t for s, t in zip(voxels.stride, self.out_stride, strict=True))
        if voxels.num_voxels == 0:
            features = voxels.features.new_zeros(0, self.out_channels)
            coords = voxels.coords.new_zeros(0, 4)
            return SparseVoxels(features, coords, self.out_spatial_shape, voxels.batch_size, stride)
        x = spconv_tensor(voxels, self.conv_shape)
        for stage in (self.conv_input, self.conv1, self.conv2, self.conv3, self.conv4, self.conv_out):
            x = stage(x)
        return from_spconv(x, stride)  # type: ignore[arg-type]
