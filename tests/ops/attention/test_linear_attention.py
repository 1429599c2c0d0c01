"""scattered_linear_attention: native kernels, reference and naive baseline against a float64
reference; gradients, edge cases, opcheck, determinism, errors."""

from __future__ import annotations

import pytest
import torch

from pointformer.ops import _library, partition_scattered, reference_only
from pointformer.ops.attention.linear import (
    scattered_linear_attention,
    scattered_linear_attention_naive,
    scattered_linear_attention_partition,
    scattered_linear_attention_reference,
)

native = pytest.mark.skipif(not _library.NATIVE, reason="pointformer._C is not built")
IMPLEMENTATIONS = {
    "native": scattered_linear_attention,
    "reference": scattered_linear_attention_reference,
    "naive": scattered_linear_attention_naive,
}


def make_offsets(lengths: list[int]) -> torch.Tensor:
    return torch.cumsum(torch.tensor([0, *lengths], dtype=torch.int64), 0)


def make_qkv(n: int, channels: int, generator: torch.Generator, dtype=torch.float64):
    q, k, v = (torch.randn(n, channels, generator=generator, dtype=torch.float64) for _ in range(3))
    if n > 3:
        q[1] = -q[1].abs()  # all-negative query row: y = 0 (denominator = eps)
        k[2] = -k[2].abs()  # all-negative key row: adds nothing to KV or s
    return q.to(dtype), k.to(dtype), v.to(dtype)


def expected(q, k, v, offsets, num_heads, eps=1e-6) -> torch.Tensor:
    """Window by window and head by head, in float64, straight from the formula."""
    n, c = q.shape
    d = c // num_heads
    out = torch.zeros(n, c, dtype=torch.float64)
    q, k, v = q.double().cpu(), k.double().cpu(), v.double().cpu()
    bounds = offsets.tolist()
    for r0, r1 in zip(bounds[:-1], bounds[1:], strict=True):
        for h in range(num_heads):
            cols = slice(h * d, (h + 1) * d)
            pq, pk, vv = q[r0:r1, cols].relu(), k[r0:r1, cols].relu(), v[r0:r1, cols]
            kv, s = pk.T @ vv, pk.sum(0)
            out[r0:r1, cols] = (pq @ kv) / (pq @ s + eps)[:, None]
    return out


# Windows of one voxel, empty windows (repeated offsets, also first and last), a long window.
LENGTHS = [0, 1, 7, 0, 0, 33, 1, 64, 65, 2500, 3, 0]


@pytest.mark.parametrize("impl", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("head_dim", [16, 32, 64])
def test_matches_float64_formula(device, generator, impl, head_dim):
    lengths = LENGTHS if impl != "naive" or head_dim < 64 else LENGTHS[:-3]  # naive holds N x C x D
    offsets = make_offsets(lengths)
    n, heads = int(offsets[-1]), 2
    q, k, v = make_qkv(n, heads * head_dim, generator, torch.float32)
    got = IMPLEMENTATIONS[impl](q.to(device), k.to(device), v.to(device), offsets.to(device), heads)
    assert got.dtype == torch.float32 and got.shape == q.shape
    torch.testing.assert_close(got.cpu().double(), expected(q, k, v, offsets, heads), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("head_dim", [3, 20, 48])  # the CUDA kernel pads these to its buckets
def test_odd_head_dims_float64(device, generator, head_dim):
    offsets = make_offsets([5, 0, 130, 1, 40])
    n, heads = int(offsets[-1]), 3
    q, k, v = make_qkv(n, heads * head_dim, generator)
    got = scattered_linear_attention(q.to(device), k.to(device), v.to(device), offsets.to(device), heads)
    torch.testing.assert_close(got.cpu(), expected(q, k, v, offsets, heads), rtol=1e-10, atol=1e-12)


def test_negative_rows_and_eps(device):
    q = torch.tensor([[-1.0, -2.0], [1.0, 0.0], [0.5, 0.5]], device=device)
    k = torch.tensor([[-1.0, -1.0], [2.0, 0.0], [0.0, -3.0]], device=device)
    v = torch.tensor([[5.0, 6.0], [1.0, 2.0], [3.0, 4.0]], device=device)
    offsets = torch.tensor([0, 3], device=device)
    y = scattered_linear_attention(q, k, v, offsets, 1, eps=0.5)
    # KV = [[2, 4], [0, 0]], s = [2, 0]: row 0 sees nothing (y = 0); row 1: [2, 4] / 2.5; row 2: [1, 2] / 1.5
    want = torch.tensor([[0.0, 0.0], [0.8, 1.6], [1.0 / 1.5, 2.0 / 1.5]])
    torch.testing.assert_close(y.cpu(), want)
    # All keys negative: KV = 0 and s = 0, so every output is 0 / eps = 0.
    zero = scattered_linear_attention(q, -k.abs(), v, offsets, 1)
    assert zero.abs().sum() == 0


def test_empty_input(device):
    for offsets in ([0], [0, 0, 0]):
        q = torch.zeros(0, 8, device=device, requires_grad=True)
        y = scattered_linear_attention(q, q, q, torch.tensor(offsets, device=device), 2)
        assert y.shape == (0, 8)
        y.sum().backward()
        assert q.grad.shape == (0, 8)


@pytest.mark.parametrize("impl", ["native", "reference"])
def test_gradients_match_float64_formula(device, generator, impl):
    offsets = make_offsets([3, 0, 1, 70, 9])
    n, heads, d = int(offsets[-1]), 2, 16
    q, k, v = make_qkv(n, heads * d, generator)
    upstream = torch.randn(n, heads * d, generator=generator, dtype=torch.float64)
    grads = []
    for fn, dev in ((IMPLEMENTATIONS[impl], device), (expected, torch.device("cpu"))):
        inputs = [t.clone().to(dev).requires_grad_(True) for t in (q, k, v)]
        fn(*inputs, offsets.to(dev), heads).backward(upstream.to(dev))
        grads.append([t.grad.cpu() for t in inputs])
    for got, want in zip(*grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("impl", ["native", "reference"])
def test_gradcheck(device, generator, impl):
    offsets = make_offsets([2, 0, 1, 5, 3]).to(device)
    n, heads, d = int(offsets[-1]), 2, 3
    # Away from ReLU's kink at 0, where the finite differences would straddle it.
    inputs = []
    for _ in range(3):
        x = torch.randn(n, heads * d, generator=generator, dtype=torch.float64)
        inputs.append((x + 0.2 * x.sign()).to(device).requires_grad_(True))
    fn = IMPLEMENTATIONS[impl]
    assert torch.autograd.gradcheck(lambda q, k, v: fn(q, k, v, offsets, heads, 1e-3), inputs)


@native
def test_opcheck(device, generator):
    offsets = make_offsets([4, 0, 1, 80, 7]).to(device)
    n = int(offsets[-1])
    q, k, v = (t.to(device).requires_grad_(True) for t in make_qkv(n, 32, generator, torch.float32))
    torch.library.opcheck(torch.ops.pointformer.scattered_linear_attention, (q, k, v, offsets, 2, 1e-6))
    grad = torch.randn(n, 32, generator=generator).to(device)
    torch.library.opcheck(
        torch.ops.pointformer.scattered_linear_attention_backward, (grad, q.detach(), k.detach(), v.detach(), offsets,
                                                                     2, 1e-6)
    )  # fmt: skip


def test_deterministic(device, generator):
    offsets = make_offsets([3000, 1, 0, 200] * 3)
    n = int(offsets[-1])
    q, k, v = (t.to(device).requires_grad_(True) for t in make_qkv(n, 128, generator, torch.float32))
    offsets = offsets.to(device)
    upstream = torch.randn(n, 128, generator=generator).to(device)
    runs = []
    for _ in range(2):
        y = scattered_linear_attention(q, k, v, offsets, 4)
        grads = torch.autograd.grad(y, (q, k, v), upstream)
        runs.append((y, *grads))
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


def test_reference_only_and_partition(device, generator):
    # A real ScatterFormer partition: 12 x 12 BEV windows over a 2-sample batch.
    shape = (4, 60, 60)
    coords = []
    for b, count in enumerate((1500, 700)):
        flat = torch.randperm(shape[0] * shape[1] * shape[2], generator=generator)[:count]
        z, y, x = flat // (shape[1] * shape[2]), (flat // shape[2]) % shape[1], flat % shape[2]
        coords.append(torch.stack([torch.full_like(flat, b), z, y, x], dim=1))
    coords = torch.cat(coords).to(torch.int32).to(device)
    partition = partition_scattered(coords, 2, shape, (shape[0], 12, 12))
    n = coords.shape[0]
    q, k, v = (t.to(device) for t in make_qkv(n, 64, generator, torch.float32))
    got = scattered_linear_attention_partition(q, k, v, partition, 4)
    perm = partition.permutation.cpu()
    want = torch.empty(n, 64, dtype=torch.float64)
    want[perm] = expected(q.cpu()[perm], k.cpu()[perm], v.cpu()[perm], partition.offsets.cpu(), 4)
    torch.testing.assert_close(got.cpu().double(), want, rtol=1e-4, atol=1e-5)
    with reference_only():
        ref = scattered_linear_attention_partition(q, k, v, partition, 4)
    torch.testing.assert_close(ref, got, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_cuda(device, generator, dtype):
    if _library.kernel_kind(device) != "cuda":
        pytest.skip("float16/bfloat16 run on the CUDA kernel (on a GPU, or emulated: the cuda-emulated case)")
    offsets = make_offsets([1, 0, 700, 64, 65, 9])
    n = int(offsets[-1])
    q, k, v = (t.to(dtype) for t in make_qkv(n, 128, generator, torch.float32))
    inputs = [t.to(device).requires_grad_(True) for t in (q, k, v)]
    y = scattered_linear_attention(*inputs, offsets.to(device), 4)
    assert y.dtype == dtype
    tol = 2e-2 if dtype == torch.float16 else 5e-2
    torch.testing.assert_close(y.cpu().double(), expected(q, k, v, offsets, 4), rtol=tol, atol=tol)
    upstream = torch.randn(n, 128, generator=generator)
    y.backward(upstream.to(dtype).to(device))
    ref = [t.detach().float().requires_grad_(True) for t in (q, k, v)]  # leaves also where inputs are q, k, v
    scattered_linear_attention_reference(*ref, offsets, 4).backward(upstream.to(dtype).float())
    for got, want in zip(inputs, ref, strict=True):
        scale = want.grad.abs().max().item()
        torch.testing.assert_close(got.grad.cpu().float(), want.grad, rtol=tol, atol=tol * scale)


def test_bad_arguments():
    q = torch.zeros(5, 8)
    offsets = torch.tensor([0, 2, 5])
    cases = [
        ((q[:, :6], q, q, offsets, 2), "k must have q's shape"),
        ((q[0], q[0], q[0], offsets, 2), "q must be a tensor of shape"),
        ((q, q, q.double(), offsets, 2), "must share one floating dtype"),
        ((q.long(), q.long(), q.long(), offsets, 2), "must share one floating dtype"),
        ((q, q, q, offsets.int(), 2), "offsets must be int64"),
        ((q, q, q, offsets[None], 2), r"offsets must be a \(W \+ 1,\) tensor"),
        ((q, q, q, offsets, 3), "must be divisible by num_heads"),
        ((q, q, q, offsets, 0), "num_heads must be a positive int"),
        ((q, q, q, torch.tensor([0, 3, 2, 5]), 2), "offsets must be non-decreasing"),
        ((q, q, q, torch.tensor([1, 5]), 2), "start at 0 and end at N = 5"),
        ((q, q, q, torch.tensor([0, 4]), 2), "start at 0 and end at N = 5"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            scattered_linear_attention(*args)
    with pytest.raises(ValueError, match="eps must be > 0"):
        scattered_linear_attention(q, q, q, offsets, 2, eps=0.0)
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="one device"):
            scattered_linear_attention(q, q, q, offsets.cuda(), 2)


@native
def test_native_op_checks_offsets_values():
    q = torch.zeros(5, 8)
    with pytest.raises(RuntimeError, match="non-decreasing"):
        torch.ops.pointformer.scattered_linear_attention(q, q, q, torch.tensor([0, 3, 2, 5]), 2, 1e-6)
    with pytest.raises(RuntimeError, match="end at N"):
        torch.ops.pointformer.scattered_linear_attention(q, q, q, torch.tensor([0, 6]), 2, 1e-6)
