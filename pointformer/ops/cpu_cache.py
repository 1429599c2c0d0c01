"""A caching allocator for large CPU tensors (``csrc/memory/cpu_cache.cpp``), what CUDA's caching
allocator is to GPU memory.

Why: glibc serves every block over its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and
unmaps it on free, so each forward of a detector maps its dense BEV maps anew (a 64-channel map of
the 468 x 468 Waymo canvas is 56 MB, CenterHead's stacked branches 392 MB) and the kernel faults in
and zeroes every 4 KiB page on first touch: about 2-3 GB/s on this project's 2-core VM, against
about 10 GB/s for memory already mapped. Measured on waymo_flatformer (one ray-cast frame, eval,
2 threads, 2026-12-07): the eager forward took 1.26 million page faults (5 GB) a call
(docs/benchmarks.md, "detector ... page faults"). glibc's own knob (``M_MMAP_MAX = 0``) was tried
and rejected: alternating a large block with small ones then grows the heap by the large block on
every round (13 GB after 200 rounds of 64 MB).

What: blocks of at least ``min_block_bytes`` (default 1 MiB) are kept when freed and handed out
again for a request at most 1/8 smaller (best fit), up to ``max_cached_bytes`` of idle blocks
(default a quarter of the machine's memory, at most 8 GiB); smaller requests go to PyTorch's own
allocator. The price is a caching allocator's: the process keeps up to that much idle memory.

Who: the tools (``tools/test.py``, ``train.py``, ``demo.py``, ``export.py``, ``benchmark.py``) switch it
on at start (``enable_from_env``) unless ``POINTFORMER_CPU_CACHE=off``; ``POINTFORMER_CPU_CACHE=<MiB>``
sets the idle limit. Library users call ``configure_cpu_cache`` or use ``cpu_cache(...)``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from pointformer.ops._library import NATIVE
from pointformer.utils.errors import InputError

CACHE_ENV = "POINTFORMER_CPU_CACHE"
MIN_BLOCK_BYTES = 2**20
_MAX_DEFAULT = 8 * 2**30


@dataclass(frozen=True)
class CpuCacheStats:
    """Counters of the caching allocator. ``hits``/``misses``: large requests served from an idle
    block / by a new allocation; ``idle_bytes``: bytes of the idle blocks kept; ``live_bytes``: bytes
    of the blocks it handed out that are still in use; ``enabled``: installed as the CPU allocator."""

    hits: int
    misses: int
    idle_bytes: int
    live_bytes: int
    enabled: bool


def default_max_cached_bytes() -> int:
    """A quarter of the physical memory, at most 8 GiB (8 GiB where it is unknown)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return _MAX_DEFAULT
    return int(min(_MAX_DEFAULT, total // 4))


def available() -> bool:
    """Whether the native extension (which holds the allocator) is loaded."""
    return NATIVE


def configure_cpu_cache(
    enabled: bool, max_cached_bytes: int | None = None, min_block_bytes: int = MIN_BLOCK_BYTES
) -> bool:
    """Installs (``enabled``) or removes the caching allocator. Its idle blocks stay for the next
    enabling until ``empty_cpu_cache()`` (blocks freed while it is off are freed at once), so it can be
    switched per call. Returns whether it was enabled before. Without the native extension: nothing to install, and
    enabling raises RuntimeError."""
    if not NATIVE:
        if enabled:
            raise RuntimeError("the CPU cache lives in pointformer._C, which is not built (make build)")
        return False
    limit = default_max_cached_bytes() if max_cached_bytes is None else int(max_cached_bytes)
    before = torch.ops.pointformer.cpu_cache_configure(bool(enabled), limit, int(min_block_bytes))
    return bool(before[0])


def cpu_cache_stats() -> CpuCacheStats:
    """The allocator's counters (all zero and disabled without the native extension)."""
    if not NATIVE:
        return CpuCacheStats(0, 0, 0, 0, False)
    hits, misses, idle, live, enabled = torch.ops.pointformer.cpu_cache_stats()
    return CpuCacheStats(int(hits), int(misses), int(idle), int(live), bool(enabled))


def empty_cpu_cache() -> None:
    """Frees the idle blocks (the allocator stays installed)."""
    if NATIVE:
        torch.ops.pointformer.cpu_cache_empty()


@contextlib.contextmanager
def cpu_cache(enabled: bool = True, max_cached_bytes: int | None = None) -> Iterator[None]:
    """The caching allocator on (or off) inside the block, as it was after it."""
    before = configure_cpu_cache(enabled, max_cached_bytes)
    try:
        yield
    finally:
        configure_cpu_cache(before, max_cached_bytes)


def cache_setting(env: dict[str, str] | None = None) -> int | None:
    """``POINTFORMER_CPU_CACHE``: None for off (``off``/``0``/``false``/``no``), else the idle limit in
    bytes (``on``/unset: ``default_max_cached_bytes()``; a number: MiB). Raises ValueError naming the
    variable for anything else."""
    value = (os.environ if env is None else env).get(CACHE_ENV, "on").strip().lower()
    if value in ("off", "0", "false", "no"):
        return None
    if value in ("on", "", "true", "yes", "1"):
        return default_max_cached_bytes()
    try:
        mib = int(value)
    except ValueError:
        mib = -1
    if mib < 1:
        raise ValueError(f"{CACHE_ENV} must be 'on', 'off' or a size in MiB, got {value!r}")
    return mib * 2**20


def enable_from_env(env: dict[str, str] | None = None) -> bool:
    """The tools' start-up switch (module docstring): on unless ``POINTFORMER_CPU_CACHE=off`` and
    where the extension is built. Returns whether the cache is now enabled. An invalid setting is an
    ``InputError`` (the tools' one-line message)."""
    try:
        limit = cache_setting(env)
    except ValueError as e:
        raise InputError(str(e)) from None
    if limit is None or not NATIVE:
        return False
    configure_cpu_cache(True, limit)
    return True
