"""``make demo``'s runner (pointformer/runs/demo.py) end to end at toy size: synthetic Waymo v1
files generated and converted, a one-epoch training run, the official table, submission files and
pictures; a second run reuses the data and the finished training (idempotent)."""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from pointformer.data.formats.waymo_objects import read_objects
from pointformer.runs import demo

pytestmark = pytest.mark.slow

LINE = re.compile(r"^OBJECT_TYPE_TYPE_VEHICLE_LEVEL_1: \[mAP [0-9.e-]+\] \[mAPH [0-9.e-]+\]$", re.M)


def _run(tmp_path, *extra: str) -> str:
    args = [
        "--raw", str(tmp_path / "raw"), "--work-dir", str(tmp_path / "work"), "--out", str(tmp_path / "out"),
        "--train-sequences", "1", "--val-sequences", "1", "--frames", "2", "--val-frames", "2", "--render", "1",
        "--no-progress",
        "--set", f"dataset.root={tmp_path / 'converted'}", "--set", "train.epochs=1", "--set", "train.batch_size=1",
        "--set", "voxelization.point_cloud_range=[-12.8,-12.8,-2,12.8,12.8,4]",
        "--set", "dataset.point_cloud_range=[-12.8,-12.8,-2,12.8,12.8,4]", *extra,
    ]  # fmt: skip
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert demo.main(args) == 0
    return out.getvalue()


def test_demo_end_to_end_and_idempotent(tmp_path):
    first = _run(tmp_path)
    assert "generating 1 x 2 synthetic Waymo v1 frames for training" in first
    assert LINE.search(first), first
    assert (tmp_path / "work" / "epoch_001.pth").is_file()
    assert len(read_objects(tmp_path / "out" / "ground_truth.bin").boxes) > 0
    read_objects(tmp_path / "out" / "predictions.bin")
    assert list((tmp_path / "out" / "renders").glob("*_bev.png"))
    assert "where everything is" in first

    second = _run(tmp_path)
    assert "(reused)" in second and "generating" not in second
    assert not (tmp_path / "work" / "epoch_002.pth").exists()  # the finished run is not repeated
    assert LINE.search(second)
