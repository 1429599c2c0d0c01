"""Benchmarks under load: a section measured on an oversubscribed machine is flagged, --max-load
refuses to measure, and the train-load suite's child measures training steps."""

from __future__ import annotations

import os

import pytest
import torch

from pointformer.benchmarks.core import Report, format_section, high_load_flag


def test_high_load_flag_and_section():
    threads = torch.get_num_threads()
    assert high_load_flag(None, None, cores=2) is None
    assert high_load_flag(0.3, 0.2 + threads, cores=2) is None  # the benchmark's own threads do not count
    flag = high_load_flag(9.5, 12.0, cores=2)
    assert flag is not None and "HIGH LOAD" in flag and "9.5 at the start and 12.0 at the end" in flag
    assert high_load_flag(0.1, 2.0 + threads, cores=2) is not None  # busy during the run
    section = format_section("## x (cpu)", torch.device("cpu"), "cmd", Report(), flag)
    lines = section.splitlines()
    assert lines[4] == "Command: `cmd`" and lines[5] == flag
    assert "HIGH LOAD" not in format_section("## x (cpu)", torch.device("cpu"), "cmd", Report())


def test_max_load_refuses(capsys):
    from pointformer.benchmarks.cli import main

    assert main(["eval", "--quick", "--max-load", "-1"]) == 3
    assert "above --max-load -1" in capsys.readouterr().err


@pytest.mark.slow
def test_train_load_child_threads_as_the_tools_do():
    """The 'after' child picks its wait policy as the tools do at start-up: PASSIVE beside busy
    processes (one per CPU, so that no CPU is free); the 'before' child keeps OpenMP's default."""
    from pointformer.benchmarks.train_load import THREADINGS, BusyLoad, run_child

    before, after = THREADINGS
    with BusyLoad(os.cpu_count() or 1):
        loaded = run_child("demo/waymo_flatformer_demo.yaml", 1, 1, True, after)
        default = run_child("demo/waymo_flatformer_demo.yaml", 1, 1, True, before)
    assert loaded["wait_policy"] == "PASSIVE" and default["wait_policy"] == "default (active)"
    for run in (loaded, default):
        assert len(run["step_s"]) == 1 and run["step_s"][0] > 0 and run["frames"] == 1
    assert max(loaded["threads"]) < (os.cpu_count() or 1) or loaded["threads"] == [1]


def test_steal_share_from_proc_stat(tmp_path):
    from pointformer.benchmarks.core import cpu_jiffies, load_note, steal_share

    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 50 800 0 0 0 50 0 0\\ncpu0 1 2 3\\n")
    start = cpu_jiffies(str(stat))
    assert start == (1000, 50)
    stat.write_text("cpu  200 0 100 1400 0 0 0 300 0 0\\n")
    assert steal_share(start, cpu_jiffies(str(stat))) == 250 / 1000
    assert steal_share(None, start) is None and cpu_jiffies(str(tmp_path / "missing")) is None
    if cpu_jiffies() is not None:  # Linux: the note says how much was stolen
        assert "stolen by the hypervisor" in load_note(0.0)
