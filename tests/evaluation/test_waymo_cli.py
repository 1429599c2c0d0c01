"""``tools/eval.py waymo``: the official output lines and the JSON file."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np

from pointformer.data.formats.waymo_objects import WaymoObjects, write_objects

LINE = re.compile(
    r"^(OBJECT_TYPE_TYPE_[A-Z]+|RANGE_TYPE_[A-Z]+_\[\d+, (\d+|\+inf)\))_LEVEL_[12]: "
    r"\[mAP [0-9.e-]+\] \[mAPH [0-9.e-]+\]$"
)


def _eval_main():
    path = Path(__file__).resolve().parents[2] / "tools" / "eval.py"
    spec = importlib.util.spec_from_file_location("eval_tool", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_cli_prints_official_lines(tmp_path, capsys):
    boxes = np.array([[10, 0, 0, 4, 2, 2, 0], [0, 40, 0, 1, 1, 2, 0.5]], np.float64)
    gt = WaymoObjects.from_arrays("ctx", 7, boxes, [1, 2], num_lidar_points_in_box=[20, 20])
    pred = WaymoObjects.from_arrays("ctx", 7, boxes[:1], [1], [0.8])
    write_objects(tmp_path / "gt.bin", gt)
    write_objects(tmp_path / "pred.bin", pred)
    out_json = tmp_path / "out" / "metrics.json"
    assert _eval_main()(["waymo", str(tmp_path / "pred.bin"), str(tmp_path / "gt.bin"), "--json", str(out_json)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert lines[0] == "1 examples found."
    metric_lines = lines[1:]
    assert len(metric_lines) == 32 and all(LINE.match(line) for line in metric_lines), metric_lines
    assert metric_lines[0] == "OBJECT_TYPE_TYPE_VEHICLE_LEVEL_1: [mAP 1] [mAPH 1]"
    assert metric_lines[2] == "OBJECT_TYPE_TYPE_PEDESTRIAN_LEVEL_1: [mAP 0] [mAPH 0]"
    assert metric_lines[8].startswith("RANGE_TYPE_VEHICLE_[0, 30)_LEVEL_1: ")
    data = json.loads(out_json.read_text())
    assert abs(data["OBJECT_TYPE_TYPE_VEHICLE_LEVEL_1/AP"] - 1.0) < 1e-6 and len(data) == 64
