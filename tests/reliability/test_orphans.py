"""``kill -9`` of a parallel conversion leaves no process behind (workers, forkserver, resource
tracker): they all end within seconds, and stop writing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pointformer.utils.process import process_alive

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc's parent links)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(b") ", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc to list the process tree")
def test_kill_9_of_the_converter_leaves_no_process(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(HERE / "slow_source.py"), str(tmp_path / "out"), "2"], env=env)
    try:
        # Wait for the pool: 2 workers, besides the forkserver and the resource tracker.
        deadline = time.monotonic() + 120
        seen: set[int] = set()
        while time.monotonic() < deadline:
            seen |= _descendants(proc.pid)
            if len(seen) >= 4 and any((tmp_path / "out" / "points").glob("slow*/*.npy")):
                break
            time.sleep(0.2)
        assert len(seen) >= 4, f"the pool did not start: processes {sorted(seen)}"
        seen |= _descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(process_alive(p) for p in seen):
            time.sleep(0.2)
        survivors = [p for p in seen if process_alive(p)]
        assert not survivors, f"processes outlived the killed converter: {survivors}"
        # Nothing goes on writing the output.
        files = sorted(p for p in (tmp_path / "out").rglob("*") if p.is_file())
        time.sleep(2.5)
        assert sorted(p for p in (tmp_path / "out").rglob("*") if p.is_file()) == files
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
