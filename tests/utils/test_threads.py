"""pointformer.utils.threads: the wait policy set before torch loads, the thread-count knobs and their
precedence, the auto count from the kernel's runnable tasks, and the governor."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pointformer.utils import threads as th

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    environ.update(env, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True).stdout


def test_prepare_environment_before_torch_only():
    code = "from pointformer.utils.threads import prepare_environment as p; import os, sys; r = p(busy=BUSY); " \
           "print(r, os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"  # fmt: skip
    assert run_python(code.replace("BUSY", "True")).split() == ["True", "PASSIVE", "False"]
    assert run_python(code.replace("BUSY", "False")).split() == ["True", "None", "False"]  # quiet: OpenMP's default
    assert run_python(code.replace("BUSY", "True"), OMP_WAIT_POLICY="ACTIVE").split() == ["True", "ACTIVE", "False"]


def test_prepare_environment_after_torch_changes_nothing(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert "torch" in sys.modules
    assert th.prepare_environment() is False
    assert "OMP_WAIT_POLICY" not in os.environ


def test_tools_set_the_wait_policy_before_torch():
    for tool in ("train", "demo", "test", "benchmark"):
        text = (ROOT / "tools" / f"{tool}.py").read_text()
        assert (
            text.index("prepare_environment()") < text.index("from pointformer.runs")
            if tool != "benchmark"
            else (text.index("prepare_environment()") < text.index("from pointformer.benchmarks"))
        ), tool


@pytest.mark.parametrize(
    "value,expected", [(None, None), ("auto", None), (" AUTO ", None), ("", None), ("3", 3), (2, 2)]
)
def test_parse_threads(value, expected):
    assert th.parse_threads(value) == expected


@pytest.mark.parametrize("value", ["0", "-1", "two", 0])
def test_parse_threads_refuses(value):
    with pytest.raises(ValueError, match="POINTFORMER_THREADS"):
        th.parse_threads(value)


def test_requested_threads_precedence(monkeypatch):
    monkeypatch.delenv(th.THREADS_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert th.requested_threads() is None
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert th.requested_threads() == 1
    monkeypatch.setenv(th.THREADS_ENV, "auto")
    assert th.requested_threads() is None  # POINTFORMER_THREADS wins over OMP_NUM_THREADS
    monkeypatch.setenv(th.THREADS_ENV, "2")
    assert th.requested_threads() == 2
    assert th.requested_threads("4") == 4  # --threads wins over both


def test_runnable_tasks_and_auto_threads(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  1 2 3\nprocs_running 3\nprocs_blocked 0\n")
    assert th.runnable_tasks(samples=3, interval_s=0, path=stat) == 3
    assert th.runnable_tasks(path=tmp_path / "missing") is None
    stat.write_text("cpu  1 2 3\n")
    assert th.runnable_tasks(samples=1, path=stat) is None
    # the caller is one runnable task: two others on two CPUs leave one thread; none leaves both
    assert th.auto_threads(cpus=2, runnable=3) == 1
    assert th.auto_threads(cpus=2, runnable=1) == 2
    assert th.auto_threads(cpus=4, runnable=2) == 3
    assert th.auto_threads(cpus=2, runnable=12) == 1
    assert th.auto_threads(cpus=2, runnable=0) == 2


def test_governor_fixed_and_auto(monkeypatch):
    before = torch.get_num_threads()
    try:
        governor = th.ThreadGovernor(fixed=1)
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        assert governor.update() == 1  # a fixed count is restored
        monkeypatch.setattr(th, "auto_threads", lambda: 2)
        auto = th.ThreadGovernor(interval_s=3600)
        assert torch.get_num_threads() == 2
        monkeypatch.setattr(th, "auto_threads", lambda: 1)
        assert auto.update() == 2  # not re-checked before the interval
        assert auto.update(force=True) == 1
        assert auto.counts == [2, 1]
    finally:
        torch.set_num_threads(before)
