"""CPU threading that holds up beside other work: OpenMP's wait policy and the intra-op thread count.

PyTorch's CPU kernels split each op over an OpenMP team of ``torch.get_num_threads()`` threads and
end it at a barrier. OpenMP's default is to spin at that barrier; when another process holds one of
the cores, the spinning thread burns the time slice its descheduled partner needs, and every op
waits for the slowest thread: beside two busy processes on two cores the demo trained 27x slower
than alone (docs/benchmarks.md, "training under load"). Two remedies, both here:

- ``prepare_environment()`` sets ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep at the barrier) when
  other work already runs on the CPUs at start, unless the user set it. On a quiet machine it keeps
  OpenMP's default (spinning): there PASSIVE cost the demo about 40 % of its training speed
  (1.2-1.6 against 2.3-2.4 frames/s, 2 threads, 2026-12-07), since every small op then wakes a
  sleeping thread. OpenMP reads it once, when torch first loads, so the tools call this before
  importing anything that imports torch.
- ``ThreadGovernor`` picks the intra-op thread count: a fixed ``--threads N`` /
  ``POINTFORMER_THREADS=N``, or (``auto``, the default on the CPU) the CPUs this process may use
  minus the other runnable tasks the kernel reports (``procs_running`` in ``/proc/stat``, sampled
  between steps, when this process's own workers are asleep), at least one, re-checked every few
  seconds. A team no larger than the free cores never waits on a descheduled member.

Environment knobs (README "CPU threads"): ``POINTFORMER_THREADS`` (``auto`` or a count),
``OMP_WAIT_POLICY`` (left alone when set), ``OMP_NUM_THREADS`` (a fixed count when
``POINTFORMER_THREADS`` is unset).

Only the standard library is imported at module level: ``prepare_environment`` must run before torch.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

THREADS_ENV = "POINTFORMER_THREADS"
AUTO = "auto"
PROC_STAT = Path("/proc/stat")


def prepare_environment(busy: bool | None = None) -> bool:
    """Sets ``OMP_WAIT_POLICY=PASSIVE`` unless set, when ``busy`` (default: other runnable tasks
    leave fewer free CPUs than this process may use). Returns False (and changes nothing) when
    torch is already loaded: OpenMP has read its environment by then."""
    if "torch" in sys.modules:
        return False
    if busy is None:
        busy = auto_threads() < available_cpus()
    if busy:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return True


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def runnable_tasks(samples: int = 5, interval_s: float = 0.002, path: Path = PROC_STAT) -> int | None:
    """Median over ``samples`` readings of the kernel's count of runnable tasks (``procs_running``,
    the sampling thread included); None where ``/proc/stat`` has none (not Linux)."""
    counts = []
    for i in range(samples):
        try:
            for line in path.read_text().splitlines():
                if line.startswith("procs_running "):
                    counts.append(int(line.split()[1]))
                    break
        except (OSError, ValueError):
            return None
        if i + 1 < samples:
            time.sleep(interval_s)
    return int(statistics.median(counts)) if counts else None


def auto_threads(cpus: int | None = None, runnable: int | None = None) -> int:
    """Threads for a team that fits the free CPUs: ``cpus - (runnable - 1)`` (the caller is one of
    the runnable tasks), clamped to ``[1, cpus]``; ``cpus`` where the count is unknown."""
    cpus = available_cpus() if cpus is None else cpus
    runnable = runnable_tasks() if runnable is None else runnable
    if runnable is None:
        return cpus
    return max(1, min(cpus, cpus - (runnable - 1)))


def parse_threads(value: str | int | None) -> int | None:
    """``auto`` / None / empty -> None (adaptive); a positive integer -> that count. ValueError
    naming the knob otherwise."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", AUTO)):
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise ValueError(f"threads must be 'auto' or a positive integer (--threads / {THREADS_ENV}), got {value!r}")
    return n


def requested_threads(cli: str | int | None = None) -> int | None:
    """The fixed count asked for: ``--threads`` first, then ``POINTFORMER_THREADS``, then
    ``OMP_NUM_THREADS``; None: adaptive (``auto``)."""
    if cli is not None:
        return parse_threads(cli)
    if THREADS_ENV in os.environ:
        return parse_threads(os.environ[THREADS_ENV])
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return parse_threads(os.environ["OMP_NUM_THREADS"])
    return None


class ThreadGovernor:
    """Keeps ``torch``'s intra-op thread count at ``fixed`` or, when None, at ``auto_threads()``
    re-checked at most every ``interval_s`` seconds by ``update()`` (call it between steps).

    ``counts``: the counts set so far, for logs and the benchmark."""

    def __init__(self, fixed: int | None = None, interval_s: float = 5.0) -> None:
        self.fixed = fixed
        self.interval_s = float(interval_s)
        self._last = -float("inf")
        self.counts: list[int] = []
        self.update(force=True)

    def update(self, force: bool = False) -> int:
        import torch

        now = time.monotonic()
        if self.fixed is None and (force or now - self._last >= self.interval_s):
            self._last = now
            self._set(auto_threads())
        elif self.fixed is not None and (force or torch.get_num_threads() != self.fixed):
            self._set(self.fixed)
        return torch.get_num_threads()

    def _set(self, n: int) -> None:
        import torch

        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
        if not self.counts or self.counts[-1] != n:
            self.counts.append(n)
