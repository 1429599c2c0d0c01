"""Shared fixtures: the devices to test on, and deterministic comparisons."""

from __future__ import annotations

import pytest
import torch

# Comparisons against references must not use reduced-precision matmuls.
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Every device with native kernels here: CPU always, CUDA where a GPU is present."""
    return torch.device(request.param)


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)
