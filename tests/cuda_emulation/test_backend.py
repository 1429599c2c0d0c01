"""The cuda-emulated backend routes the public ops to the emulated CUDA wrappers, and only inside
its context."""

from __future__ import annotations

import pytest
import torch
from cuda_emulation import backend

from pointformer.ops import _library

pytestmark = pytest.mark.cuda_emulated


def test_ops_run_the_cuda_wrappers_inside_the_context_only():
    q = torch.zeros(4, 8, dtype=torch.float64)
    index = torch.arange(4)
    offsets = torch.tensor([0, 4])
    args = (q, q, q, index, offsets, index, offsets, 2, 1.0)
    with backend.cuda_kernels_on_cpu():
        assert _library.kernel_kind(torch.device("cpu")) == "cuda"
        # The CUDA wrapper's own dtype check: float64 has no CUDA grouped-attention kernel.
        with pytest.raises(RuntimeError, match="grouped_attention on CUDA takes float32, float16 or bfloat16"):
            torch.ops.pointformer.grouped_attention(*args)
        out, lse = torch.ops.pointformer.grouped_attention(
            *(t.float() if t.is_floating_point() else t for t in args[:3]), *args[3:]
        )
        assert out.shape == (4, 8) and lse.shape == (4, 2)
    assert _library.kernel_kind(torch.device("cpu")) == "cpu"
    out, _ = torch.ops.pointformer.grouped_attention(*args)  # the CPU kernel takes float64 again
    assert out.dtype == torch.float64


def test_the_cuda_wrappers_checks_run():
    """The CUDA wrapper's own limit (NMS keeps one bit per box in 48 KiB of shared memory), which the
    CPU kernel does not have."""
    boxes = torch.zeros(48 * 1024 * 8 + 1, 7)
    with backend.cuda_kernels_on_cpu(), pytest.raises(RuntimeError, match="NMS on CUDA supports at most"):
        torch.ops.pointformer.nms_bev_sorted(boxes, 0.5)
