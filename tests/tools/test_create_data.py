"""tools/create_data.py: in-process and as a subprocess."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pointformer.data.convert import main
from pointformer.data.layout import read_frame_table, read_meta
from pointformer.utils.cli import run_tool

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("tiny_waymo", REPO / "tests" / "data" / "tiny_waymo.py")
tiny_waymo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny_waymo)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    return tiny_waymo.write_tiny_waymo(tmp_path_factory.mktemp("tiny_waymo"))


def test_in_process(inputs, tmp_path, capsys):
    argv = ["--dataset", "waymo", "--root", str(inputs["v2"]), "--out", str(tmp_path)]
    argv += "--format v2 --splits validation --workers 0 --sweeps 1 --no-progress".split()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "sequences: 1 (1 converted, 0 resumed, 0 failed)" in out and "frames: 2" in out
    assert read_meta(tmp_path)["splits"]["validation"]["sweeps"] == 1
    assert len(read_frame_table(tmp_path, "validation")) == 2
    assert main(argv) == 0
    assert "(0 converted, 1 resumed, 0 failed)" in capsys.readouterr().out


def test_errors_are_reported(tmp_path, capsys):
    argv = ["--dataset", "waymo", "--root", str(tmp_path), "--out", str(tmp_path / "out"), "--no-progress"]
    assert run_tool(main, argv) == 2
    err = capsys.readouterr().err
    assert "no Waymo v1 input for split 'training'" in err and "Traceback" not in err


def test_subprocess(inputs, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, str(REPO / "tools" / "create_data.py"), "--root", str(inputs["v1"]), "--out", str(tmp_path)]
    cmd += "--dataset waymo --workers 0 --no-progress".split()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "sequences: 3 (3 converted" in proc.stdout and "gt database objects: " in proc.stdout
    assert (tmp_path / "frames_training.parquet").is_file() and (tmp_path / "gt_database_training.parquet").is_file()
