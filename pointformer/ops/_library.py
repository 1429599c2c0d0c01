"""Loads the native extension and records which devices have native kernels for each op.

Without ``pointformer._C`` every public op runs its pure-PyTorch reference and one warning says so.
Which kernels exist is fixed once the library is loaded, so the choice between native kernel and
reference is a lookup on import-time constants (cheap, and constant under torch.compile).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

try:
    from pointformer import _C  # noqa: F401  (loading it registers torch.ops.pointformer.*)

    LOAD_ERROR: Exception | None = None
except ImportError as exc:  # not built, or built against another torch
    LOAD_ERROR = exc
    warnings.warn(
        f"pointformer._C is not available ({exc}); pointformer.ops falls back to the pure-PyTorch "
        "reference implementations. Build the extension with `make build`.",
        RuntimeWarning,
        stacklevel=2,
    )

NATIVE = LOAD_ERROR is None
_DEVICES = {"cpu": "CPU", "cuda": "CUDA"}


def _kernel_devices(op: str) -> frozenset[str]:
    if not NATIVE:
        return frozenset()
    name = f"pointformer::{op}"
    return frozenset(
        device for device, key in _DEVICES.items() if torch._C._dispatch_has_kernel_for_dispatch_key(name, key)
    )


OPS = ("voxelize", "segment_reduce", "segment_reduce_backward", "boxes_iou", "nms_bev_sorted",
       "circle_nms_sorted", "points_in_boxes", "flattened_window_keys")  # fmt: skip
KERNELS: dict[str, frozenset[str]] = {op: _kernel_devices(op) for op in OPS}


def has_kernel(op: str, device: torch.device) -> bool:
    """Whether ``torch.ops.pointformer.<op>`` has a native kernel for ``device``'s type."""
    return device.type in KERNELS[op]


def register_fake(op: str) -> Callable[[Callable], Callable]:
    """``torch.library.register_fake`` for a native op, a no-op when the library is absent."""

    def decorator(fn: Callable) -> Callable:
        if NATIVE:
            torch.library.register_fake(f"pointformer::{op}")(fn)
        return fn

    return decorator


def backends() -> dict[str, bool]:
    """Which implementations are available: the reference always, native CPU and CUDA kernels
    when the extension was built with them."""
    return {
        "reference": True,
        "cpu": all("cpu" in KERNELS[op] for op in OPS),
        "cuda": all("cuda" in KERNELS[op] for op in OPS),
    }
