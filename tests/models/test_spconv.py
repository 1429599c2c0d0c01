"""spconv through pointformer.models.layers.spconv: CPU forward and backward against dense F.conv3d.

Runs at torch's default thread count (at least 2): without the single-thread guard spconv's CPU
results are wrong there, intermittently, so every check runs on several random inputs.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import pointformer.models.layers.spconv as spconv_utils
from pointformer.models.layers.spconv import import_spconv, single_thread_on_cpu
from pointformer.structures import SparseVoxels

try:
    spconv = import_spconv()
except ImportError as exc:
    pytest.skip(f"the `spconv` package is not installed ({exc})", allow_module_level=True)

BATCH, SHAPE, CIN, COUT, ACTIVE = 2, (9, 10, 11), 4, 5, 150
SEEDS = range(8)
DTYPE = torch.float64  # spconv's CPU kernels support it, so comparisons can be tight
TOL = dict(rtol=1e-10, atol=1e-10)


@pytest.fixture(autouse=True)
def multiple_threads():
    """The bug being guarded against needs more than one thread; restores the count afterwards."""
    previous = torch.get_num_threads()
    if previous == 1:
        torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def random_input(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``ACTIVE`` distinct voxels as int32 (batch, z, y, x) and their ``(ACTIVE, CIN)`` features."""
    g = torch.Generator().manual_seed(seed)
    flat = torch.randperm(BATCH * SHAPE[0] * SHAPE[1] * SHAPE[2], generator=g)[:ACTIVE].sort().values
    coords = torch.stack(torch.unravel_index(flat, (BATCH, *SHAPE)), dim=1)
    # spconv reads indices by raw pointer: they must be contiguous (nonzero() output, for one, is not).
    indices = coords.int().contiguous()
    return indices, torch.randn(ACTIVE, CIN, dtype=DTYPE, generator=g)


def make_conv(kind: str, seed: int):
    if kind == "subm":
        conv = spconv.SubMConv3d(CIN, COUT, 3, bias=True)
    else:
        conv = spconv.SparseConv3d(CIN, COUT, 3, stride=2, padding=1, bias=True)
    conv = conv.to(DTYPE)
    g = torch.Generator().manual_seed(seed + 2000)
    with torch.no_grad():  # seeded, and a bias large enough that a misplaced one shows
        for param in (conv.weight, conv.bias):
            param.copy_(torch.randn(param.shape, dtype=DTYPE, generator=g))
    return conv


def dense_weight(conv) -> torch.Tensor:
    """spconv 2.x keeps (out, kD, kH, kW, in); F.conv3d wants (out, in, kD, kH, kW)."""
    assert tuple(conv.weight.shape) == (COUT, 3, 3, 3, CIN)
    return conv.weight.detach().permute(0, 4, 1, 2, 3)


def scatter_dense(indices: torch.Tensor, features: torch.Tensor, spatial_shape) -> torch.Tensor:
    """(N, C) features at (batch, z, y, x) -> (B, C, Z, Y, X), zero elsewhere; differentiable."""
    dense = features.new_zeros(BATCH, *spatial_shape, features.shape[1])
    index = tuple(indices.long().unbind(1))
    return dense.index_put(index, features).permute(0, 4, 1, 2, 3)


def gather_dense(dense: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """(B, C, Z, Y, X) at (batch, z, y, x) -> (N, C)."""
    return dense.permute(0, 2, 3, 4, 1)[tuple(indices.long().unbind(1))]


def run_spconv(kind: str, seed: int):
    """spconv forward and backward from a random upstream gradient: (output, grad_out, grads)."""
    indices, features = random_input(seed)
    conv = make_conv(kind, seed)
    features = features.clone().requires_grad_()
    out = conv(spconv.SparseConvTensor(features, indices, list(SHAPE), BATCH))
    grad_out = torch.randn(out.features.shape, dtype=DTYPE, generator=torch.Generator().manual_seed(seed + 1000))
    out.features.backward(grad_out)
    grads = (features.grad, conv.weight.grad.permute(0, 4, 1, 2, 3), conv.bias.grad)
    return conv, out, grad_out, grads


def run_dense(conv, seed: int, out_indices: torch.Tensor, grad_out: torch.Tensor):
    """The same convolution densely: its output at ``out_indices``, full output, and grads."""
    indices, features = random_input(seed)
    features = features.clone().requires_grad_()
    weight = dense_weight(conv).clone().requires_grad_()
    bias = conv.bias.detach().clone().requires_grad_()
    dense_out = F.conv3d(scatter_dense(indices, features, SHAPE), weight, bias, stride=conv.stride, padding=1)
    out = gather_dense(dense_out, out_indices)
    out.backward(grad_out)
    return out.detach(), dense_out.detach(), (features.grad, weight.grad, bias.grad)


@pytest.mark.parametrize("seed", SEEDS)
def test_subm_forward_matches_dense(seed):
    conv, out, _, _ = run_spconv("subm", seed)
    indices, _ = random_input(seed)
    assert torch.equal(out.indices, indices)
    want, _, _ = run_dense(conv, seed, indices, torch.zeros_like(out.features))
    torch.testing.assert_close(out.features.detach(), want, **TOL)


# spconv's dense() indexes with a list, which torch deprecates; the result is still checked here.
@pytest.mark.filterwarnings("ignore:Using a non-tuple sequence for multidimensional indexing:UserWarning")
@pytest.mark.parametrize("seed", SEEDS)
def test_strided_forward_matches_dense(seed):
    conv, out, _, _ = run_spconv("conv", seed)
    out_shape = tuple((s + 2 - 3) // 2 + 1 for s in SHAPE)
    assert tuple(out.spatial_shape) == out_shape

    # spconv outputs exactly the sites whose receptive field holds an active input.
    indices, _ = random_input(seed)
    occupancy = F.conv3d(
        scatter_dense(indices, torch.ones(ACTIVE, 1, dtype=DTYPE), SHAPE),
        torch.ones(1, 1, 3, 3, 3, dtype=DTYPE),
        stride=2,
        padding=1,
    )
    want_sites = {tuple(site) for site in (occupancy[:, 0] > 0).nonzero().tolist()}
    got_sites = [tuple(site) for site in out.indices.tolist()]
    assert len(set(got_sites)) == len(got_sites)
    assert set(got_sites) == want_sites

    want, dense_out, _ = run_dense(conv, seed, out.indices, torch.zeros_like(out.features))
    torch.testing.assert_close(out.features.detach(), want, **TOL)
    # Elsewhere dense conv gives just the bias; spconv's dense() has zeros there.
    torch.testing.assert_close(out.dense().detach(), dense_out * (occupancy > 0), **TOL)


@pytest.mark.parametrize("kind", ["subm", "conv"])
@pytest.mark.parametrize("seed", SEEDS)
def test_backward_matches_dense(kind, seed):
    conv, out, grad_out, grads = run_spconv(kind, seed)
    _, _, want_grads = run_dense(conv, seed, out.indices, grad_out)
    for name, got, want in zip(("features", "weight", "bias"), grads, want_grads, strict=True):
        torch.testing.assert_close(got, want, **TOL, msg=lambda m, name=name: f"grad of {name}: {m}")


@pytest.mark.parametrize("kind", ["subm", "conv"])
def test_repeated_runs_are_identical_and_restore_threads(kind):
    threads = torch.get_num_threads()
    assert threads > 1
    _, first, _, first_grads = run_spconv(kind, seed=0)
    for _ in range(30):
        _, out, _, grads = run_spconv(kind, seed=0)
        assert torch.equal(out.indices, first.indices)
        assert torch.equal(out.features, first.features)
        for got, want in zip(grads, first_grads, strict=True):
            assert torch.equal(got, want)
        assert torch.get_num_threads() == threads


def test_single_thread_on_cpu_restores_count():
    threads = torch.get_num_threads()
    with single_thread_on_cpu(False):
        assert torch.get_num_threads() == threads
    with pytest.raises(RuntimeError), single_thread_on_cpu(True):
        assert torch.get_num_threads() == 1
        raise RuntimeError
    assert torch.get_num_threads() == threads


def test_import_is_idempotent(monkeypatch):
    functional = spconv.functional
    forward, backward = functional.SubMConvFunction.forward, functional.SubMConvFunction.backward
    conv_forward = spconv.conv.SparseConvolution.forward
    stream = spconv.ops.get_current_stream
    assert import_spconv() is spconv
    monkeypatch.setattr(spconv_utils, "_patched", False)  # patching again must not wrap twice
    assert import_spconv() is spconv
    assert functional.SubMConvFunction.forward is forward
    assert functional.SubMConvFunction.backward is backward
    assert spconv.conv.SparseConvolution.forward is conv_forward
    assert spconv.ops.get_current_stream is stream
    if not torch.cuda.is_available():
        assert stream() == 0


def test_sparse_voxels_round_trip_makes_indices_contiguous():
    indices, features = random_input(0)
    # Same coordinates laid out column-major, as nonzero() returns them.
    column_major = indices.T.contiguous().T
    assert not column_major.is_contiguous()
    voxels = SparseVoxels(features, column_major, SHAPE, BATCH)
    conv = make_conv("subm", 0)
    got = spconv_utils.from_spconv(conv(spconv_utils.to_spconv(voxels)))
    want = conv(spconv.SparseConvTensor(features, indices, list(SHAPE), BATCH)).features
    assert isinstance(got, SparseVoxels) and got.spatial_shape == SHAPE and got.batch_size == BATCH
    torch.testing.assert_close(got.features, want, **TOL)
    assert torch.equal(got.coords, indices)
