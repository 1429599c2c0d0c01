"""The "cuda-emulated" test backend: inside ``cuda_kernels_on_cpu()`` every ``pointformer::`` op
called with CPU tensors runs the project's CUDA code (its ``*_cuda.cpp`` wrapper and ``.cu``
kernels, built by ``build.py`` against the emulation) instead of the CPU kernel.

The public ops, their fake kernels and autograd formulas stay the package's own: only the CPU
kernel of each op is overridden (``torch.library`` keeps the previous registration and restores it
when the override is removed), so a test written for ``device="cpu"`` exercises the CUDA wrapper
and kernels with the same inputs and expectations.

``PF_CUDA_EMULATION`` picks the build: ``plain`` (default), ``asan`` (AddressSanitizer and
UndefinedBehaviorSanitizer) or ``tsan`` (ThreadSanitizer); a sanitized build loads only into a
process started with the sanitizer's runtime preloaded (``sanitizers.py`` does that).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from cuda_emulation import build

from pointformer.ops import _library

_loaded: Path | None = None


def variant() -> str:
    """The emulation build this process uses (``PF_CUDA_EMULATION``, default ``plain``)."""
    return os.environ.get("PF_CUDA_EMULATION", "plain")


def load() -> Path:
    """Builds (first call only, ninja reuses unchanged objects) and loads the emulated extension,
    which registers ``torch.ops.pointformer_emu.*``."""
    global _loaded
    if _loaded is None:
        if not _library.NATIVE:
            raise RuntimeError("the CUDA emulation needs pointformer._C (the schemas' fake kernels): run `make build`")
        library = build.build(variant())
        torch.ops.load_library(str(library))
        _loaded = library
    return _loaded


def _kernel(op: str):
    emulated = getattr(torch.ops.pointformer_emu, op).default

    def kernel(*args):
        return emulated(*args)

    kernel.__name__ = f"{op}_cuda_emulated"
    return kernel


@contextlib.contextmanager
def cuda_kernels_on_cpu() -> Iterator[None]:
    """Within the block, ``torch.ops.pointformer.<op>`` on CPU tensors runs the emulated CUDA
    wrapper and kernels, and ``pointformer.ops._library.kernel_kind(cpu)`` is ``"cuda"``."""
    load()
    library = torch.library.Library("pointformer", "IMPL")
    previous = _library.KERNEL_KIND["cpu"]
    try:
        with warnings.catch_warnings():  # torch warns (once) that the CPU kernels are overridden: the point
            warnings.filterwarnings("ignore", message="(?s).*Overriding a previously registered kernel")
            for op in _library.OPS:
                library.impl(op, _kernel(op), "CPU", allow_override=True)
        _library.KERNEL_KIND["cpu"] = "cuda"
        yield
    finally:
        _library.KERNEL_KIND["cpu"] = previous
        library._destroy()
