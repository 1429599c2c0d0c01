"""Loads the native extension and records which devices have native kernels for each op.

Without ``pointformer._C`` every public op runs its pure-PyTorch reference and one warning says so.
Which kernels exist is fixed once the library is loaded, so the choice between native kernel and
reference is a lookup on import-time constants (cheap, and constant under torch.compile).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator

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
       "circle_nms_sorted", "points_in_boxes", "dsvt_window_order", "dsvt_set_index",
       "serialization_codes", "flattened_window_keys", "partition_from_sorted", "scattered_window_keys",
       "sort_window_keys", "grouped_attention", "grouped_attention_backward", "scattered_linear_attention",
       "scattered_linear_attention_backward")  # fmt: skip
KERNELS: dict[str, frozenset[str]] = {op: _kernel_devices(op) for op in OPS}


# A plain module flag rather than a ContextVar: torch.compile traces (and guards on) a global,
# not ContextVar.get. Not thread-safe; it is a switch for tests and benchmarks.
_reference_only = False


@contextlib.contextmanager
def reference_only() -> Iterator[None]:
    """Runs the public ops on their pure-PyTorch references inside the block (for comparisons in
    tests and benchmarks; model code never needs it)."""
    global _reference_only
    previous, _reference_only = _reference_only, True
    try:
        yield
    finally:
        _reference_only = previous


# Export mode (``export_mode``): every op on its reference, attention on the padded-group path.
_exporting = False


@contextlib.contextmanager
def export_mode() -> Iterator[None]:
    """Runs the model in its exportable form inside the block (``pointformer.export``): every public
    op on its pure-PyTorch reference (no ``pointformer::`` op in a traced graph, so ONNX and
    TensorRT need no plugins), and grouped attention on the padded ``(G, S)`` groups through
    ``scaled_dot_product_attention`` (static-rank gathers, no data-dependent lengths; DSVT-V's
    pooling likewise)."""
    global _exporting
    previous = _exporting
    with reference_only():
        _exporting = True
        try:
            yield
        finally:
            _exporting = previous


def exporting() -> bool:
    """Whether ``export_mode`` is active."""
    return _exporting


# Which kernel family serves each device type's native ops. The test suite's CUDA emulation
# (tests/cuda_emulation) runs the CUDA kernels on CPU tensors and sets "cpu" to "cuda" while it
# does, so that choices made by kernel capability (dtypes, head dims) follow the kernel, not the
# tensor's device.
KERNEL_KIND: dict[str, str] = {"cpu": "cpu", "cuda": "cuda"}


def kernel_kind(device: torch.device) -> str:
    """The kernel family (``"cpu"`` or ``"cuda"``) behind the native ops on ``device``."""
    return KERNEL_KIND.get(device.type, device.type)


def has_kernel(op: str, device: torch.device) -> bool:
    """Whether the public op should call ``torch.ops.pointformer.<op>``: a native kernel exists for
    ``device``'s type and ``reference_only`` is not active."""
    return device.type in KERNELS[op] and not _reference_only


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
