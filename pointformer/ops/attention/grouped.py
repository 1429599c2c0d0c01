"""Multi-head softmax attention inside groups (FlatFormer's flattened windows, DSVT's sets, PTv3's
patches, variable-length groups, and DSVT-V's pooling as cross attention).

One native op, ``pointformer::grouped_attention``, covers every form: group ``g``'s queries are the
rows ``query_index[query_offsets[g]:query_offsets[g + 1]]`` of ``q``, its keys and values the rows
``key_index[key_offsets[g]:key_offsets[g + 1]]`` of ``k`` and ``v`` (rows may repeat). Masked keys
are left out of ``key_index`` (done once per partition, ``attention_index``), so kernels need no
mask. Rows of ``q`` in no group, and the queries of a group without keys, get 0.

Backends:

* ``"fused"``: the native op (CPU kernel for float32/float64; CUDA kernel for float32, float16 and
  bfloat16 with head dim <= 64, accumulating in float32), differentiable through
  ``pointformer::grouped_attention_backward``;
* ``"sdpa"``: the portable path: gather into padded ``(G, L, C)``, ``scaled_dot_product_attention``
  with a key mask, scatter back; differentiable by torch's autograd;
* ``"reference"``: explicit softmax in pure PyTorch (float64-capable; used by tests and forced by
  ``pointformer.ops.reference_only()``).

``backend=None`` takes ``DEFAULT_BACKEND[device type]`` (falling back to ``"sdpa"`` where the fused
kernel does not cover the input).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pointformer.ops import _library
from pointformer.structures.partition import Partition

BACKENDS = ("fused", "sdpa", "reference")

# Per device type, the backend taken when ``backend=None``.
# CPU: "sdpa", measured with `python tools/benchmark.py attention` (2-core VM, torch 2.13, ~64k
# pillars, C = 128, 8 heads; forward + backward medians): FlatFormer groups of 144 sdpa 410 ms vs
# fused 520 ms, DSVT sets of 36 (key mask) sdpa 345 ms vs fused 445 ms. torch's CPU flash kernel
# (vectorized exp, blocked GEMMs) beats our kernel at both sizes; "fused" stays available (and is
# deterministic, and needs no padding).
# CUDA: not measured (no GPU where this was written): "fused" by design (no (G, S, C) copies, no
# padding to the longest group), to be confirmed by `tools/benchmark.py attention --device cuda`.
DEFAULT_BACKEND: dict[str, str] = {"cpu": "sdpa", "cuda": "fused"}

# The CUDA kernel keeps a head in registers in buckets of 16, 32 and 64 channels.
CUDA_MAX_HEAD_DIM = 64


@dataclass(frozen=True, eq=False)
class AttentionIndex:
    """The index lists of the native op for one partition (see the module docstring).

    Attributes:
        query_index: ``(Lq,)`` int64 rows of ``q``, group by group.
        query_offsets: ``(G + 1,)`` int64 start of each group's queries in ``query_index``.
        key_index: ``(Lk,)`` int64 rows of ``k``/``v``, group by group (masked keys left out).
        key_offsets: ``(G + 1,)`` int64 start of each group's keys in ``key_index``.
    """

    query_index: torch.Tensor
    query_offsets: torch.Tensor
    key_index: torch.Tensor
    key_offsets: torch.Tensor

    @property
    def num_groups(self) -> int:
        return self.query_offsets.shape[0] - 1


_INDEX_CACHE: weakref.WeakKeyDictionary[Partition, dict[bool, AttentionIndex]] = weakref.WeakKeyDictionary()


def attention_index(partition: Partition, key_mask: bool = True) -> AttentionIndex:
    """The index lists of ``partition`` for ``grouped_attention``, computed once per partition and
    ``key_mask`` flag (cached while the partition lives).

    Queries of group ``g`` are ``partition.permutation[offsets[g]:offsets[g + 1]]``: for a padded
    partition these are exactly the voxels whose ``slot_of_voxel // S == g`` (each voxel's output
    slot). Keys are ``group_index[g]`` (duplicates included), without the slots of
    ``partition.key_mask`` when ``key_mask`` is True; a variable-length-only partition's keys are
    its queries.
    """
    per_partition = _INDEX_CACHE.setdefault(partition, {})
    flag = bool(key_mask) and partition.group_index is not None
    if flag not in per_partition:
        per_partition[flag] = _build_attention_index(partition, flag)
    return per_partition[flag]


def _build_attention_index(partition: Partition, key_mask: bool) -> AttentionIndex:
    queries, offsets = partition.permutation, partition.offsets
    if partition.group_index is None:
        return AttentionIndex(queries, offsets, queries, offsets)
    group_index = partition.group_index
    num_groups, size = group_index.shape
    if key_mask:
        keep = ~partition.key_mask
        keys = group_index[keep]  # row-major: group by group, slot order
        counts = keep.sum(1)
    else:
        keys = group_index.reshape(-1)
        counts = torch.full((num_groups,), size, dtype=torch.int64, device=group_index.device)
    key_offsets = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
    return AttentionIndex(queries, offsets, keys, key_offsets)


# --- public functions ----------------------------------------------------------------------------


def grouped_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    partition: Partition,
    num_heads: int,
    *,
    key_mask: bool = True,
    scale: float | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """Softmax attention inside the groups of ``partition``, per head.

    Args:
        q, k, v: ``(N, C)`` features in voxel order, one floating dtype, ``C = num_heads * D``.
        partition: the grouping of the ``N`` voxels (padded or variable-length).
        num_heads: number of heads ``H``.
        key_mask: leave the padding slots (``partition.key_mask``, repeated voxels) out of the keys
            (DSVT, PTv3); False attends to every slot, duplicates included (FlatFormer).
        scale: score scale, default ``1 / sqrt(D)``.
        backend: ``"fused"``, ``"sdpa"``, ``"reference"`` or None (``DEFAULT_BACKEND``).

    Returns:
        ``(N, C)`` in voxel order, ``q``'s dtype: each voxel attends to the keys of the group whose
        output slot it owns.
    """
    _check_features(q, k, v, num_heads, "grouped_attention")
    if q.shape[0] != partition.num_voxels or k.shape[0] != partition.num_voxels:
        raise ValueError(
            f"grouped_attention: q, k and v must have one row per voxel of the partition "
            f"({partition.num_voxels}), got {q.shape[0]} and {k.shape[0]}"
        )
    if partition.permutation.device != q.device:
        raise ValueError(f"grouped_attention: partition is on {partition.permutation.device}, q on {q.device}")
    scale = _scale(scale, q.shape[1] // num_heads)
    chosen = _resolve_backend(backend, q, num_heads, "grouped_attention")
    if chosen == "sdpa" and partition.group_index is not None:
        return _sdpa_padded_partition(q, k, v, partition, num_heads, scale, key_mask)
    index = attention_index(partition, key_mask)
    return _run(chosen, q, k, v, index, num_heads, scale)


def varlen_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    offsets: torch.Tensor,
    num_heads: int,
    *,
    scale: float | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """Softmax attention inside consecutive row ranges (cu_seqlens style).

    Args:
        q, k, v: ``(N, C)`` features already in group order, one floating dtype, ``C = H * D``.
        offsets: ``(G + 1,)`` integer, group ``g`` is rows ``offsets[g]:offsets[g + 1]`` (queries and
            keys alike); non-decreasing, ``offsets[0] >= 0``, ``offsets[-1] <= N``.
        num_heads, scale, backend: as in ``grouped_attention``.

    Returns:
        ``(N, C)``, ``q``'s dtype; rows outside every range are 0.
    """
    _check_features(q, k, v, num_heads, "varlen_attention")
    if k.shape[0] != q.shape[0]:
        raise ValueError(f"varlen_attention: q and k must have the same rows, got {q.shape[0]} and {k.shape[0]}")
    offsets = _check_offsets(offsets, q, "offsets", "varlen_attention")
    rows = torch.arange(q.shape[0], device=q.device)
    index = AttentionIndex(rows, offsets, rows, offsets)
    chosen = _resolve_backend(backend, q, num_heads, "varlen_attention")
    return _run(chosen, q, k, v, index, num_heads, _scale(scale, q.shape[1] // num_heads))


def indexed_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    query_index: torch.Tensor,
    query_offsets: torch.Tensor,
    key_index: torch.Tensor,
    key_offsets: torch.Tensor,
    num_heads: int,
    *,
    scale: float | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """The general form: group ``g``'s queries are rows ``query_index[query_offsets[g]:query_offsets[g+1]]``
    of ``q``, its keys and values rows ``key_index[key_offsets[g]:key_offsets[g+1]]`` of ``k``, ``v``.

    Args:
        q: ``(Nq, C)``; k, v: ``(Nk, C)``; one floating dtype, ``C = num_heads * D``.
        query_index: ``(Lq,)`` integer rows of ``q``, each row at most once over all groups.
        query_offsets, key_offsets: ``(G + 1,)`` integer, non-decreasing.
        key_index: ``(Lk,)`` integer rows of ``k`` (repeats allowed).
        num_heads, scale, backend: as in ``grouped_attention``.

    Returns:
        ``(Nq, C)``, ``q``'s dtype; rows in no group, and queries of a group without keys, are 0.
    """
    _check_features(q, k, v, num_heads, "indexed_attention")
    query_offsets = _check_offsets(query_offsets, q, "query_offsets", "indexed_attention")
    key_offsets = _check_offsets(key_offsets, q, "key_offsets", "indexed_attention")
    if query_offsets.shape != key_offsets.shape:
        raise ValueError(
            f"indexed_attention: query_offsets and key_offsets must both have G + 1 entries, got "
            f"{query_offsets.shape[0]} and {key_offsets.shape[0]}"
        )
    query_index = _check_index(query_index, q, "query_index", "indexed_attention")
    key_index = _check_index(key_index, q, "key_index", "indexed_attention")
    index = AttentionIndex(query_index, query_offsets, key_index, key_offsets)
    chosen = _resolve_backend(backend, q, num_heads, "indexed_attention")
    return _run(chosen, q, k, v, index, num_heads, _scale(scale, q.shape[1] // num_heads))


def _run(backend: str, q, k, v, index: AttentionIndex, num_heads: int, scale: float) -> torch.Tensor:
    args = (index.query_index, index.query_offsets, index.key_index, index.key_offsets, num_heads, scale)
    if backend == "fused":
        return torch.ops.pointformer.grouped_attention(q, k, v, *args)[0]
    if backend == "sdpa":
        return grouped_attention_sdpa(q, k, v, *args)
    return grouped_attention_reference(q, k, v, *args)[0]


# --- checks and backend choice -------------------------------------------------------------------


def _check_features(q, k, v, num_heads: int, name: str) -> None:
    if q.dim() != 2 or k.dim() != 2 or v.dim() != 2:
        raise ValueError(
            f"{name}: q, k and v must be 2-D (N, C), got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if k.shape != v.shape or k.shape[1] != q.shape[1]:
        raise ValueError(f"{name}: k and v must have shape (Nk, {q.shape[1]}), got {tuple(k.shape)}, {tuple(v.shape)}")
    if not q.is_floating_point() or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"{name}: q, k and v must share one floating dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if k.device != q.device or v.device != q.device:
        raise ValueError(f"{name}: q, k and v must be on one device, got {q.device}, {k.device}, {v.device}")
    if not isinstance(num_heads, int) or num_heads < 1 or q.shape[1] % num_heads:
        raise ValueError(f"{name}: num_heads must be a positive divisor of C = {q.shape[1]}, got {num_heads}")


def _check_offsets(offsets: torch.Tensor, q: torch.Tensor, arg: str, name: str) -> torch.Tensor:
    if offsets.dim() != 1 or offsets.shape[0] < 1 or offsets.is_floating_point():
        raise ValueError(
            f"{name}: {arg} must be an integer tensor (G + 1,), got {offsets.dtype} {tuple(offsets.shape)}"
        )
    if offsets.device != q.device:
        raise ValueError(f"{name}: {arg} is on {offsets.device}, q on {q.device}")
    return offsets.to(torch.int64)


def _check_index(index: torch.Tensor, q: torch.Tensor, arg: str, name: str) -> torch.Tensor:
    if index.dim() != 1 or index.is_floating_point():
        raise ValueError(f"{name}: {arg} must be an integer tensor (L,), got {index.dtype} {tuple(index.shape)}")
    if index.device != q.device:
        raise ValueError(f"{name}: {arg} is on {index.device}, q on {q.device}")
    return index.to(torch.int64)


def _scale(scale: float | None, head_dim: int) -> float:
    return 1.0 / math.sqrt(head_dim) if scale is None else float(scale)


def fused_supports(q: torch.Tensor, num_heads: int) -> bool:
    """Whether the native kernel covers ``q``'s device, dtype and head dim."""
    if not _library.has_kernel("grouped_attention", q.device):
        return False
    if _library.kernel_kind(q.device) == "cpu":
        return q.dtype in (torch.float32, torch.float64)
    return q.dtype in (torch.float32, torch.float16, torch.bfloat16) and q.shape[1] // num_heads <= CUDA_MAX_HEAD_DIM


def _resolve_backend(backend: str | None, q: torch.Tensor, num_heads: int, name: str) -> str:
    if _library._exporting:  # the padded-group path: fixed-rank gathers, no data-dependent lengths
        return "sdpa"
    if _library._reference_only:
        return "reference"
    if backend is None:
        chosen = DEFAULT_BACKEND.get(q.device.type, "sdpa")
        return "sdpa" if chosen == "fused" and not fused_supports(q, num_heads) else chosen
    if backend not in BACKENDS:
        raise ValueError(f"{name}: backend must be one of {BACKENDS} or None, got {backend!r}")
    if backend == "fused" and not fused_supports(q, num_heads):
        raise ValueError(
            f"{name}: backend 'fused' has no kernel for {q.device.type} {q.dtype} with head dim "
            f"{q.shape[1] // num_heads} (CPU: float32/float64; CUDA: float32/float16/bfloat16, "
            f"head dim <= {CUDA_MAX_HEAD_DIM}; and the extension must be built)"
        )
    return backend


# --- portable paths ------------------------------------------------------------------------------


def _padded_lists(index: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(G, L)`` rows (0 in padding) and validity of a CSR index list, ``L`` the longest group."""
    counts = offsets[1:] - offsets[:-1]
    length = int(counts.max()) if counts.numel() else 0
    position = torch.arange(length, device=index.device)
    valid = position[None, :] < counts[:, None]
    source = (offsets[:-1, None] + position[None, :]).clamp(max=max(index.shape[0] - 1, 0))
    rows = index[source] if index.shape[0] else torch.zeros_like(source)
    return torch.where(valid, rows, torch.zeros_like(rows)), valid


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``(G, L, C)`` -> ``(G, H, L, D)``."""
    g, length, c = x.shape
    return x.reshape(g, length, num_heads, c // num_heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(G, H, L, D)`` -> ``(G, L, C)``."""
    g, h, length, d = x.shape
    return x.transpose(1, 2).reshape(g, length, h * d)


def _scatter_queries(q, grouped, query_rows, query_valid) -> torch.Tensor:
    """``(G, Lq, C)`` outputs to ``(Nq, C)`` rows of ``q`` (zeros elsewhere)."""
    out = q.new_zeros(q.shape[0], grouped.shape[-1], dtype=grouped.dtype)
    return out.index_put((query_rows[query_valid],), grouped[query_valid])


def grouped_attention_sdpa(
    q, k, v, query_index, query_offsets, key_index, key_offsets, num_heads: int, scale: float
) -> torch.Tensor:
    """The general form through ``scaled_dot_product_attention``: queries and keys padded to the
    longest group (masked), outputs scattered back. Differentiable by autograd."""
    if q.shape[0] == 0 or k.shape[0] == 0 or query_offsets.shape[0] <= 1:
        return q.new_zeros(q.shape)
    query_rows, query_valid = _padded_lists(query_index, query_offsets)
    key_rows, key_valid = _padded_lists(key_index, key_offsets)
    has_keys = key_valid.any(1)
    if key_valid.shape[1] == 0:
        return q.new_zeros(q.shape)
    # A group without keys attends to row 0 (any real key, never NaN) and its output is zeroed.
    key_valid = key_valid.clone()
    key_valid[:, 0] |= ~has_keys
    o = F.scaled_dot_product_attention(
        _heads(q[query_rows], num_heads), _heads(k[key_rows], num_heads), _heads(v[key_rows], num_heads),
        attn_mask=key_valid[:, None, None, :], scale=scale,
    )  # fmt: skip
    o = torch.where(has_keys[:, None, None], _merge_heads(o), torch.zeros((), dtype=o.dtype, device=o.device))
    return _scatter_queries(q, o, query_rows, query_valid)


def _sdpa_padded_partition(q, k, v, partition: Partition, num_heads: int, scale: float, key_mask: bool):
    """A padded partition straight from ``group_index`` (G, S): no padding to compute, a mask
    only where ``key_mask`` asks for it."""
    if partition.num_groups == 0:
        return q.new_zeros(q.shape)
    mask = ~partition.key_mask[:, None, None, :] if key_mask else None
    # partition.gather, not q[group_index]: its backward sums rows with index_add_ (faster on the CPU).
    o = F.scaled_dot_product_attention(
        _heads(partition.gather(q), num_heads), _heads(partition.gather(k), num_heads),
        _heads(partition.gather(v), num_heads), attn_mask=mask, scale=scale,
    )  # fmt: skip
    return partition.scatter(_merge_heads(o))


def grouped_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    query_index: torch.Tensor,
    query_offsets: torch.Tensor,
    key_index: torch.Tensor,
    key_offsets: torch.Tensor,
    num_heads: int,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pure-PyTorch explicit-softmax ``grouped_attention`` (the native op's semantics), in ``q``'s
    dtype (float16/bfloat16 computed in float32). Differentiable by autograd.

    Returns:
        ``out (Nq, C)`` and ``lse (Nq, H)`` (float64 for float64 inputs, else float32): the
        log-sum-exp of each row's scaled scores, -inf for rows in no group or without keys.
    """
    nq, c = q.shape
    head_dim = c // num_heads
    scale = _scale(scale, head_dim)
    acc = torch.float64 if q.dtype == torch.float64 else torch.float32
    compute = q.dtype if q.dtype in (torch.float32, torch.float64) else torch.float32
    lse = torch.full((nq, num_heads), -math.inf, dtype=acc, device=q.device)
    if nq == 0 or query_offsets.shape[0] <= 1 or query_index.shape[0] == 0:
        return q.new_zeros(q.shape), lse
    query_rows, query_valid = _padded_lists(query_index, query_offsets)
    key_rows, key_valid = _padded_lists(key_index, key_offsets)
    if k.shape[0] == 0 or key_valid.shape[1] == 0:
        return q.new_zeros(q.shape), lse
    qg = _heads(q[query_rows].to(compute), num_heads)  # (G, H, Lq, D)
    kg = _heads(k[key_rows].to(compute), num_heads)
    vg = _heads(v[key_rows].to(compute), num_heads)
    scores = torch.einsum("ghqd,ghkd->ghqk", qg, kg) * scale
    scores = scores.masked_fill(~key_valid[:, None, None, :], -math.inf)
    row_max = scores.amax(-1, keepdim=True)
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max)).detach()
    weights = torch.exp(scores - row_max)
    total = weights.sum(-1, keepdim=True)
    safe_total = torch.where(total > 0, total, torch.ones_like(total))
    o = torch.einsum("ghqk,ghkd->ghqd", weights, vg) / safe_total
    grouped_lse = torch.where(total > 0, row_max + torch.log(safe_total), torch.full_like(total, -math.inf))
    out = _scatter_queries(q, _merge_heads(o).to(q.dtype), query_rows, query_valid)
    lse = lse.index_put((query_rows[query_valid],), grouped_lse.squeeze(-1).transpose(1, 2)[query_valid].to(acc))
    return out, lse


# --- autograd and fake kernels of the native op -------------------------------------------------


def _setup_context(ctx, inputs, output) -> None:
    q, k, v, query_index, query_offsets, key_index, key_offsets, num_heads, scale = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, query_index, query_offsets, key_index, key_offsets)
    ctx.num_heads, ctx.scale = num_heads, scale
    ctx.mark_non_differentiable(lse)


def _backward(ctx, grad_out, _grad_lse):
    q, k, v, out, lse, *index = ctx.saved_tensors
    grad_q, grad_k, grad_v = torch.ops.pointformer.grouped_attention_backward(
        grad_out.contiguous(), q, k, v, out, lse, *index, ctx.num_heads, ctx.scale
    )
    return grad_q, grad_k, grad_v, None, None, None, None, None, None


if _library.NATIVE:
    torch.library.register_autograd("pointformer::grouped_attention", _backward, setup_context=_setup_context)


@_library.register_fake("grouped_attention")
def _grouped_attention_fake(q, k, v, query_index, query_offsets, key_index, key_offsets, num_heads, scale):
    lse_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    return q.new_empty(q.shape), q.new_empty(q.shape[0], num_heads, dtype=lse_dtype)


@_library.register_fake("grouped_attention_backward")
def _grouped_attention_backward_fake(
    grad_out, q, k, v, out, lse, query_index, query_offsets, key_index, key_offsets, num_heads, scale
):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)
