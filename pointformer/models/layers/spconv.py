"""The one place pointformer imports spconv through: ``spconv = import_spconv()``.

On first use this applies two fixes to spconv 2.3.x, measured against dense ``F.conv3d`` here:

* Its CPU build asks for the current CUDA stream in backward (and elsewhere), which asserts
  "Torch not compiled with CUDA enabled"; without CUDA the stream is now 0.
* Its CPU kernels return wrong values, differing from run to run, in forward and backward when
  torch runs more than one thread; with one thread they are exact. Every spconv autograd
  function and every module that builds index pairs therefore runs single-threaded on CPU tensors.
"""

from __future__ import annotations

import functools
import inspect
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import torch

from pointformer.structures.sparse_voxels import SparseVoxels

_INSTALL_HINT = (
    "pip install spconv==2.3.8 (CPU), or the spconv-cuXXX flavour matching your CUDA (e.g. spconv-cu120) for GPUs"
)
_MARK = "_pointformer_patched"  # set on our wrappers, so patching twice is a no-op
_lock = threading.Lock()
_patched = False


def import_spconv() -> ModuleType:
    """Returns ``spconv.pytorch`` with the fixes above applied; ImportError says how to install it."""
    global _patched
    try:
        import spconv.pytorch as spconv
    except ImportError as exc:
        message = f"pointformer needs the `spconv` package for sparse convolutions ({exc}): {_INSTALL_HINT}"
        raise ImportError(message) from exc
    with _lock:
        if not _patched:
            _patch_current_stream()
            _guard_threads()
            _patched = True
    return spconv


@contextmanager
def single_thread_on_cpu(active: bool) -> Iterator[None]:
    """Runs the block with ``torch.set_num_threads(1)`` if ``active``, restoring the count after.

    spconv's CPU kernels give wrong results with more than one torch thread (see the module docstring).
    """
    previous = torch.get_num_threads()
    if not active or previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def to_spconv(voxels: SparseVoxels) -> Any:
    """A ``spconv.SparseConvTensor`` over the same voxels (features and coords shared when possible).

    spconv reads indices through a raw pointer and ignores strides, so non-contiguous coords (the
    output of ``nonzero()``, for one) would silently give wrong neighbours: they are made contiguous.
    """
    spconv = import_spconv()
    return spconv.SparseConvTensor(
        voxels.features, voxels.coords.contiguous(), list(voxels.spatial_shape), voxels.batch_size
    )


def from_spconv(tensor: Any, stride: tuple[int, int, int] = (1, 1, 1)) -> SparseVoxels:
    """The ``SparseVoxels`` of a ``spconv.SparseConvTensor``; ``stride`` is relative to the input grid."""
    return SparseVoxels(
        tensor.features, tensor.indices.int(), tuple(tensor.spatial_shape), int(tensor.batch_size), stride
    )


def _patch_current_stream() -> None:
    from spconv.pytorch import cppcore

    original = cppcore.get_current_stream
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def get_current_stream() -> int:
        return original() if torch.cuda.is_available() else 0

    setattr(get_current_stream, _MARK, True)
    # Modules that did `from ... import get_current_stream` hold their own reference; ones imported
    # later pick the patched function up from cppcore.
    for name, module in list(sys.modules.items()):
        if name.startswith("spconv.") and getattr(module, "get_current_stream", None) is original:
            module.get_current_stream = get_current_stream


def _guard_threads() -> None:
    from spconv.pytorch import conv, functional, pool
    from spconv.pytorch.modules import SparseModule

    # Autograd looks cls.forward / cls.backward up at call time, so replacing them is enough.
    for cls in _classes_of(functional, torch.autograd.Function):
        for name in ("forward", "backward"):
            if name in vars(cls):
                setattr(cls, name, staticmethod(_guarded(getattr(cls, name))))
    # The modules build index pairs (also CPU kernels) before calling the functions above.
    for cls in _classes_of(conv, SparseModule) + _classes_of(pool, SparseModule):
        if "forward" in vars(cls):
            cls.forward = _guarded(vars(cls)["forward"])


def _classes_of(module: ModuleType, base: type) -> list[type]:
    return [
        cls
        for cls in vars(module).values()
        if inspect.isclass(cls) and issubclass(cls, base) and cls.__module__ == module.__name__
    ]


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    if getattr(fn, _MARK, False):
        return fn

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with single_thread_on_cpu(_first_tensor_is_on_cpu([*args, *kwargs.values()])):
            return fn(*args, **kwargs)

    setattr(wrapper, _MARK, True)
    return wrapper


def _first_tensor_is_on_cpu(values: Iterable[Any]) -> bool:
    for value in values:
        features = getattr(value, "features", None)  # a SparseConvTensor
        tensor = features if isinstance(features, torch.Tensor) else value
        if isinstance(tensor, torch.Tensor):
            return tensor.device.type == "cpu"
    return False
