"""Attention ops over groupings of voxels.

* ``grouped_attention``: multi-head softmax attention inside the groups of a ``Partition``
  (FlatFormer, DSVT, PTv3), with ``varlen_attention`` (cu_seqlens) and ``indexed_attention``
  (the general index-list form, e.g. DSVT-V's attention pooling as cross attention);
* ``scattered_linear_attention``: ScatterFormer's linear attention over variable-length windows
  treated as one sequence (``scattered_linear_attention_partition`` over a ``Partition``).
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
from pointformer.ops.attention.linear import (
    scattered_linear_attention,
    scattered_linear_attention_naive,
    scattered_linear_attention_partition,
    scattered_linear_attention_reference,
)

__all__ = [
    "DEFAULT_BACKEND",
    "AttentionIndex",
    "attention_index",
    "grouped_attention",
    "grouped_attention_reference",
    "grouped_attention_sdpa",
    "indexed_attention",
    "scattered_linear_attention",
    "scattered_linear_attention_naive",
    "scattered_linear_attention_partition",
    "scattered_linear_attention_reference",
    "varlen_attention",
]
