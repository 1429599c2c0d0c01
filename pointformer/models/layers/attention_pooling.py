"""DSVT-V's attention-style pooling between stages (the official ``Stage_ReductionAtt_Block``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pointformer.ops import _library, indexed_attention
from pointformer.ops.grouping import PoolingMap


class AttentionPooling(nn.Module):
    """Merges the voxels of each pooling cell (``P = sz * sy * sx`` slots) into one voxel.

    For a cell with slots ``s_p`` (the voxel's features, or zeros where the slot is empty)::

        query = max_p s_p                                  # per channel, empty slots included
        out   = LN(query + MHA(query, keys = s_p + e_p, values = s_p))

    with a learned ``(P, C)`` slot embedding ``e`` added to the keys only. As in the official code,
    empty slots are not masked: they attend as zero vectors (keys ``e_p``) and enter the max.
    Attention is ``indexed_attention`` with one query and the ``P`` slots as keys per cell.

    Args:
        channels: ``C``.
        num_slots: ``P``.
        num_heads: attention heads (the official block fixes 8).
        attention_backend: ``indexed_attention`` backend (None: the device's default).

    ``4 * C * C + 4 * C`` (attention) + ``2 * C`` (norm) + ``P * C`` parameters: 149,376 at C = 192,
    P = 4, and 148,992 at P = 2. The slot embedding starts as N(0, 0.01^2) (the backbone may
    re-initialise it, as DSVT does).
    """

    def __init__(self, channels: int, num_slots: int, num_heads: int = 8, attention_backend: str | None = None) -> None:
        super().__init__()
        if num_slots < 1:
            raise ValueError(f"AttentionPooling: num_slots must be >= 1, got {num_slots}")
        if channels % num_heads:
            raise ValueError(f"AttentionPooling: num_heads {num_heads} must divide channels {channels}")
        self.channels, self.num_slots, self.num_heads = int(channels), int(num_slots), int(num_heads)
        self.backend = attention_backend
        # nn.MultiheadAttention's parameter names and shapes (state dicts and counts match).
        self.in_proj_weight = nn.Parameter(torch.empty(3 * channels, channels))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * channels))
        self.out_proj = nn.Linear(channels, channels)
        self.norm = nn.LayerNorm(channels)
        self.pos_embedding = nn.Parameter(torch.empty(num_slots, channels))
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)
        nn.init.normal_(self.pos_embedding, std=0.01)

    def forward(self, features: torch.Tensor, pooling: PoolingMap) -> torch.Tensor:
        """``features``: ``(N, C)`` voxel features; ``pooling``: where each voxel goes
        (``dsvt_pooling_map``). Returns ``(M, C)`` features of the pooled cells, in
        ``pooling.coords`` order."""
        if pooling.num_slots != self.num_slots:
            raise ValueError(
                f"AttentionPooling: built for {self.num_slots} slots, the pooling map has {pooling.num_slots}"
            )
        if features.dim() != 2 or features.shape[1] != self.channels:
            raise ValueError(f"AttentionPooling: expected (N, {self.channels}) features, got {tuple(features.shape)}")
        m, p, c = pooling.num_cells, self.num_slots, self.channels
        flat_slot = pooling.cell_of_voxel * p + pooling.slot_of_voxel
        slots = features.new_zeros(m * p, c).index_copy(0, flat_slot, features)
        query = slots.view(m, p, c).amax(dim=1)
        w, b = self.in_proj_weight, self.in_proj_bias
        q = F.linear(query, w[:c], b[:c])
        k = F.linear(slots + self.pos_embedding.to(slots.dtype).repeat(m, 1), w[c : 2 * c], b[c : 2 * c])
        v = F.linear(slots, w[2 * c :], b[2 * c :])
        if _library.exporting():  # every cell has exactly P keys: plain batched attention, fixed rank
            return self.norm(query + self.out_proj(_cell_attention(q, k, v, p, self.num_heads)))
        device = features.device
        cells = torch.arange(m, device=device)
        out = indexed_attention(
            q, k, v,
            query_index=cells, query_offsets=torch.arange(m + 1, device=device),
            key_index=torch.arange(m * p, device=device), key_offsets=torch.arange(0, m * p + 1, p, device=device),
            num_heads=self.num_heads, backend=self.backend,
        )  # fmt: skip
        return self.norm(query + self.out_proj(out))


def _cell_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_slots: int, num_heads: int) -> torch.Tensor:
    """``indexed_attention`` of one query per cell over the cell's ``P`` consecutive key rows, as one
    ``scaled_dot_product_attention``: ``q`` ``(M, C)``, ``k``/``v`` ``(M * P, C)`` -> ``(M, C)``."""
    m, c = q.shape
    d = c // num_heads
    qh = q.view(m, 1, num_heads, d).transpose(1, 2)
    kh = k.view(m, num_slots, num_heads, d).transpose(1, 2)
    vh = v.view(m, num_slots, num_heads, d).transpose(1, 2)
    return F.scaled_dot_product_attention(qh, kh, vh).transpose(1, 2).reshape(m, c)
