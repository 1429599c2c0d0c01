"""The op tests' devices: the CPU kernels, the CUDA code run on CPU tensors under the emulation of
tests/cuda_emulation ("cuda-emulated": every op's real *_cuda.cpp wrapper and .cu kernels), and
CUDA where a GPU is present."""

from __future__ import annotations

import pytest
import torch
from cuda_emulation import backend

OP_DEVICES = ["cpu", "cuda-emulated"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=OP_DEVICES)
def device(request):
    """The device the op tests run on; "cuda-emulated" is the CPU device with the CUDA kernels
    behind it (such tests carry the ``cuda_emulated`` marker)."""
    if request.param == "cuda-emulated":
        with backend.cuda_kernels_on_cpu():
            yield torch.device("cpu")
    else:
        yield torch.device(request.param)


def pytest_report_header() -> str:
    return f"cuda emulation: {backend.variant()} build (PF_CUDA_EMULATION)"
