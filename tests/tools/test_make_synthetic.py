"""tools/make_synthetic.py: files in the Waymo layouts, read back by the readers, a summary that
adds up, distinct sequences, and the same bytes in-process and as a script."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pointformer.data.formats import waymo_v1, waymo_v2
from pointformer.data.synthetic.classes import WAYMO_TYPE_NAMES
from pointformer.data.synthetic.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _summary_numbers(text: str) -> tuple[int, int, int, int]:
    """(frames, points, boxes, files) from the summary."""
    frames = int(re.search(r"sequences?, (\d+) frames", text).group(1))
    points = int(re.search(r"^points: (\d+)", text, re.M).group(1))
    boxes = int(re.search(r"^boxes: (\d+)", text, re.M).group(1))
    files = int(re.search(r"^files: (\d+)", text, re.M).group(1))
    return frames, points, boxes, files


def test_waymo_v2_two_sequences(tmp_path: Path, capsys) -> None:
    args = ["--format", "waymo-v2", "--frames", "1", "--sequences", "2", "--seed", "5", "--split", "validation"]
    assert main([*args, "--out", str(tmp_path), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    text = captured.out
    contexts = waymo_v2.context_names(tmp_path, "validation")
    assert len(contexts) == 2 and contexts[0] != contexts[1]
    for tag in waymo_v2.SCHEMAS:
        assert sorted(p.stem for p in (tmp_path / "validation" / tag).glob("*.parquet")) == contexts
    frames = [f for c in contexts for f in waymo_v2.read_frames(tmp_path, "validation", c)]
    points = sum(f.points.shape[0] for f in frames)
    types = np.concatenate([f.labels.types for f in frames])
    assert _summary_numbers(text) == (2, points, len(types), 7 * 2)
    for t in np.unique(types):
        assert f"{WAYMO_TYPE_NAMES[int(t)]} {(types == t).sum()}" in text
    assert "2 sequences" in text and f"validation/lidar/{contexts[0]}.parquet" in text
    # The two sequences are different scenes.
    assert frames[0].points.shape != frames[1].points.shape or not np.array_equal(frames[0].points, frames[1].points)


def test_waymo_v1_script_matches_in_process(tmp_path: Path, capsys) -> None:
    args = ["--format", "waymo-v1", "--frames", "1", "--seed", "7"]
    assert main([*args, "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    in_process = capsys.readouterr().out
    command = [sys.executable, str(ROOT / "tools" / "make_synthetic.py"), *args, "--out", str(tmp_path / "b")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "1/1" in result.stderr  # progress
    (path,) = (tmp_path / "a" / "training").glob("segment-*_with_camera_labels.tfrecord")
    # Deterministic: the same bytes, the same summary (but for the time).
    assert path.read_bytes() == (tmp_path / "b" / "training" / path.name).read_bytes()
    assert _summary_numbers(result.stdout) == _summary_numbers(in_process)
    (frame,) = waymo_v1.read_frames(path)
    assert _summary_numbers(in_process) == (1, frame.points.shape[0], len(frame.labels), 1)
    assert f"training/{path.name}" in in_process


@pytest.mark.parametrize(
    "bad, message",
    [
        (["--format", "kitti"], "invalid choice"),
        (["--format", "waymo-v1", "--frames", "0"], "must be >= 1"),
        (["--format", "waymo-v1", "--seed", "-1"], "seeds must lie"),
    ],
)
def test_bad_arguments(tmp_path: Path, capsys, bad, message) -> None:
    argv = ["--frames", "1", *bad, "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_nuscenes_keyframes_and_split(tmp_path: Path, capsys) -> None:
    from pointformer.data.formats.nuscenes import NuScenesReader

    args = ["--format", "nuscenes", "--frames", "2", "--sequences", "2", "--seed", "3", "--split", "validation"]
    assert main([*args, "--out", str(tmp_path), "--no-progress"]) == 0
    text = capsys.readouterr().out
    reader = NuScenesReader(tmp_path, "v1.0-mini")
    assert list(reader.split_scene_names("validation")) == ["scene-0103", "scene-0916"]
    tokens = reader.sample_tokens("validation")
    samples = [reader.sample(t, nsweeps=1) for t in tokens]
    frames, points, boxes, files = _summary_numbers(text)
    assert frames == len(tokens) == 4  # 2 keyframes per scene
    assert points == sum(s.points.shape[0] for s in samples)
    assert boxes == sum(len(s.names) for s in samples) > 0
    assert files == 14  # 13 tables + splits.json
    # 9 sweeps between the two keyframes of each scene.
    assert len(list((tmp_path / "sweeps" / "LIDAR_TOP").glob("*.pcd.bin"))) == 2 * 9
