"""DSVT's set-attention layer and block: post-norm attention inside rotated sets, with DSVT's three
levels of post-norm residuals."""

from __future__ import annotations

import torch
from torch import nn

from pointformer.models.layers.attention import PostNormAttentionLayer
from pointformer.structures import Partition


class SetAttentionLayer(nn.Module):
    """DSVT's ``DSVT_EncoderLayer``: a post-norm attention layer over one set partition, wrapped in
    one more post-norm residual::

        y = LN1(x + Attn(x + pe, x + pe, x))        # SetAttention, attention part
        y = LN2(y + FC2(act(FC1(y))))                # SetAttention, feed-forward part
        out = LN(x + y)                              # the encoder layer's own residual

    Attention runs inside the padded sets of ``partition`` with the repeated voxels left out of the
    keys (DSVT's key-padding mask) and each voxel taking the output of its first slot (the
    official training-path scatter).

    Args:
        channels: ``C``.
        num_heads: attention heads (``C`` divisible by it).
        ffn_channels: feed-forward hidden width.
        activation: ``"gelu"`` or ``"relu"``.
        attention_backend: ``grouped_attention`` backend (None: the device's default).

    297,408 parameters at C = 192, FFN 384 (297,024 in the attention layer, 384 in the norm).
    """

    def __init__(
        self,
        channels: int,
        num_heads: int,
        ffn_channels: int,
        activation: str = "gelu",
        attention_backend: str | None = None,
    ) -> None:
        super().__init__()
        self.attn = PostNormAttentionLayer(
            channels, num_heads, ffn_channels, activation, key_mask=True, attention_backend=attention_backend
        )
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor, pe: torch.Tensor, partition: Partition) -> torch.Tensor:
        """``x``, ``pe``: ``(N, C)`` in voxel order; ``partition``: one order of a ``RotatedSets``.
        Returns ``(N, C)``."""
        return self.norm(x + self.attn(x, pe, partition))


class DSVTBlock(nn.Module):
    """Two set-attention layers over the two orders (y-major, then x-major) of one window
    configuration, and the block's post-norm residual: ``out = LN(x + layer1(layer0(x)))``
    (the official ``DSVTBlock`` plus the backbone's ``residual_norm`` of that block).

    Args: as ``SetAttentionLayer``. 595,200 parameters at C = 192, FFN 384.
    """

    def __init__(
        self,
        channels: int,
        num_heads: int,
        ffn_channels: int,
        activation: str = "gelu",
        attention_backend: str | None = None,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            SetAttentionLayer(channels, num_heads, ffn_channels, activation, attention_backend) for _ in range(2)
        )
        self.norm = nn.LayerNorm(channels)

    def forward(
        self,
        x: torch.Tensor,
        pes: tuple[torch.Tensor, torch.Tensor],
        partitions: tuple[Partition, Partition],
    ) -> torch.Tensor:
        """``x``: ``(N, C)``; ``pes[i]``, ``partitions[i]``: the ``(N, C)`` positional embedding and the
        partition of layer ``i`` (0: y-major sets, 1: x-major sets). Returns ``(N, C)``."""
        out = x
        for layer, pe, partition in zip(self.layers, pes, partitions, strict=True):
            out = layer(out, pe, partition)
        return self.norm(x + out)
