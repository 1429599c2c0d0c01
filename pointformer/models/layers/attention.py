"""Multi-head self-attention inside the groups of a ``Partition``, and FlatFormer's post-norm layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pointformer.ops import grouped_attention
from pointformer.structures import Partition

_ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu}


class GroupedSelfAttention(nn.Module):
    """Self-attention inside groups, with ``nn.MultiheadAttention``'s parameters (``in_proj_weight``
    ``(3C, C)``, ``in_proj_bias`` ``(3C,)``, ``out_proj`` Linear(C, C)), so state dicts and counts match.

    ``q = k = x + pe`` and ``v = x`` (DETR/SST style: the position is not added to the values).

    Args:
        channels: ``C``.
        num_heads: ``H``, a divisor of ``C``.
        key_mask: passed to ``grouped_attention``. False (FlatFormer) attends to every slot of a
            padded group, the repeated voxels included, as FlatFormer's fixed-length FlashAttention
            calls do; True leaves the repeats out of the keys.
        backend: ``grouped_attention`` backend (None: the device's default).
    """

    def __init__(self, channels: int, num_heads: int, key_mask: bool = False, backend: str | None = None) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"GroupedSelfAttention: num_heads {num_heads} must divide channels {channels}")
        self.channels, self.num_heads = channels, num_heads
        self.key_mask, self.backend = key_mask, backend
        self.in_proj_weight = nn.Parameter(torch.empty(3 * channels, channels))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * channels))
        self.out_proj = nn.Linear(channels, channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.MultiheadAttention's initialisation.
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor, pe: torch.Tensor, partition: Partition) -> torch.Tensor:
        """``x``, ``pe``: ``(N, C)`` in voxel order; returns ``(N, C)`` in voxel order."""
        c = self.channels
        w, b = self.in_proj_weight, self.in_proj_bias
        # q and k share one input: one matmul for both.
        q, k = F.linear(x + pe, w[: 2 * c], b[: 2 * c]).chunk(2, dim=1)
        v = F.linear(x, w[2 * c :], b[2 * c :])
        out = grouped_attention(q, k, v, partition, self.num_heads, key_mask=self.key_mask, backend=self.backend)
        return self.out_proj(out)


class PostNormAttentionLayer(nn.Module):
    """FlatFormer's ``BasicLayer``: post-norm attention then feed-forward, no dropout::

        x = LN1(x + Attn(x + pe, x + pe, x))
        x = LN2(x + FC2(act(FC1(x))))

    132,480 parameters at C = 128, FFN 256.

    Args:
        channels: ``C``.
        num_heads: attention heads.
        ffn_channels: hidden width of the feed-forward network (FlatFormer: 2C).
        activation: ``"gelu"`` or ``"relu"``.
        key_mask, attention_backend: see ``GroupedSelfAttention``.
    """

    def __init__(
        self,
        channels: int,
        num_heads: int,
        ffn_channels: int,
        activation: str = "gelu",
        key_mask: bool = False,
        attention_backend: str | None = None,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self.attn = GroupedSelfAttention(channels, num_heads, key_mask=key_mask, backend=attention_backend)
        self.fc1 = nn.Linear(channels, ffn_channels)
        self.fc2 = nn.Linear(ffn_channels, channels)
        self.norm1 = nn.LayerNorm(channels)
        self.norm2 = nn.LayerNorm(channels)
        self.act = _ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor, pe: torch.Tensor, partition: Partition) -> torch.Tensor:
        """``x``, ``pe``: ``(N, C)`` in voxel order; returns ``(N, C)`` in voxel order. Everything
        but the attention is per token, so nothing is permuted here."""
        x = self.norm1(x + self.attn(x, pe, partition))
        return self.norm2(x + self.fc2(self.act(self.fc1(x))))
