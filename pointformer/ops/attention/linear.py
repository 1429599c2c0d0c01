"""ScatterFormer's scattered linear attention (SLA) over variable-length windows.

The voxels of a batch are sorted window by window (``partition_scattered``), so window ``w`` is the
contiguous row range ``[offsets[w], offsets[w + 1])`` of one ``(N, C)`` sequence, with no padding.
For every window and head (head dim ``D = C / num_heads``), with ``phi = ReLU``::

    KV = sum_i phi(k_i)^T v_i      (D x D)      s = sum_i phi(k_i)      (D)
    y_i = phi(q_i) KV / (phi(q_i) . s + eps)

No softmax, no ``1/sqrt(D)`` scaling (ScatterFormer ``SLALayer``). Rows whose ``phi(q_i)`` is zero
(an all-negative query) get ``y_i = 0``; a window's rows never see another window.

Two entry points, one layout each:

* ``scattered_linear_attention(q, k, v, offsets, num_heads)``: rows already in window order
  (as ScatterFormer keeps them: it permutes the features once per stage and never back);
* ``scattered_linear_attention_partition(q, k, v, partition, num_heads)``: rows in voxel order;
  gathers them by ``partition.permutation``, attends, and returns the output in voxel order.

Implementations: native kernels (csrc/attention/linear_attention_*; CPU always, CUDA in CUDA
builds) behind ``torch.ops.pointformer.scattered_linear_attention`` with a native backward;
``scattered_linear_attention_reference``, the pure-PyTorch fallback (segment ids by
``searchsorted``, one ``index_add`` per row of KV, so it never holds more than ``N x C`` per step);
and ``scattered_linear_attention_naive``, the scatter-based baseline of the ScatterFormer paper
(a per-voxel ``phi(k)^T v`` of ``N x H x D x D``, ``index_add`` per window, a per-voxel gather
of KV for the output), kept for benchmarks.
"""

from __future__ import annotations

import torch

from pointformer.ops import _library
from pointformer.structures.partition import Partition

_FLOATING = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
CUDA_MAX_HEAD_DIM = 64  # the CUDA kernels' largest head-dim bucket


def _check_args(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    offsets: torch.Tensor,
    num_heads: int,
    eps: float,
    check_offsets: bool,
    name: str,
) -> None:
    if not isinstance(q, torch.Tensor) or q.dim() != 2:
        raise ValueError(f"{name}: q must be a tensor of shape (N, C), got {getattr(q, 'shape', type(q))}")
    for label, t in (("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.shape != q.shape:
            raise ValueError(f"{name}: {label} must have q's shape {tuple(q.shape)}, got {tuple(t.shape)}")
    if q.dtype not in _FLOATING or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(
            f"{name}: q, k and v must share one floating dtype (float16, bfloat16, float32, float64), got "
            f"{q.dtype}, {k.dtype}, {v.dtype}"
        )
    if not isinstance(offsets, torch.Tensor) or offsets.dim() != 1 or offsets.shape[0] < 1:
        raise ValueError(f"{name}: offsets must be a (W + 1,) tensor, got {getattr(offsets, 'shape', type(offsets))}")
    if offsets.dtype != torch.int64:
        raise ValueError(f"{name}: offsets must be int64, got {offsets.dtype}")
    devices = {t.device for t in (q, k, v, offsets)}
    if len(devices) != 1:
        raise ValueError(f"{name}: q, k, v and offsets must be on one device, got {sorted(map(str, devices))}")
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"{name}: num_heads must be a positive int, got {num_heads!r}")
    if q.shape[1] % num_heads:
        raise ValueError(f"{name}: C = {q.shape[1]} must be divisible by num_heads = {num_heads}")
    if not eps > 0:
        raise ValueError(f"{name}: eps must be > 0, got {eps!r}")
    head_dim = q.shape[1] // num_heads
    if (
        _library.kernel_kind(q.device) == "cuda"
        and head_dim > CUDA_MAX_HEAD_DIM
        and _library.has_kernel("scattered_linear_attention", q.device)
    ):
        raise ValueError(f"{name}: the CUDA kernel supports head dims up to {CUDA_MAX_HEAD_DIM}, got C / num_heads = "
                         f"{head_dim}")  # fmt: skip
    if check_offsets and not torch.compiler.is_compiling():
        n = q.shape[0]
        bad = (offsets[0] != 0) | (offsets[-1] != n)
        if offsets.shape[0] > 1:
            bad = bad | (offsets[1:] < offsets[:-1]).any()
        if bool(bad):  # one device-to-host read
            raise ValueError(
                f"{name}: offsets must be non-decreasing, start at 0 and end at N = {n}; got "
                f"offsets[0] = {int(offsets[0])}, offsets[-1] = {int(offsets[-1])}"
            )


def scattered_linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    offsets: torch.Tensor,
    num_heads: int,
    eps: float = 1e-6,
    check_offsets: bool = True,
) -> torch.Tensor:
    """Scattered linear attention over windows that are contiguous row ranges (module docstring).

    Args:
        q, k, v: ``(N, C)`` floating tensors of one dtype (float16, bfloat16, float32, float64;
            float16/bfloat16 accumulate in float32; CUDA has no float64), rows in window
            order, ``C = num_heads * D`` with head ``h`` in columns ``[h * D, (h + 1) * D)``.
        offsets: ``(W + 1,)`` int64 cu_seqlens: non-decreasing, ``offsets[0] == 0``,
            ``offsets[-1] == N`` (empty windows allowed), e.g. ``Partition.offsets``.
        num_heads: ``H``, dividing ``C``.
        eps: added to the normalizer ``phi(q_i) . s``; must be > 0.
        check_offsets: validate the values of ``offsets`` (one device-to-host read on CUDA;
            skipped under ``torch.compile``).

    Returns:
        ``(N, C)`` tensor of ``q``'s dtype. Differentiable in ``q``, ``k`` and ``v``.
    """
    _check_args(q, k, v, offsets, num_heads, eps, check_offsets, "scattered_linear_attention")
    if _library.has_kernel("scattered_linear_attention", q.device):
        return torch.ops.pointformer.scattered_linear_attention(
            q.contiguous(), k.contiguous(), v.contiguous(), offsets.contiguous(), num_heads, float(eps)
        )
    return scattered_linear_attention_reference(q, k, v, offsets, num_heads, eps)


def scattered_linear_attention_partition(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    partition: Partition,
    num_heads: int,
    eps: float = 1e-6,
) -> torch.Tensor:
    """``scattered_linear_attention`` over the groups of ``partition`` (e.g. ``partition_scattered``),
    for ``(N, C)`` features in voxel order: rows are gathered by ``partition.permutation``, attend
    within their group, and the ``(N, C)`` output is returned in voxel order again. (Layers that
    keep their features in window order call ``scattered_linear_attention`` with
    ``partition.offsets`` instead and skip both permutations.)"""
    if not isinstance(partition, Partition):
        raise ValueError(f"scattered_linear_attention_partition: partition must be a Partition, got {type(partition)}")
    if q.dim() != 2 or q.shape[0] != partition.num_voxels:
        raise ValueError(
            f"scattered_linear_attention_partition: q must have shape ({partition.num_voxels}, C) for a partition of "
            f"{partition.num_voxels} voxels, got {tuple(q.shape)}"
        )
    perm = partition.permutation
    y = scattered_linear_attention(q[perm], k[perm], v[perm], partition.offsets, num_heads, eps)
    return y.index_select(0, partition.inverse_permutation())


def _window_of_rows(offsets: torch.Tensor, n: int) -> torch.Tensor:
    """``(N,)`` int64 window of each row: the last ``w`` with ``offsets[w] <= i`` (skips empty windows)."""
    rows = torch.arange(n, device=offsets.device)
    return torch.searchsorted(offsets, rows, right=True) - 1


def _split_heads(q, k, v, num_heads):
    n, c = q.shape
    acc = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    d = c // num_heads
    phi_q = torch.relu(q.to(acc)).reshape(n, num_heads, d)
    phi_k = torch.relu(k.to(acc)).reshape(n, num_heads, d)
    return phi_q, phi_k, v.to(acc).reshape(n, num_heads, d)


def scattered_linear_attention_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, offsets: torch.Tensor, num_heads: int, eps: float = 1e-6
) -> torch.Tensor:
    """Pure-PyTorch scattered linear attention (same arguments and result as
    ``scattered_linear_attention``, no checks); differentiable by torch's autograd, float64-capable.
    float16/bfloat16 compute in float32. KV is built one row ``a`` at a time
    (``KV[:, :, a] = index_add(phi(k)[:, :, a] * v)``, and ``num += phi(q)[:, :, a] * KV[w(i), :, a]``),
    so memory stays ``O(N C + W H D^2)``."""
    n = q.shape[0]
    windows = offsets.shape[0] - 1
    window = _window_of_rows(offsets, n)
    phi_q, phi_k, vv = _split_heads(q, k, v, num_heads)
    d = phi_q.shape[2]
    s = phi_k.new_zeros(windows, num_heads, d).index_add(0, window, phi_k)
    num = torch.zeros_like(phi_q)
    for a in range(d):
        kv_row = phi_k.new_zeros(windows, num_heads, d).index_add(0, window, phi_k[:, :, a : a + 1] * vv)
        num = num + phi_q[:, :, a : a + 1] * kv_row[window]
    den = (phi_q * s[window]).sum(-1, keepdim=True) + eps
    return (num / den).reshape(q.shape).to(q.dtype)


def scattered_linear_attention_naive(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, offsets: torch.Tensor, num_heads: int, eps: float = 1e-6
) -> torch.Tensor:
    """The scatter-based PyTorch SLA that the ScatterFormer paper benchmarks its kernel against
    (same arguments and result as ``scattered_linear_attention``): a per-voxel ``phi(k_i)^T v_i``
    of shape ``(N, H, D, D)`` summed per window by ``index_add``, then each voxel gathers its
    window's ``KV`` (again ``(N, H, D, D)``) for the output. Memory ``O(N H D^2)``: a baseline."""
    n = q.shape[0]
    windows = offsets.shape[0] - 1
    window = _window_of_rows(offsets, n)
    phi_q, phi_k, vv = _split_heads(q, k, v, num_heads)
    d = phi_q.shape[2]
    kv_voxel = phi_k.unsqueeze(-1) * vv.unsqueeze(-2)  # (N, H, D, D)
    kv = kv_voxel.new_zeros(windows, num_heads, d, d).index_add(0, window, kv_voxel)
    s = phi_k.new_zeros(windows, num_heads, d).index_add(0, window, phi_k)
    num = torch.matmul(phi_q.unsqueeze(-2), kv[window]).squeeze(-2)  # (N, H, 1, D) x (N, H, D, D)
    den = (phi_q * s[window]).sum(-1, keepdim=True) + eps
    return (num / den).reshape(q.shape).to(q.dtype)


def _setup_context(ctx, inputs, output) -> None:
    q, k, v, offsets, num_heads, eps = inputs
    # Only the inputs: the backward recomputes each window's KV and s (csrc/attention/
    # linear_attention_cpu.cpp says why) instead of keeping W x H x (D^2 + D) floats alive.
    ctx.save_for_backward(q, k, v, offsets)
    ctx.num_heads, ctx.eps = num_heads, eps


def _backward(ctx, grad_out):
    q, k, v, offsets = ctx.saved_tensors
    dq, dk, dv = torch.ops.pointformer.scattered_linear_attention_backward(
        grad_out.contiguous(), q, k, v, offsets, ctx.num_heads, ctx.eps
    )
    return dq, dk, dv, None, None, None


if _library.NATIVE:
    torch.library.register_autograd("pointformer::scattered_linear_attention", _backward, setup_context=_setup_context)


@_library.register_fake("scattered_linear_attention")
def _scattered_linear_attention_fake(q, k, v, offsets, num_heads, eps):
    return q.new_empty(q.shape)


@_library.register_fake("scattered_linear_attention_backward")
def _scattered_linear_attention_backward_fake(grad_out, q, k, v, offsets, num_heads, eps):
    return q.new_empty(q.shape), q.new_empty(q.shape), q.new_empty(q.shape)
