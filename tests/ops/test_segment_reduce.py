"""segment_reduce: native kernels against the reference, gradients, edge cases, opcheck, compile."""

from __future__ import annotations

import pytest
import torch

from pointformer.ops import segment_reduce
from pointformer.ops.segment_reduce import segment_reduce_reference

REDUCTIONS = ["sum", "mean", "max"]


def random_case(n: int, channels: int, num_segments: int, generator: torch.Generator, dtype=torch.float32):
    values = torch.randn(n, channels, generator=generator, dtype=torch.float64).to(dtype)
    # -1 (dropped points) and ids beyond num_segments are ignored; some segments stay empty.
    segment = torch.randint(-1, num_segments + 2, (n,), generator=generator)
    return values, segment


@pytest.mark.parametrize("reduce", REDUCTIONS)
@pytest.mark.parametrize("channels", [1, 16, 67, 128])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_reference(device, generator, reduce, channels, dtype):
    values, segment = random_case(3000, channels, 700, generator, dtype)
    got = segment_reduce(values.to(device), segment.to(device), 700, reduce)
    want = segment_reduce_reference(values, segment, 700, reduce)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got.cpu(), want, **tol)


@pytest.mark.parametrize("reduce", REDUCTIONS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_accumulates_in_float32(device, generator, reduce, dtype):
    values, segment = random_case(2000, 32, 100, generator)
    got = segment_reduce(values.to(dtype).to(device), segment.to(device), 100, reduce)
    want = segment_reduce_reference(values.to(dtype).float(), segment, 100, reduce)
    assert got.dtype == dtype
    tol = 1e-2 if dtype == torch.float16 else 4e-2
    torch.testing.assert_close(got.cpu().float(), want, rtol=tol, atol=tol)


def test_known_values_and_empty_segments(device):
    values = torch.tensor([[1.0, -2.0], [3.0, 5.0], [-4.0, 0.5], [7.0, 7.0]], device=device)
    segment = torch.tensor([0, 0, 2, -1], device=device)
    assert segment_reduce(values, segment, 3, "sum").cpu().tolist() == [[4.0, 3.0], [0.0, 0.0], [-4.0, 0.5]]
    assert segment_reduce(values, segment, 3, "mean").cpu().tolist() == [[2.0, 1.5], [0.0, 0.0], [-4.0, 0.5]]
    assert segment_reduce(values, segment, 3, "max").cpu().tolist() == [[3.0, 5.0], [0.0, 0.0], [-4.0, 0.5]]


def test_reference_max_without_gradient_equals_the_argmax_gather(generator):
    """The reference's max takes a shortcut when no gradient is needed (the form that exports); it
    gives the values of its arg-max gather, ties, empty segments and dropped rows included."""
    values, segment = random_case(500, 8, 120, generator)
    values = values.round()  # ties
    grad_path = segment_reduce_reference(values.requires_grad_(), segment, 120, "max")
    with torch.no_grad():
        shortcut = segment_reduce_reference(values, segment, 120, "max")
    assert grad_path.requires_grad and not shortcut.requires_grad
    assert torch.equal(shortcut, grad_path.detach())


def test_max_gradient_goes_to_first_argmax(device):
    values = torch.tensor([[2.0], [5.0], [5.0], [1.0]], device=device, requires_grad=True)
    segment = torch.tensor([0, 0, 0, 1], device=device)
    out = segment_reduce(values, segment, 2, "max")
    out.backward(torch.tensor([[10.0], [3.0]], device=device))
    assert values.grad.cpu().flatten().tolist() == [0.0, 10.0, 0.0, 3.0]


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_gradients_match_reference(device, generator, reduce):
    values, segment = random_case(800, 24, 150, generator)
    upstream = torch.randn(150, 24, generator=generator)
    grads = []
    for fn, dev in ((segment_reduce, device), (segment_reduce_reference, torch.device("cpu"))):
        x = values.clone().to(dev).requires_grad_(True)
        fn(x, segment.to(dev), 150, reduce).backward(upstream.to(dev))
        grads.append(x.grad.cpu())
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_gradcheck(device, generator, reduce):
    # Distinct values keep max differentiable around the test point.
    values = (torch.randperm(60, generator=generator).double() / 7).reshape(20, 3).to(device).requires_grad_(True)
    segment = torch.tensor([0, 1, 1, 3, 3, 3, -1, 0, 5, 1, 3, 0, 0, 6, 1, 1, 3, 0, 5, 5], device=device)
    assert torch.autograd.gradcheck(lambda x: segment_reduce(x, segment, 7, reduce), (values,))


def test_edge_cases(device):
    for reduce in REDUCTIONS:
        empty = segment_reduce(
            torch.zeros(0, 4, device=device), torch.zeros(0, dtype=torch.long, device=device), 3, reduce
        )
        assert empty.shape == (3, 4) and empty.abs().sum() == 0
        none = segment_reduce(
            torch.ones(5, 4, device=device), torch.zeros(5, dtype=torch.long, device=device), 0, reduce
        )
        assert none.shape == (0, 4)
        ignored = segment_reduce(torch.ones(5, 2, device=device), torch.full((5,), -1, device=device), 2, reduce)
        assert ignored.abs().sum() == 0
        one = segment_reduce(torch.tensor([[2.5]], device=device), torch.tensor([1], device=device), 2, reduce)
        assert one.cpu().tolist() == [[0.0], [2.5]]


def test_extra_dimensions_are_kept(device, generator):
    values = torch.randn(50, 2, 3, generator=generator).to(device)
    segment = torch.randint(0, 4, (50,), generator=generator).to(device)
    out = segment_reduce(values, segment, 4, "mean")
    assert out.shape == (4, 2, 3)
    torch.testing.assert_close(out.reshape(4, 6), segment_reduce(values.reshape(50, 6), segment, 4, "mean"))


def test_bad_arguments():
    with pytest.raises(ValueError, match="reduce must be one of"):
        segment_reduce(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), 1, "min")
    with pytest.raises(ValueError, match="segment must be an integer tensor of shape"):
        segment_reduce(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long), 1, "sum")
    with pytest.raises(ValueError, match="values must be a floating tensor"):
        segment_reduce(torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, dtype=torch.long), 1, "sum")


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_opcheck(device, generator, reduce):
    values, segment = random_case(300, 8, 40, generator)
    values = values.to(device).requires_grad_(True)
    torch.library.opcheck(torch.ops.pointformer.segment_reduce, (values, segment.to(device), 40, reduce))


def test_deterministic(device, generator):
    values, segment = random_case(20000, 64, 3000, generator)
    values, segment = values.to(device), segment.to(device)
    for reduce in REDUCTIONS:
        assert torch.equal(segment_reduce(values, segment, 3000, reduce), segment_reduce(values, segment, 3000, reduce))


@pytest.mark.slow
def test_torch_compile(generator):
    values, segment = random_case(500, 16, 64, generator)

    def encoder(x, seg):
        return segment_reduce(x * 2, seg, 64, "max").relu() + segment_reduce(x, seg, 64, "mean")

    compiled = torch.compile(encoder, fullgraph=True)
    x = values.clone().requires_grad_(True)
    # A cached graph from an earlier build of the op would hide a change of its fake kernel.
    with torch._inductor.config.patch(fx_graph_cache=False):
        out = compiled(x, segment)
    torch.testing.assert_close(out, encoder(values, segment))
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_backward_writes_every_gradient_entry(device, generator, reduce):
    """The backward's (N, C) gradient starts uninitialised: rows of dropped ids (-1, >= S), rows that
    are not a max's first arg-max (ties included) and rows of empty inputs must still come out as
    exact zeros, whatever memory the allocator hands back (made dirty with NaNs here)."""
    values, segment = random_case(4000, 64, 300, generator)
    values = values.mul(2).round()  # many ties: the gradient goes to the first arg-max only
    upstream = torch.randn(300, 64, generator=generator)
    want = values.clone().requires_grad_(True)
    segment_reduce_reference(want, segment, 300, reduce).backward(upstream)
    for _ in range(3):
        torch.full((4000, 64), float("nan"), device=device).sum()  # a freed block full of NaNs
        x = values.clone().to(device).requires_grad_(True)
        segment_reduce(x, segment.to(device), 300, reduce).backward(upstream.to(device))
        assert torch.isfinite(x.grad).all()
        dropped = (segment < 0) | (segment >= 300)
        assert dropped.any() and x.grad.cpu()[dropped].eq(0).all()
        if reduce == "max":
            assert torch.equal(x.grad.cpu(), want.grad)  # a copy of one upstream entry or exactly 0
        else:
            torch.testing.assert_close(x.grad.cpu(), want.grad, rtol=1e-6, atol=1e-7)
