"""ScatterFormer's attention-based pillar pooling: the voxels of each BEV column -> one pillar."""

from __future__ import annotations

import torch
from torch import nn

from pointformer.ops import segment_reduce
from pointformer.structures import SparseVoxels

QUERY_MODES = ("max", "spconv")


class AttentionPillarPool(nn.Module):
    """Pools every ``(batch, y, x)`` column of voxels into one pillar by attention (official
    ``AttnPillarPool``)::

        query   = max over the column's voxels                       (1 token per pillar)
        keys    = the column's voxels at their z slot + Embedding(z)  (Z slots, empty ones masked)
        values  = the column's voxels at their z slot (no embedding)
        pillar  = LayerNorm(query + MultiheadAttention(query, keys, values))

    The official query is spconv's ``SparseMaxPool3d((Z, 1, 1))`` and is paired with the pillars of a
    ``torch.unique`` by row position, which relies on spconv's output order; here query and keys
    come from the same pillar index, so no order is assumed. Pillars are returned sorted by
    ``(batch, y, x)``.

    spconv's max-pool does not take the true maximum: every output starts at 0 and keeps the larger
    of it and each present input (spconv 2.x: the native path allocates a zero output and updates it
    per index pair, the implicit-GEMM CUDA kernel starts its running maximum at 0 and skips the empty
    cells; spconv issue #754). So the official query is ``max(0, max over the column's voxels)`` in
    every channel, on the GPU as on the CPU. ``query="spconv"`` reproduces that (what checkpoints
    trained with the official code expect, the default of the official ScatterFormer configs);
    ``query="max"`` takes the true maximum (negative channels kept).

    Args:
        channels: ``C``.
        num_z: ``Z``, the z cells of the input grid (one learned embedding per z).
        num_heads: attention heads (8 as ScatterFormer).
        query: ``"max"`` (true maximum) or ``"spconv"`` (spconv's maximum from zero), see above.

    Parameters at C = 128, Z = 8: 67,328 (MultiheadAttention 66,048, LayerNorm 256, embedding
    8 x 128). The embedding is initialised N(0, 0.01^2), the attention as ``nn.MultiheadAttention``.
    """

    def __init__(self, channels: int, num_z: int, num_heads: int = 8, query: str = "max") -> None:
        super().__init__()
        if num_z < 1:
            raise ValueError(f"AttentionPillarPool: num_z must be >= 1, got {num_z}")
        if query not in QUERY_MODES:
            raise ValueError(f"AttentionPillarPool: query must be one of {QUERY_MODES}, got {query!r}")
        self.channels, self.num_z, self.query = int(channels), int(num_z), query
        self.attn = nn.MultiheadAttention(channels, num_heads, batch_first=True)
        self.norm = nn.LayerNorm(channels)
        self.pos_embedding = nn.Embedding(num_z, channels)
        nn.init.normal_(self.pos_embedding.weight, std=0.01)

    def forward(self, voxels: SparseVoxels) -> SparseVoxels:
        """``voxels``: ``(N, C)`` on a ``(Z, Y, X)`` grid with ``Z == num_z``, distinct coords.
        Returns ``(P, C)`` pillars on ``(1, Y, X)`` (coords ``(batch, 0, y, x)``), stride z times ``Z``."""
        z_cells, y_cells, x_cells = voxels.spatial_shape
        if z_cells != self.num_z:
            raise ValueError(f"AttentionPillarPool: built for Z = {self.num_z}, got a grid {voxels.spatial_shape}")
        if voxels.num_channels != self.channels:
            raise ValueError(f"AttentionPillarPool: expected {self.channels} channels, got {voxels.num_channels}")
        c = voxels.coords.long()
        column = (c[:, 0] * y_cells + c[:, 2]) * x_cells + c[:, 3]
        columns, pillar = torch.unique(column, return_inverse=True)
        num_pillars = columns.shape[0]
        x = voxels.features
        query = segment_reduce(x, pillar, num_pillars, "max")
        if self.query == "spconv":
            query = torch.clamp(query, min=0)  # spconv's running maximum starts at 0
        slots = x.new_zeros(num_pillars, self.num_z, self.channels)
        slots = slots.index_put((pillar, c[:, 1]), x)  # out of place: differentiable in x
        empty = torch.ones(num_pillars, self.num_z, dtype=torch.bool, device=x.device)
        empty[pillar, c[:, 1]] = False
        keys = slots + self.pos_embedding.weight.to(x.dtype)
        pooled, _ = self.attn(query[:, None], keys, slots, key_padding_mask=empty, need_weights=False)
        out = self.norm(query + pooled[:, 0])
        b = torch.div(columns, y_cells * x_cells, rounding_mode="floor")
        yx = columns - b * (y_cells * x_cells)
        coords = torch.stack([b, torch.zeros_like(b), yx // x_cells, yx % x_cells], dim=1).int()
        sz, sy, sx = voxels.stride
        return SparseVoxels(out, coords, (1, y_cells, x_cells), voxels.batch_size, (sz * z_cells, sy, sx))
