"""Shared fixtures: the devices to test on, and deterministic comparisons."""

from __future__ import annotations

import contextlib
import io
import os

import pytest
import torch

from pointformer.engine.log import close_logging

# Comparisons against references must not use reduced-precision matmuls.
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

# The tools' caching CPU allocator (pointformer.ops.cpu_cache) would stay installed in this process once
# a test runs a tool's main() in-process, keeping up to a quarter of the memory idle for the rest of the
# suite; tests/ops/test_cpu_cache.py tests it directly, with its own settings.
os.environ.setdefault("POINTFORMER_CPU_CACHE", "off")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Every device with native kernels here: CPU always, CUDA where a GPU is present."""
    return torch.device(request.param)


def pytest_collection_modifyitems(items):
    """Marks the tests that run the CUDA code under emulation (the "cuda-emulated" device of
    tests/ops/conftest.py), so that ``pytest -m cuda_emulated`` selects exactly them."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("device") == "cuda-emulated":
            item.add_marker(pytest.mark.cuda_emulated)


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@contextlib.contextmanager
def _captured():
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            yield buffer
    finally:
        close_logging()


@pytest.fixture(scope="session")
def captured():
    """A context manager: stdout and stderr into one ``io.StringIO`` (the training log's console
    handler binds the stream it finds), the engine's log handlers closed afterwards so that no later
    test writes into this buffer or a finished work dir's log."""
    return _captured


@pytest.fixture
def one_thread():
    """Runs the test on one intra-op thread: the detector tests' tensors are small, and on a shared
    2-core machine more threads only add synchronisation overhead. Restores the count afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
