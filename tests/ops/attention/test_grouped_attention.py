"""grouped_attention: every backend (fused native kernel, sdpa, pure-PyTorch reference) against
float64 expectations computed independently, on partitions from the real layouts and hand-made
index lists; gradients, gradcheck, opcheck, determinism and errors."""

from __future__ import annotations

import math

import pytest
import torch

from pointformer.ops import _library, partition_flattened, partition_rotated_sets, partition_serialized, reference_only
from pointformer.ops.attention import (
    attention_index,
    grouped_attention,
    grouped_attention_reference,
    indexed_attention,
    varlen_attention,
)
from pointformer.ops.attention.grouped import fused_supports
from pointformer.structures.partition import Partition

SHAPE = (1, 48, 48)


def random_coords(counts: list[int], generator: torch.Generator, shape=SHAPE) -> torch.Tensor:
    """Unique ``(b, z, y, x)`` int32 coords, ``counts[b]`` voxels in sample ``b``, clustered so that
    windows get very different occupancies."""
    cells = math.prod(shape)
    rows = []
    for b, n in enumerate(counts):
        if n:
            flat = torch.multinomial(torch.rand(cells, generator=generator) ** 8, n, generator=generator)
            z, rest = flat // (shape[1] * shape[2]), flat % (shape[1] * shape[2])
            rows.append(torch.stack([torch.full_like(flat, b), z, rest // shape[2], rest % shape[2]], 1))
    coords = torch.cat(rows) if rows else torch.zeros(0, 4, dtype=torch.int64)
    return coords[torch.randperm(coords.shape[0], generator=generator)].to(torch.int32)


# counts per sample: a sample smaller than a group (all its slots repeat), a one-voxel sample and
# an empty one.
COUNTS = [300, 20, 1, 0, 90]
LAYOUTS = {
    "flattened": lambda c, b: partition_flattened(c, b, SHAPE, (1, 13, 13), 36, axis="x", shift=True),
    "rotated_sets": lambda c, b: partition_rotated_sets(c, b, SHAPE, (1, 12, 12), 36, (0, 6, 6)).partitions[1],
    "serialized": lambda c, b: partition_serialized(c, b, order="hilbert", patch_size=48),
    "serialized_varlen": lambda c, b: partition_serialized(c, b, order="z", patch_size=None),
}


def backends_for(device: torch.device, dtype=torch.float32) -> list[str]:
    probe = torch.empty(0, 16, device=device, dtype=dtype)
    return (["fused"] if fused_supports(probe, 1) else []) + ["sdpa", "reference"]


def run(backend: str, fn, *args, **kwargs):
    if backend == "reference":
        with reference_only():
            return fn(*args, **kwargs)
    return fn(*args, backend=backend, **kwargs)


def features(n: int, c: int, device, dtype=torch.float32, seed: int = 0, grad: bool = False):
    gen = torch.Generator().manual_seed(seed)
    out = [(torch.randn(n, c, generator=gen, dtype=torch.float64) * 1.5).to(device, dtype) for _ in range(3)]
    return [t.requires_grad_() for t in out] if grad else out


def expected_partition(q, k, v, partition, num_heads: int, key_mask: bool) -> torch.Tensor:
    """Float64 attention straight from the padded view: every slot of group g attends to the
    group's slots (masked ones dropped), and each voxel takes its ``slot_of_voxel`` output."""
    q, k, v = (t.double() for t in (q, k, v))
    n, c = q.shape
    if partition.group_index is None:  # variable-length only: one dense block per group
        out = torch.zeros(n, c, dtype=torch.float64, device=q.device)
        for g in range(partition.num_groups):
            rows = partition.permutation[partition.offsets[g] : partition.offsets[g + 1]]
            out[rows] = dense_attention(q[rows], k[rows], v[rows], num_heads)
        return out
    g, s = partition.group_index.shape
    d = c // num_heads
    qg, kg, vg = (t[partition.group_index].reshape(g, s, num_heads, d).transpose(1, 2) for t in (q, k, v))
    scores = qg @ kg.transpose(-1, -2) / math.sqrt(d)
    if key_mask:
        scores = scores.masked_fill(partition.key_mask[:, None, None, :], -math.inf)
    o = (scores.softmax(-1) @ vg).transpose(1, 2).reshape(g * s, c)
    return o[partition.slot_of_voxel]


def dense_attention(q, k, v, num_heads: int, scale: float | None = None) -> torch.Tensor:
    d = q.shape[1] // num_heads
    scale = 1 / math.sqrt(d) if scale is None else scale
    qh, kh, vh = (t.reshape(t.shape[0], num_heads, d).transpose(0, 1) for t in (q, k, v))
    return ((qh @ kh.transpose(-1, -2) * scale).softmax(-1) @ vh).transpose(0, 1).reshape(q.shape[0], -1)


def brute_force(q, k, v, qi, qo, ki, ko, num_heads: int, scale: float | None = None):
    """Float64 loop over groups: (out, lse)."""
    q, k, v = (t.double() for t in (q, k, v))
    d = q.shape[1] // num_heads
    scale = 1 / math.sqrt(d) if scale is None else scale
    out = torch.zeros_like(q)
    lse = torch.full((q.shape[0], num_heads), -math.inf, dtype=torch.float64, device=q.device)
    for g in range(qo.shape[0] - 1):
        rows, keys = qi[qo[g] : qo[g + 1]], ki[ko[g] : ko[g + 1]]
        if rows.numel() == 0 or keys.numel() == 0:
            continue
        out[rows] = dense_attention(q[rows], k[keys], v[keys], num_heads, scale)
        qh = q[rows].reshape(-1, num_heads, d).transpose(0, 1)
        kh = k[keys].reshape(-1, num_heads, d).transpose(0, 1)
        lse[rows] = torch.logsumexp(qh @ kh.transpose(-1, -2) * scale, -1).transpose(0, 1)
    return out, lse


def hand_lists(device, nq=70, nk=50, seed=0):
    """Cross attention with a query-free group, a key-free group, repeated keys, rows of q in no group."""
    gen = torch.Generator().manual_seed(seed)
    qi = torch.randperm(nq, generator=gen)[:60]
    qo = torch.tensor([0, 12, 12, 30, 40, 60])  # group 1 has no queries
    ki = torch.randint(0, nk, (90,), generator=gen)
    ko = torch.tensor([0, 20, 30, 30, 70, 90])  # group 2 has no keys (its queries get 0)
    return [t.to(device) for t in (qi, qo, ki, ko)]


@pytest.fixture(scope="module")
def partitions():
    coords = random_coords(COUNTS, torch.Generator().manual_seed(1))
    return coords, {name: build(coords, len(COUNTS)) for name, build in LAYOUTS.items()}


# --- index lists ---------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["flattened", "rotated_sets", "serialized", "from_padded"])
def test_queries_of_a_group_are_the_voxels_whose_output_slot_it_holds(partitions, layout):
    coords, built = partitions
    if layout == "from_padded":  # Partition.from_padded itself, on the sets' padded view
        sets = built["rotated_sets"]
        partition = Partition.from_padded(sets.group_index, sets.key_mask, sets.group_sample, coords.shape[0])
    else:
        partition = built[layout]
    s = partition.group_size
    for g in range(partition.num_groups):
        voxels = partition.permutation[partition.offsets[g] : partition.offsets[g + 1]]
        assert voxels.numel() > 0
        assert torch.equal(partition.slot_of_voxel[voxels] // s, torch.full_like(voxels, g))


def test_attention_index_drops_masked_keys_and_is_cached(partitions):
    partition = partitions[1]["rotated_sets"]
    masked, full = attention_index(partition, True), attention_index(partition, False)
    assert attention_index(partition, True) is masked
    assert torch.equal(masked.key_index, partition.group_index[~partition.key_mask])
    assert torch.equal(full.key_index, partition.group_index.reshape(-1))
    assert torch.equal(masked.key_offsets.diff(), (~partition.key_mask).sum(1))
    assert torch.equal(full.query_index, partition.permutation) and full.num_groups == partition.num_groups


# --- forward and backward against float64 ---------------------------------------------------------


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("key_mask", [True, False])
def test_partition_backends_match_float64(partitions, device, layout, key_mask):
    coords, built = partitions
    partition = built[layout]
    partition = type(partition)(**{f: (getattr(partition, f).to(device) if getattr(partition, f) is not None
                                       else None) for f in partition.__dataclass_fields__})  # fmt: skip
    num_heads, c = 2, 32
    q, k, v = features(coords.shape[0], c, device, grad=True)
    grad = features(coords.shape[0], c, device, seed=1)[0]
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    expected = expected_partition(q64, k64, v64, partition, num_heads, key_mask)
    expected_grads = torch.autograd.grad(expected, (q64, k64, v64), grad.double())
    for backend in backends_for(device):
        out = run(backend, grouped_attention, q, k, v, partition, num_heads, key_mask=key_mask)
        assert out.dtype == torch.float32 and out.shape == q.shape
        torch.testing.assert_close(out.double(), expected, atol=2e-5, rtol=1e-5, msg=backend)
        grads = torch.autograd.grad(out, (q, k, v), grad)
        for name, got, want in zip("qkv", grads, expected_grads, strict=True):
            torch.testing.assert_close(got.double(), want, atol=1e-4, rtol=1e-4, msg=f"{backend} d{name}")


@pytest.mark.parametrize("head_dim", [16, 24, 32, 64])
def test_indexed_cross_attention_matches_brute_force(device, head_dim):
    qi, qo, ki, ko = hand_lists(device)
    num_heads = 2
    q = features(70, num_heads * head_dim, device, seed=2)[0].requires_grad_()
    k, v = (t.requires_grad_() for t in features(50, num_heads * head_dim, device, seed=3)[:2])
    want, want_lse = brute_force(q.detach(), k.detach(), v.detach(), qi, qo, ki, ko, num_heads, 0.3)
    for backend in backends_for(device):
        out = run(backend, indexed_attention, q, k, v, qi, qo, ki, ko, num_heads, scale=0.3)
        torch.testing.assert_close(out.double(), want, atol=2e-5, rtol=1e-5, msg=backend)
        assert out[qi[12:30]].abs().max() == 0  # the group without keys
        out.sum().backward()  # gradients exist and are finite (empty groups make no NaN)
        assert all(torch.isfinite(t.grad).all() for t in (q, k, v))
        for t in (q, k, v):
            t.grad = None
    if "fused" in backends_for(device):
        _, lse = torch.ops.pointformer.grouped_attention(q, k, v, qi, qo, ki, ko, num_heads, 0.3)
        torch.testing.assert_close(lse.double(), want_lse, atol=1e-5, rtol=1e-5)
    _, ref_lse = grouped_attention_reference(q.double(), k.double(), v.double(), qi, qo, ki, ko, num_heads, 0.3)
    torch.testing.assert_close(ref_lse, want_lse)


def test_varlen_form(device):
    offsets = torch.tensor([0, 36, 36, 100, 101, 180], device=device)
    q, k, v = features(190, 48, device, seed=4)  # rows 180.. are in no group
    want = torch.zeros(190, 48, dtype=torch.float64, device=device)
    for g in range(5):
        a, b = offsets[g], offsets[g + 1]
        if b > a:
            want[a:b] = dense_attention(q[a:b].double(), k[a:b].double(), v[a:b].double(), 3)
    for backend in backends_for(device):
        out = run(backend, varlen_attention, q, k, v, offsets, 3)
        torch.testing.assert_close(out.double(), want, atol=2e-5, rtol=1e-5, msg=backend)


def test_big_group_of_1024(device):
    num_heads, c = 2, 64
    q, k, v = features(1100, c, device, seed=5, grad=True)
    qo = ko = torch.tensor([0, 1024], device=device)
    qi = torch.arange(1024, device=device) + 50
    ki = torch.randperm(1100, generator=torch.Generator().manual_seed(0))[:1024].to(device)
    grad = features(1100, c, device, seed=6)[0]
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    want = torch.zeros(1100, c, dtype=torch.float64, device=device)
    want = want.index_put((qi,), dense_attention(q64[qi], k64[ki], v64[ki], num_heads))
    want_grads = torch.autograd.grad(want, (q64, k64, v64), grad.double())
    for backend in backends_for(device):
        out = run(backend, indexed_attention, q, k, v, qi, qo, ki, ko, num_heads)
        torch.testing.assert_close(out.double(), want, atol=2e-5, rtol=1e-5, msg=backend)
        for got, w in zip(torch.autograd.grad(out, (q, k, v), grad), want_grads, strict=True):
            torch.testing.assert_close(got.double(), w, atol=1e-4, rtol=1e-4, msg=backend)


def test_empty_inputs(device):
    empty = torch.zeros(0, dtype=torch.int64, device=device)
    for backend in backends_for(device):
        q, k, v = features(0, 16, device)
        out = run(backend, varlen_attention, q, k, v, torch.zeros(1, dtype=torch.int64, device=device), 2)
        assert out.shape == (0, 16)
        q = features(5, 16, device)[0]
        k, v = features(0, 16, device)[:2]
        zero_groups = torch.zeros(1, dtype=torch.int64, device=device)
        assert run(backend, indexed_attention, q, k, v, empty, zero_groups, empty, zero_groups, 2).abs().max() == 0
        offsets = torch.zeros(3, dtype=torch.int64, device=device)
        qi = torch.zeros(0, dtype=torch.int64, device=device)
        assert run(backend, indexed_attention, q, k, v, qi, offsets, qi, offsets, 2).abs().max() == 0
    coords = torch.zeros(0, 4, dtype=torch.int32, device=device)
    partition = partition_flattened(coords, 1, SHAPE, (1, 13, 13), 36)
    for backend in backends_for(device):
        q, k, v = features(0, 16, device)
        assert run(backend, grouped_attention, q, k, v, partition, 2).shape == (0, 16)


# --- autograd machinery, determinism, dtypes ------------------------------------------------------


def small_double_case(device):
    qi, qo, ki, ko = (
        torch.tensor(x, device=device) for x in ([4, 0, 2, 5, 1], [0, 2, 2, 5], [1, 3, 3, 0, 2, 4], [0, 3, 3, 6])
    )
    q = features(7, 8, device, torch.float64, seed=7)[0]
    k, v = features(5, 8, device, torch.float64, seed=8)[:2]
    return q, k, v, qi, qo, ki, ko


@pytest.mark.slow
def test_gradcheck_fused_and_sdpa(device):
    q, k, v, qi, qo, ki, ko = small_double_case(device)
    inputs = tuple(t.clone().requires_grad_() for t in (q, k, v))
    for backend in [b for b in backends_for(device, torch.float64) if b != "reference"]:
        assert torch.autograd.gradcheck(
            lambda a, b, c, backend=backend: indexed_attention(a, b, c, qi, qo, ki, ko, 2, backend=backend), inputs
        ), backend


@pytest.mark.slow
@pytest.mark.skipif(not _library.NATIVE, reason="the native extension is not built")
def test_opcheck(device):
    q, k, v, qi, qo, ki, ko = small_double_case(device)
    dtype = torch.float64 if _library.kernel_kind(device) == "cpu" else torch.float32
    q, k, v = (t.to(dtype).requires_grad_() for t in (q, k, v))
    torch.library.opcheck(torch.ops.pointformer.grouped_attention.default, (q, k, v, qi, qo, ki, ko, 2, 0.5))


def test_fused_is_deterministic(partitions, device):
    if "fused" not in backends_for(device):
        pytest.skip(f"no fused kernel for {device.type}")
    coords, built = partitions
    partition = built["rotated_sets"]
    idx = attention_index(partition, False)  # keys repeat across slots: accumulation order matters
    idx = [t.to(device) for t in (idx.query_index, idx.query_offsets, idx.key_index, idx.key_offsets)]
    q, k, v = features(coords.shape[0], 32, device, seed=9)
    first = torch.ops.pointformer.grouped_attention(q, k, v, *idx, 4, 0.25)
    second = torch.ops.pointformer.grouped_attention(q, k, v, *idx, 4, 0.25)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    grad = features(coords.shape[0], 32, device, seed=10)[0]
    args = (grad, q, k, v, first[0], first[1], *idx, 4, 0.25)
    if _library.kernel_kind(device) == "cpu":  # CUDA's dK/dV use atomics: equal up to rounding only
        b1 = torch.ops.pointformer.grouped_attention_backward(*args)
        b2 = torch.ops.pointformer.grouped_attention_backward(*args)
        assert all(torch.equal(a, b) for a, b in zip(b1, b2, strict=True))


def test_default_backend_and_reference_only(device):
    q, k, v, qi, qo, ki, ko = small_double_case(device)
    with reference_only():
        forced = indexed_attention(q, k, v, qi, qo, ki, ko, 2, backend="fused")
    assert torch.equal(forced, grouped_attention_reference(q, k, v, qi, qo, ki, ko, 2)[0])
    torch.testing.assert_close(indexed_attention(q, k, v, qi, qo, ki, ko, 2), forced)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_on_cuda(device, dtype):
    if _library.kernel_kind(device) != "cuda":
        pytest.skip("float16/bfloat16 kernels are CUDA only (the cuda-emulated case runs them here)")
    qi, qo, ki, ko = hand_lists(device)
    q = features(70, 64, device, dtype, seed=11)[0].requires_grad_()
    k, v = (t.requires_grad_() for t in features(50, 64, device, dtype, seed=12)[:2])
    want, _ = brute_force(q.detach(), k.detach(), v.detach(), qi, qo, ki, ko, 4)
    tol = 2e-2 if dtype == torch.float16 else 6e-2
    for backend in ("fused", "sdpa"):
        out = indexed_attention(q, k, v, qi, qo, ki, ko, 4, backend=backend)
        assert out.dtype == dtype
        torch.testing.assert_close(out.double(), want, atol=tol, rtol=tol, msg=backend)
        out.float().square().sum().backward()
        assert all(t.grad.dtype == dtype and torch.isfinite(t.grad).all() for t in (q, k, v))


def test_errors(partitions):
    coords, built = partitions
    partition = built["flattened"]
    n = coords.shape[0]
    q, k, v = features(n, 32, "cpu")
    with pytest.raises(ValueError, match="num_heads"):
        grouped_attention(q, k, v, partition, 3)
    with pytest.raises(ValueError, match="one row per voxel"):
        grouped_attention(q[:-1], k[:-1], v[:-1], partition, 2)
    with pytest.raises(ValueError, match="dtype"):
        grouped_attention(q, k.double(), v, partition, 2)
    with pytest.raises(ValueError, match="k and v"):
        grouped_attention(q, k[:, :16], v, partition, 2)
    with pytest.raises(ValueError, match="backend"):
        grouped_attention(q, k, v, partition, 2, backend="flash")
    with pytest.raises(ValueError, match="fused"):
        grouped_attention(q.half(), k.half(), v.half(), partition, 2, backend="fused")
    with pytest.raises(ValueError, match="offsets"):
        varlen_attention(q, k, v, torch.tensor([0.0, 3.0]), 2)
    with pytest.raises(ValueError, match="G \\+ 1"):
        indexed_attention(q, k, v, torch.arange(3), torch.tensor([0, 3]), torch.arange(3), torch.tensor([0, 1, 3]), 2)
    if _library.NATIVE:
        with pytest.raises(RuntimeError, match="key_index"):
            torch.ops.pointformer.grouped_attention(
                q, k, v, torch.arange(3), torch.tensor([0, 3]), torch.tensor([0, n]), torch.tensor([0, 2]), 2, 1.0
            )
        with pytest.raises(RuntimeError, match="non-decreasing"):
            torch.ops.pointformer.grouped_attention(
                q, k, v, torch.arange(3), torch.tensor([0, 3, 2]), torch.arange(3), torch.tensor([0, 1, 3]), 2, 1.0
            )


@pytest.mark.slow
@pytest.mark.skipif(not _library.NATIVE, reason="the native extension is not built")
def test_torch_compile_fused():
    q, k, v, qi, qo, ki, ko = (t.float() if t.is_floating_point() else t for t in small_double_case("cpu"))

    def block(a, b, c):
        return indexed_attention(a * 2, b, c, qi, qo, ki, ko, 2, backend="fused").relu()

    compiled = torch.compile(block, fullgraph=True)
    x = q.clone().requires_grad_(True)
    # A cached graph from an earlier build of the op would hide a change of its fake kernel.
    with torch._inductor.config.patch(fx_graph_cache=False):
        out = compiled(x, k, v)
    torch.testing.assert_close(out, block(q, k, v))
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
