"""ScatterFormer's scattered linear attention layer (SLA): projections around
``pointformer.ops.scattered_linear_attention``."""

from __future__ import annotations

import torch
from torch import nn

from pointformer.ops import scattered_linear_attention


class ScatteredLinearAttention(nn.Module):
    """Multi-head linear attention inside variable-length windows (official ``SLALayer``)::

        q, k, v = split(QKV(x))                  # Linear(C, 3C), no bias
        y_i = relu(q_i) KV_w / (relu(q_i) . s_w + 1e-6)   per head, KV_w = sum_{j in w} relu(k_j)^T v_j
        out = Proj(y)                            # Linear(C, C)

    No softmax, no scaling, no positional term (ScatterFormer's position comes from its conv stem and
    the cross-window interaction).

    Args:
        channels: ``C``.
        num_heads: ``H``, dividing ``C``.
        qkv_bias: bias of the QKV projection (False, as ScatterFormer).
        eps: the normaliser's epsilon.

    Parameters at C = 128: 65,664 (QKV 49,152 + Proj 16,512).
    """

    def __init__(self, channels: int, num_heads: int, qkv_bias: bool = False, eps: float = 1e-6) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"ScatteredLinearAttention: num_heads {num_heads} must divide channels {channels}")
        self.channels, self.num_heads, self.eps = int(channels), int(num_heads), float(eps)
        self.qkv = nn.Linear(channels, 3 * channels, bias=qkv_bias)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """``x``: ``(N, C)`` with rows in window order; ``offsets``: ``(W + 1,)`` int64 window starts
        (``Partition.offsets``). Returns ``(N, C)`` in the same order."""
        q, k, v = self.qkv(x).chunk(3, dim=1)
        # The offsets come from a partition of these very rows: no need to re-validate them.
        y = scattered_linear_attention(q, k, v, offsets, self.num_heads, self.eps, check_offsets=False)
        return self.proj(y)
