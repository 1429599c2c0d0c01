"""tools/visualize.py: partition (every layout renders a BEV picture of a frame) and frame (a Waymo
v1 file's frame with its boxes, off-screen and in bird's-eye view)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pointformer.utils.cli import run_tool
from pointformer.vis import read_png
from pointformer.vis.cli import FrameNotFoundError, load_frame_scene, load_predictions
from pointformer.vis.partitions import LAYOUTS
from pointformer.vis.scene import GT_COLOR, PRED_COLOR

ROOT = Path(__file__).resolve().parents[2]
GT = np.round(np.array(GT_COLOR) * 255)
PRED = np.round(np.array(PRED_COLOR) * 255)


def _tool():
    spec = importlib.util.spec_from_file_location("visualize_tool", ROOT / "tools" / "visualize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _count(image: np.ndarray, color: np.ndarray, tol: int = 8) -> int:
    return int((np.abs(image.astype(np.int64) - color).max(axis=-1) <= tol).sum())


def test_partition_pictures_for_every_layout(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "tools" / "visualize.py"), "partition", "--layout", "all",
               "--out", str(tmp_path), "--points", "20000", "--scale", "1"]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == len(LAYOUTS)
    for layout in LAYOUTS:
        data = (tmp_path / f"{layout}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])
        assert (width, height) == (468, 468), layout


def test_unknown_layout_is_rejected(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "tools" / "visualize.py"), "partition", "--layout", "nope",
               "--out", str(tmp_path / "x.png")]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "invalid choice" in result.stderr


@pytest.fixture(scope="module")
def waymo_v1_file(tmp_path_factory) -> Path:
    """A 2-frame synthetic Waymo v1 TFRecord: TOP laser only, narrowed to 400 columns, fewer
    objects (about 3 s to write; same reader paths as full frames)."""
    from pointformer.data.synthetic import generate_sequence, waymo_lidars
    from pointformer.data.synthetic.waymo_export import write_waymo_v1

    top = dataclasses.replace(waymo_lidars()[0], width=400)
    sequence = generate_sequence(0, 2, "waymo", lidars=(top,), density=0.3, label_range=50.0)
    return write_waymo_v1(sequence, tmp_path_factory.mktemp("waymo_v1"))


@pytest.fixture
def predictions(tmp_path) -> Path:
    path = tmp_path / "pred.json"
    boxes = [[10.0, 0.0, 1.0, 4.5, 2.0, 1.6, 0.2], [-8.0, 6.0, 1.0, 4.2, 1.9, 1.5, 3.0]]
    path.write_text(json.dumps({"boxes": boxes, "scores": [0.9, 0.3], "names": ["vehicle", "vehicle"]}))
    return path


def test_frame_scene_from_waymo_v1(waymo_v1_file: Path) -> None:
    scene = load_frame_scene(waymo_v1_file, 1)
    assert scene.points.shape[1] == 6 and len(scene.points) > 1000
    assert len(scene.gt_boxes) > 0 and set(scene.gt_names) <= {"vehicle", "pedestrian", "sign", "cyclist"}
    np.testing.assert_array_equal(scene.intensity, scene.points[:, 3])
    with pytest.raises(FrameNotFoundError, match=r"frame 2 out of range: .* holds 2 frames"):
        load_frame_scene(waymo_v1_file, 2)
    with pytest.raises(FileNotFoundError):
        load_frame_scene(waymo_v1_file.parent / "missing.tfrecord", 0)
    with pytest.raises(ValueError, match="not a Waymo v1 .tfrecord file"):
        load_frame_scene(waymo_v1_file.parent, 0)


def test_predictions_json(predictions: Path, tmp_path: Path) -> None:
    boxes, scores, names = load_predictions(predictions)
    assert boxes.shape == (2, 7) and boxes.dtype == np.float32 and scores.tolist() == pytest.approx([0.9, 0.3])
    assert names == ("vehicle", "vehicle")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"boxes": [[1, 2, 3, 4, 5, 6, 0]], "scores": [0.1, 0.2]}))
    with pytest.raises(ValueError, match="1 boxes but 2 scores"):
        load_predictions(bad)


def test_frame_save_renders_offscreen(waymo_v1_file: Path, predictions: Path, tmp_path: Path) -> None:
    pytest.importorskip("open3d", reason="Open3D (open3d-cpu) is not installed")
    out = tmp_path / "frame.png"
    command = [sys.executable, str(ROOT / "tools" / "visualize.py"), "frame", "--data", str(waymo_v1_file),
               "--frame", "0", "--pred", str(predictions), "--save", str(out),
               "--width", "640", "--height", "360"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert "2 predictions" in result.stdout and str(out) in result.stdout
    image = read_png(out)
    assert image.shape == (360, 640, 3)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20
    assert _count(image, GT) > 50 and _count(image, PRED) > 20


def test_frame_bev(waymo_v1_file: Path, predictions: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "bev.png"
    argv = ["frame", "--data", str(waymo_v1_file), "--frame", "1", "--bev", "--pred", str(predictions),
            "--min-score", "0.5", "--save", str(out), "--range", "40", "--scale", "4",
            "--color", "intensity"]  # fmt: skip
    assert _tool().main(argv) == 0
    assert "1 predictions" in capsys.readouterr().out
    image = read_png(out)
    assert image.shape == (320, 320, 3)
    assert _count(image, GT, 0) > 100
    # The kept prediction (score 0.9) at (10, 0): 4 px per metre, origin at the picture's centre.
    rows, cols = np.nonzero(np.abs(image.astype(np.int64) - PRED).max(axis=-1) == 0)
    assert len(rows) > 20
    assert abs(rows.mean() - 160) < 6 and abs(cols.mean() - (160 + 40)) < 6


def test_frame_errors(waymo_v1_file: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    tool = _tool()
    argv = ["frame", "--data", str(waymo_v1_file), "--frame", "7", "--bev", "--save", str(tmp_path / "x.png")]
    assert run_tool(tool.main, argv) == 2
    assert "frame 7 out of range" in capsys.readouterr().err
    # Without Open3D the 3D view fails with the install hint; the BEV still works.
    monkeypatch.setitem(sys.modules, "open3d", None)
    argv = ["frame", "--data", str(waymo_v1_file), "--frame", "0", "--save", str(tmp_path / "y.png")]
    assert run_tool(tool.main, argv) == 2
    assert "pip install open3d-cpu==0.20.0" in capsys.readouterr().err
    assert not (tmp_path / "y.png").exists()
