"""FlatFormer (Liu et al., CVPR 2023): attention in equal-size groups of window-sorted voxels."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from pointformer.models.layers.attention import PostNormAttentionLayer
from pointformer.models.layers.positional import sinusoidal_position_encoding_2d
from pointformer.ops import partition_flattened
from pointformer.structures import Partition, SparseVoxels

# The four orderings of every block, in FlatFormer's order: (axis, shifted windows).
ORDERS: tuple[tuple[str, bool], ...] = (("x", False), ("x", True), ("y", False), ("y", True))


class FlatFormer(nn.Module):
    """FlatFormer's sparse encoder: ``num_blocks`` blocks of 4 post-norm attention layers over
    the x, x-shifted, y and y-shifted flattened-window orders (``partition_flattened``).

    Features keep their width and their voxels: ``(N, C) -> (N, C)``. The positional encoding
    (absolute, sinusoidal, on the global (x, y) cell) is added to queries and keys of every layer.
    Padding follows FlatFormer: a sample's last group is completed with repeats of the sample's
    own voxels, and the repeats are attended to like any key (``key_mask=False``), as the official
    fixed-length FlashAttention calls do; groups never mix samples, so a batch gives the same
    outputs as its samples one by one.

    Args:
        in_channels: ``C``.
        num_heads: attention heads.
        num_blocks: blocks of 4 layers.
        window_shape: ``(wx, wy)`` cells, in the official config's order (``[13, 13]``: x first).
        group_size: voxels per group.
        ffn_channels: feed-forward hidden width.
        pos_temperature: the positional encoding's frequency base.
        activation: ``"gelu"`` or ``"relu"``.
        attention_backend: ``grouped_attention`` backend (None: the device's default).

    1,059,840 parameters at C = 128, 8 heads, 2 blocks, FFN 256. Every parameter with more than one
    dimension is Xavier-uniform initialised (as the official ``_reset_parameters``).
    """

    def __init__(
        self,
        in_channels: int,
        num_heads: int = 8,
        num_blocks: int = 2,
        window_shape: Sequence[int] = (13, 13),
        group_size: int = 144,
        ffn_channels: int = 256,
        pos_temperature: float = 10000.0,
        activation: str = "gelu",
        attention_backend: str | None = None,
    ) -> None:
        super().__init__()
        if len(window_shape) != 2 or min(window_shape) < 1:
            raise ValueError(f"FlatFormer: window_shape must be 2 positive cell counts (wx, wy), got {window_shape}")
        if group_size < 1:
            raise ValueError(f"FlatFormer: group_size must be >= 1, got {group_size}")
        self.in_channels = self.out_channels = int(in_channels)
        self.window_shape = (int(window_shape[0]), int(window_shape[1]))
        self.group_size = int(group_size)
        self.pos_temperature = float(pos_temperature)
        self.blocks = nn.ModuleList(
            nn.ModuleList(
                PostNormAttentionLayer(in_channels, num_heads, ffn_channels, activation, False, attention_backend)
                for _ in ORDERS
            )
            for _ in range(num_blocks)
        )
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def partition(self, voxels: SparseVoxels, axis: str, shift: bool) -> Partition:
        """The partition of one ordering, computed once per voxel layout (cached on ``voxels``)."""
        wx, wy = self.window_shape
        _, y, x = voxels.spatial_shape
        if wx > x or wy > y:
            raise ValueError(
                f"FlatFormer: window_shape (wx, wy) = {self.window_shape} is larger than the grid (X, Y) = {(x, y)}"
            )
        return voxels.cached(
            self.partition_key(axis, shift),
            lambda: partition_flattened(
                voxels.coords, voxels.batch_size, voxels.spatial_shape, self.window, self.group_size, axis, shift
            ),
        )

    @property
    def window(self) -> tuple[int, int, int]:
        """The window in ``(z, y, x)`` cells."""
        return (1, self.window_shape[1], self.window_shape[0])

    def partition_key(self, axis: str, shift: bool) -> tuple:
        """The ``SparseVoxels.cached`` key of one ordering's partition (export gives it precomputed)."""
        return ("flattened", self.window, self.group_size, axis, shift)

    def forward(self, voxels: SparseVoxels) -> SparseVoxels:
        """``voxels``: ``(N, C)`` features on pillars (``Z = 1``; for ``Z > 1`` the voxels of a column
        are consecutive in every order and share the column's encoding). Returns the same voxels
        with ``(N, C)`` new features."""
        if voxels.num_channels != self.in_channels:
            raise ValueError(f"FlatFormer: expected {self.in_channels} channels, got {voxels.num_channels}")
        partitions = [self.partition(voxels, axis, shift) for axis, shift in ORDERS]
        x = voxels.features
        pe = sinusoidal_position_encoding_2d(voxels.coords, self.in_channels, self.pos_temperature, x.dtype)
        for block in self.blocks:
            for layer, partition in zip(block, partitions, strict=True):
                x = layer(x, pe, partition)
        return voxels.replace_features(x)
