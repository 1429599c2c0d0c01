"""Attention ops over groupings of voxels.

* ``grouped_attention``: multi-head softmax attention inside the groups of a ``Partition``
  (FlatFormer, DSVT, PTv3), with ``varlen_attention`` (cu_seqlens) and ``indexed_attention``
  (the general index-list form, e.g. DSVT-V's attention pooling as cross attention).
"""

from pointformer.ops.attention.grouped import (
    DEFAULT_BACKEND,
    AttentionIndex,
    attention_index,
    grouped_attention,
    grouped_attention_reference,
    grouped_attention_sdpa,
    indexed_attention,
    varlen_attention,
)

__all__ = [
    "DEFAULT_BACKEND",
    "AttentionIndex",
    "attention_index",
    "grouped_attention",
    "grouped_attention_reference",
    "grouped_attention_sdpa",
    "indexed_attention",
    "varlen_attention",
]
