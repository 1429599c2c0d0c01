"""The benchmark suite's core: timing (warm-up, synchronization, medians, interleaving round by
round), table rows and speedups, the run configuration, load notes, and the markdown report (a table
on stdout, optionally a section upserted into a markdown file such as docs/benchmarks.md).

The suites (``ops``, ``grouping``, ``attention``, ``data``, ``eval``, ``detector``, ``export``) are
the sibling modules; ``pointformer.benchmarks.cli`` is the command line behind ``tools/benchmark.py``.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from pointformer.utils.atomic import write_atomic

# --- timing -------------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    """Waits for the device's queued work (CUDA); a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mib(fn: Callable[[], Any], device: torch.device) -> float | None:
    """Peak CUDA memory allocated during one call of ``fn`` above what was allocated before (MiB);
    None on the CPU (not measured there)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


@dataclass(frozen=True)
class Timing:
    """Wall-clock times of one implementation, in milliseconds."""

    median_ms: float
    min_ms: float
    repeats: int
    reduced: bool = False  # warm-up skipped / repeats cut because the runs exceeded the time budget


def _timed_call(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """Seconds taken by one call of ``fn`` (synchronizing the device before and after), and its result."""
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return time.perf_counter() - start, result


def time_fn(
    fn: Callable[[], Any],
    device: torch.device,
    repeats: int,
    warmup: int,
    budget_s: float | None = None,
    reduced_repeats: int = 3,
) -> tuple[Timing, Any]:
    """Times ``fn``: ``warmup`` untimed runs, then ``repeats`` timed runs (median and min).

    When ``budget_s`` is given and the first run shows that warm-up plus repeats would take longer,
    the first run becomes the first sample, the warm-up is skipped and at most ``reduced_repeats``
    runs are timed. Returns the timing and the result of the last call.
    """
    first_s, result = _timed_call(fn, device)
    samples = [] if warmup > 0 else [first_s]
    warmup_left = max(warmup - 1, 0)
    reduced = budget_s is not None and first_s * (warmup + repeats) > budget_s
    reduced = reduced and (warmup > 0 or repeats > reduced_repeats)
    if reduced:
        samples, warmup_left, repeats = [first_s], 0, min(repeats, reduced_repeats)
    for _ in range(warmup_left):
        _timed_call(fn, device)
    while len(samples) < max(repeats, 1):
        seconds, result = _timed_call(fn, device)
        samples.append(seconds)
    ms = [s * 1e3 for s in samples]
    return Timing(statistics.median(ms), min(ms), len(ms), reduced), result


def time_interleaved(fns: Sequence[Callable[[], Any]], device: torch.device, repeats: int, warmup: int) -> list[Timing]:
    """Times several implementations of one case round by round (each round calls every ``fn``
    once, in turn), so that a noisy machine (a shared VM, say) slows all of them alike and their
    ratio stays meaningful. Median and min per implementation, in milliseconds."""
    for _ in range(warmup):
        for fn in fns:
            _timed_call(fn, device)
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(max(repeats, 1)):
        for i, fn in enumerate(fns):
            samples[i].append(_timed_call(fn, device)[0] * 1e3)
    return [Timing(statistics.median(ms), min(ms), len(ms)) for ms in samples]


@dataclass(frozen=True)
class Row:
    """One table row: an implementation of a case, its timing (None when it could not run)."""

    case: str
    implementation: str
    timing: Timing | None
    notes: str = ""
    speedup: str = ""


def with_speedups(rows: list[Row], baseline: int) -> list[Row]:
    """Fills ``speedup`` of every row as baseline median / row median; the baseline says so."""
    base = rows[baseline].timing
    out = []
    for i, row in enumerate(rows):
        if i == baseline:
            text = "baseline" if base is not None else ""
        elif base is None or row.timing is None:
            text = "n/a"
        else:
            text = f"{base.median_ms / row.timing.median_ms:.2f}x"
        out.append(replace(row, speedup=text))
    return out


def with_ratio(row: Row, other: Row, label: str) -> Row:
    """``row`` with ``"N.NNx vs <label>"`` (``other``'s median / ``row``'s median) added to its notes;
    unchanged when either could not run."""
    if row.timing is None or other.timing is None:
        return row
    ratio = other.timing.median_ms / row.timing.median_ms
    return replace(row, notes=join_notes(row.notes, f"{ratio:.2f}x vs {label}"))


def timing_note(timing: Timing) -> str:
    if not timing.reduced:
        return ""
    return f"only {timing.repeats} repeat{'s' if timing.repeats > 1 else ''}, no warm-up (runs exceed the time budget)"


def join_notes(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


@dataclass(frozen=True)
class VoxelSetup:
    """A voxelization configuration of the benchmark."""

    name: str
    voxel_size: tuple[float, float, float]
    point_cloud_range: tuple[float, float, float, float, float, float]
    max_points_per_voxel: int
    max_voxels: int = 150_000


# Shared by the ops and data benchmarks.
PILLARS = VoxelSetup("pillars 0.32 m", (0.32, 0.32, 6.0), (-74.88, -74.88, -2.0, 74.88, 74.88, 4.0), 32)
VOXELS = VoxelSetup("voxels 0.1 m", (0.1, 0.1, 0.15), (-75.2, -75.2, -2.0, 75.2, 75.2, 4.0), 5)


@dataclass(frozen=True)
class RunConfig:
    """What every case needs to run: device, repetition counts, and the time budget of a slow
    (reference) row: when its warm-up plus repeats would exceed ``budget_s`` it runs
    ``reduced_repeats`` times without warm-up."""

    device: torch.device
    repeats: int
    warmup: int
    budget_s: float = 60.0
    reduced_repeats: int = 3

    def time(self, fn: Callable[[], Any]) -> Timing:
        """Timing of ``fn`` with the configured warm-up and repeats."""
        return time_fn(fn, self.device, self.repeats, self.warmup)[0]

    def time_together(self, fns: Sequence[Callable[[], Any]]) -> list[Timing]:
        """Timings of implementations compared in one case, interleaved round by round."""
        return time_interleaved(fns, self.device, self.repeats, self.warmup)

    def time_slow(self, fn: Callable[[], Any]) -> tuple[Timing, Any]:
        """Timing of ``fn`` within the time budget, and ``fn``'s result."""
        return time_fn(fn, self.device, self.repeats, self.warmup, self.budget_s, self.reduced_repeats)


@dataclass
class Report:
    """Rows of a benchmark and the footnotes printed under its table."""

    rows: list[Row] = field(default_factory=list)
    footnotes: list[str] = field(default_factory=list)


# --- load notes ---------------------------------------------------------------------------------


def load_warning() -> str | None:
    """A warning when other work already keeps the CPUs busy (timings would be unreliable)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on this platform
        return None
    cores = os.cpu_count() or 1
    if load < 0.5 * cores:
        return None
    return f"warning: load average {load:.1f} on {cores} cores before the benchmark; timings will be noisy"


def load_average() -> float | None:
    """The 1-minute load average, None where the platform has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def cpu_jiffies(path: str = "/proc/stat") -> tuple[int, int] | None:
    """``(all, steal)`` CPU time of the machine since boot in clock ticks (the ``cpu`` line of
    ``/proc/stat``), None where there is none. Steal is time a virtual machine's CPUs were ready to
    run but the hypervisor ran another guest: it slows every figure, and multi-threaded PyTorch ops
    most (their threads wait at barriers for a stolen partner), without showing in the load average."""
    try:
        with open(path) as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 9:
        return None
    ticks = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return sum(ticks), ticks[7]


# The process's start: a suite's load note gives the steal since then (the whole run).
_JIFFIES_AT_START = cpu_jiffies()


def steal_share(start: tuple[int, int] | None, end: tuple[int, int] | None) -> float | None:
    """The fraction of CPU time stolen between two ``cpu_jiffies`` readings, None if unknown."""
    if start is None or end is None or end[0] <= start[0]:
        return None
    return (end[1] - start[1]) / (end[0] - start[0])


def load_note(before: float | None) -> str:
    """The 1-minute load average at the start and the end, the CPU time stolen by the hypervisor
    during the run, and what they mean for the figures."""
    after, cores = load_average(), os.cpu_count() or 1
    steal = steal_share(_JIFFIES_AT_START, cpu_jiffies())
    steal_text = "" if steal is None else f"; {100 * steal:.0f} % of the CPU time stolen by the hypervisor"
    if before is None or after is None:
        return f"Load average: not available on this platform{steal_text}."
    threads = torch.get_num_threads()
    note = (
        f"Load average (1 min) {before:.1f} at the start and {after:.1f} at the end (the end includes this "
        f"benchmark's own {threads} torch thread(s)), on {cores} cores{steal_text}"
    )
    # The start shows the minute before the run; the end, the run itself plus anything else.
    if before >= 0.5 * cores or after - threads >= 0.5 * cores:
        return note + ": other work shared the machine, so absolute times are noisy (the interleaved ratios less so)."
    if steal is not None and steal >= 0.05:
        return note + ": the VM's CPUs were shared with other guests, so absolute times are noisy (the interleaved "
        "ratios less so)."
    return note + ": the machine was otherwise quiet."


def high_load_flag(before: float | None, after: float | None, cores: int | None = None) -> str | None:
    """A flag line for a section measured while the machine was oversubscribed (a 1-minute load
    average at the start, or at the end less this benchmark's own threads, of at least the core
    count), None otherwise. Under such load PyTorch's multi-threaded ops lose far more than
    single-pass native kernels (their threads wait on descheduled partners), which inflates every
    native-vs-PyTorch ratio: such a section is not a quiet-machine figure."""
    cores = cores or os.cpu_count() or 1
    own = torch.get_num_threads()
    loads = [v for v in (before, None if after is None else after - own) if v is not None]
    if not loads or max(loads) < cores:
        return None
    shown = " and ".join(f"{v:.1f} at the {at}" for v, at in ((before, "start"), (after, "end")) if v is not None)
    return (
        f"**HIGH LOAD** (1-min load average {shown}, on {cores} cores): measured beside other work; "
        "absolute times are inflated and native-vs-PyTorch ratios overstated. Re-measure on a quiet machine before "
        "quoting these figures."
    )


# --- markdown output ----------------------------------------------------------------------------

COLUMNS = ("case", "implementation", "median ms", "min ms", "speedup vs reference/baseline", "notes")


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def format_table(rows: Sequence[Row]) -> str:
    """The rows as a markdown table."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * 3 + ["---"]) + "|"]
    for r in rows:
        times = (_ms(r.timing.median_ms), _ms(r.timing.min_ms)) if r.timing else ("—", "—")
        cells = (r.case, r.implementation, *times, r.speedup, r.notes.replace("|", "/"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_line(device: torch.device) -> str:
    """``Machine: ...``: CPU, cores, torch version and threads (and the GPU on CUDA)."""
    parts = [f"{cpu_model()}, {os.cpu_count()} cores", f"torch {torch.__version__}",
             f"{torch.get_num_threads()} torch threads"]  # fmt: skip
    if device.type == "cuda":
        parts.append(f"GPU {torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})")
    return "Machine: " + ", ".join(parts)


def format_section(heading: str, device: torch.device, command: str, report: Report, flag: str | None = None) -> str:
    """A markdown section: heading, Machine/Date/Command lines (and ``flag``, a high-load warning,
    under them), the table and its footnotes."""
    lines = [heading, "", machine_line(device), f"Date: {datetime.date.today().isoformat()}",
             f"Command: `{command}`"] + ([flag] if flag else []) + ["", format_table(report.rows)]  # fmt: skip
    if report.footnotes:
        lines += [""] + [f"- {note}" for note in report.footnotes]
    return "\n".join(lines) + "\n"


TITLE = (
    "# Benchmarks\n\nThe figures in this file are written by `tools/benchmark.py` "
    "(one section per benchmark and device).\n"
)


def upsert_section(document: str | None, heading: str, section: str, group: str | None = None) -> str:
    """``document`` with the section under ``heading`` (up to the next ``## `` heading) replaced
    by ``section``; a new section goes after the last section whose heading starts with ``group``
    (``"## detector"``, say: a benchmark's sections stay together), else at the end. A new document
    starts with the title."""
    if document is None:
        return TITLE + "\n" + section
    lines = document.splitlines()
    starts = [i for i, line in enumerate(lines) if line.rstrip() == heading]
    if not starts:
        kin = [i for i, line in enumerate(lines) if group and line.startswith("## ") and line.startswith(group)]
        if not kin:
            return document.rstrip("\n") + "\n\n" + section
        end = next((i for i in range(kin[-1] + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        before, after = "\n".join(lines[:end]).rstrip("\n"), "\n".join(lines[end:])
        return before + "\n\n" + section + ("\n" + after + "\n" if after else "")
    start = starts[0]
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    before = "\n".join(lines[:start])
    after = "\n".join(lines[end:])
    return (before + "\n" if before else "") + section + ("\n" + after + "\n" if after else "")


def write_section(path: str, heading: str, section: str, group: str | None = None) -> None:
    """Upserts ``section`` into the markdown file at ``path`` (created if missing; see ``upsert_section``)."""
    try:
        with open(path, encoding="utf-8") as f:
            document: str | None = f.read()
    except FileNotFoundError:
        document = None
    write_atomic(path, upsert_section(document, heading, section, group))
