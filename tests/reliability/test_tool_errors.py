"""Every ``tools/*.py`` entry point fails cleanly on bad input (issue 18): one line on stderr that
names the file, key or field and what was expected, exit status 2, no traceback; ``--debug``
shows the traceback; an unexpected exception keeps its traceback.

The tools run in-process through their own ``main`` and the boundary (``run_tool``), as the
scripts do; ``test_scripts_as_subprocesses`` runs two of them as real processes.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pointformer.config import load_config
from pointformer.data.formats.tfrecord import frame_record
from pointformer.data.formats.waymo_objects import WaymoObjects, write_objects
from pointformer.engine.checkpoint import save_checkpoint
from pointformer.utils.cli import run_tool

REPO = Path(__file__).resolve().parents[2]
DEMO = "demo/waymo_flatformer_demo.yaml"
OUTCOMES: list[tuple[str, str, int]] = []  # (tool, case, exit status), for the report


def tool(name: str):
    """The module of ``tools/<name>.py``."""
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(name: str, argv: list[str], capsys) -> tuple[int, str, str]:
    module = tool(name)
    main = (lambda a: module.main(a, script="tools/benchmark.py")) if name == "benchmark" else module.main
    code = run_tool(main, argv, prog=f"{name}.py")
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_error(code: int, err: str, *expected: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1, lines
    for text in expected:
        assert text in errors[0], errors[0]


# --- checkpoints (tools/test.py, tools/export.py) ---------------------------------------------


class RunsCode:
    """Unpickling this would call os.getpid: weights_only loading must refuse it."""

    def __reduce__(self):
        return (os.getpid, ())


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ckpts")
    from pointformer.models import build_detector

    full = load_config("waymo_flatformer.yaml")
    other = {"model": build_detector(full).state_dict(), "config": dict(full.raw), "epoch": 1}
    save_checkpoint(other, d / "other_config.pth")
    good = d / "good.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "epoch": 1}, good)
    (d / "text.pth").write_text("these are not weights\n")
    (d / "empty.pth").write_bytes(b"")
    data = (d / "other_config.pth").read_bytes()
    (d / "truncated.pth").write_bytes(data[: len(data) // 3])
    torch.save({"model": RunsCode()}, d / "runs_code.pth")
    torch.save(build_detector(load_config(DEMO)).state_dict(), d / "bare_state_dict.pth")
    return {p.stem: p for p in d.iterdir()} | {"missing": d / "missing.pth"}


CHECKPOINT_CASES = {
    "text": ["not loadable", "text.pth"],
    "empty": ["empty file (0 bytes)"],
    "truncated": ["not loadable", "truncated"],
    "runs_code": ["weights_only loading refuses", "runs_code.pth"],
    "bare_state_dict": ["no 'model' state dict", "bare_state_dict.pth"],
    "missing": ["not found", "missing.pth"],
    "other_config": ["do not fit the model of", "shape mismatch", "seems to be from waymo_flatformer.yaml"],
}


@pytest.mark.parametrize("case", sorted(CHECKPOINT_CASES))
def test_test_tool_bad_checkpoints(checkpoints, case, capsys):
    code, _, err = run("test", ["--cfg", DEMO, "--ckpt", str(checkpoints[case])], capsys)
    assert_clean_error(code, err, "test.py: error: checkpoint", *CHECKPOINT_CASES[case])
    OUTCOMES.append(("test.py", case, code))


@pytest.mark.parametrize("case", ["text", "truncated", "missing", "other_config"])
def test_export_tool_bad_checkpoints(checkpoints, case, tmp_path, capsys):
    out = tmp_path / "deploy"
    code, _, err = run("export", ["--cfg", DEMO, "--ckpt", str(checkpoints[case]), "--out", str(out)], capsys)
    assert_clean_error(code, err, "export.py: error: checkpoint", *CHECKPOINT_CASES[case])
    assert not out.exists()
    OUTCOMES.append(("export.py", case, code))


# --- configs (tools/train.py) ------------------------------------------------------------------

CONFIG_CASES = {
    "optimizer.lr=fast": "optimizer.lr must be a finite number > 0, got 'fast' (str)",
    "optimizer.lr=-0.001": "optimizer.lr must be a finite number > 0, got -0.001",
    "optimizer.lr=.nan": "optimizer.lr must be a finite number > 0, got nan",
    "train.epochs=two": "train.epochs must be an integer >= 1, got 'two' (str)",
    "train.epochs=1.7": "train.epochs must be an integer >= 1, got 1.7 (float)",
    "schedule.pct_start=1.5": "schedule.pct_start must be a finite number in [0, 1), got 1.5",
    "optimizer.betas=[0.9]": "optimizer.betas must be a list of 2 items",
    "train.workers=-1": "train.workers must be an integer >= 0",
    "eval.metric=kitti": "eval.metric must be one of waymo, nuscenes, none",
}


@pytest.mark.parametrize("override", sorted(CONFIG_CASES))
def test_train_tool_bad_config_values(override, tmp_path, capsys):
    code, out, err = run("train", ["--cfg", DEMO, "--set", override, "--work-dir", str(tmp_path)], capsys)
    assert_clean_error(code, err, "waymo_flatformer_demo.yaml", CONFIG_CASES[override])
    assert "error" not in out  # on stderr, not stdout
    OUTCOMES.append(("train.py", override, code))


def test_train_tool_missing_config(capsys):
    code, _, err = run("train", ["--cfg", "no_such_config"], capsys)
    assert_clean_error(code, err, "'no_such_config' not found")
    OUTCOMES.append(("train.py", "missing config", code))


# tools/train.py --resume with a damaged newest checkpoint: tests/tools/test_train_test.py's
# ``resumed`` fixture plants one (the CLI run), tests/engine/test_resume_damaged.py covers the cases.


# --- Waymo evaluation (tools/eval.py waymo) ------------------------------------------------------


def _objects(path: Path, scores, points, boxes=None) -> Path:
    n = len(scores)
    rng = np.random.default_rng(0)
    boxes = (
        np.concatenate([rng.uniform(-20, 20, (n, 3)), np.full((n, 3), 3.0), np.zeros((n, 1))], 1)
        if boxes is None
        else boxes
    )
    write_objects(path, WaymoObjects.from_arrays("ctx", 1, boxes, np.ones(n, np.int8), np.asarray(scores, np.float32),
                                                 num_lidar_points_in_box=np.asarray(points, np.int32)))  # fmt: skip
    return path


@pytest.fixture
def eval_files(tmp_path) -> dict[str, Path]:
    gt = _objects(tmp_path / "gt.bin", [1.0] * 4, [20] * 4)
    good = tmp_path / "pred.bin"
    good.write_bytes(gt.read_bytes())
    data = gt.read_bytes()
    (tmp_path / "truncated.bin").write_bytes(data[: len(data) - 7])
    (tmp_path / "record.bin").write_bytes(frame_record(b"\x08\x01") * 3)  # a TFRecord, not an Objects message
    boxes = np.concatenate(
        [np.random.default_rng(0).uniform(-20, 20, (4, 3)), np.full((4, 3), 3.0), np.zeros((4, 1))], 1
    )
    nan_boxes = boxes.copy()
    nan_boxes[2, 3] = np.nan
    return {
        "gt": gt,
        "pred": good,
        "truncated": tmp_path / "truncated.bin",
        "record": tmp_path / "record.bin",
        "missing": tmp_path / "missing.bin",
        "nan_scores": _objects(tmp_path / "nan.bin", [0.9, np.nan, 0.5, 0.2], [0] * 4),
        "inf_scores": _objects(tmp_path / "inf.bin", [0.9, np.inf, 0.5, 0.2], [0] * 4),
        "nan_box": _objects(tmp_path / "nanbox.bin", [0.9, 0.8, 0.5, 0.2], [0] * 4, nan_boxes),
        "no_points_gt": _objects(tmp_path / "nopoints.bin", [0.9, 0.8, 0.5, 0.2], [0] * 4),
        "logits": _objects(tmp_path / "logits.bin", [3.2, -1.0, 0.5, 0.2], [0] * 4),
    }


EVAL_CASES = {
    # case: (predictions, ground truth, expected text)
    "truncated .bin": ("truncated", "gt", ["truncated.bin", "malformed waymo.open_dataset.Objects"]),
    "missing file": ("missing", "gt", ["missing.bin: No such file or directory"]),
    "TFRecord as .bin": ("record", "gt", ["record.bin", "malformed waymo.open_dataset.Objects"]),
    "NaN scores": ("nan_scores", "gt", ["predictions: 1 of 4 scores are NaN or infinite", "nan.bin"]),
    "inf scores": ("inf_scores", "gt", ["scores are NaN or infinite"]),
    "NaN box field": ("nan_box", "gt", ["box fields [length (1)]"]),
    "swapped files": ("gt", "no_points_gt", ["none of its 4 objects has num_lidar_points_in_box > 0", "swapped"]),
}


@pytest.mark.parametrize("case", sorted(EVAL_CASES))
def test_eval_tool_waymo_bad_inputs(eval_files, case, capsys):
    pred, gt, expected = EVAL_CASES[case]
    code, out, err = run("eval", ["waymo", str(eval_files[pred]), str(eval_files[gt])], capsys)
    assert_clean_error(code, err, "eval.py: error: ", *expected)
    assert "mAP" not in out  # no table from bad input
    OUTCOMES.append(("eval.py waymo", case, code))


def test_eval_tool_warns_on_scores_outside_0_1(eval_files, capsys):
    with pytest.warns(UserWarning, match=r"predictions: 2 of 4 scores are outside \[0, 1\].*logits"):
        code, out, _ = run("eval", ["waymo", str(eval_files["logits"]), str(eval_files["gt"])], capsys)
    assert code == 0 and "OBJECT_TYPE_TYPE_VEHICLE_LEVEL_1" in out
    OUTCOMES.append(("eval.py waymo", "scores outside [0, 1] (warning, exit 0)", code))


def test_eval_tool_nuscenes_missing_results(tmp_path, capsys):
    code, _, err = run("eval", ["nuscenes", str(tmp_path / "none.json"), "--dataroot", str(tmp_path),
                                "--split", "mini_val"], capsys)  # fmt: skip
    assert_clean_error(code, err, "eval.py: error: ")
    OUTCOMES.append(("eval.py nuscenes", "missing results file", code))


# --- the other tools ----------------------------------------------------------------------------


def test_create_data_missing_root(tmp_path, capsys):
    code, _, err = run("create_data", ["--dataset", "waymo", "--root", str(tmp_path / "none"), "--out",
                                       str(tmp_path / "out"), "--no-progress"], capsys)  # fmt: skip
    assert_clean_error(code, err, "create_data.py: error: no Waymo v1 input for split 'training'")
    OUTCOMES.append(("create_data.py", "missing root", code))


def test_visualize_missing_file(tmp_path, capsys):
    argv = ["frame", "--data", str(tmp_path / "none.tfrecord"), "--frame", "0", "--bev"]
    argv += ["--save", str(tmp_path / "f.png")]
    code, _, err = run("visualize", argv, capsys)
    assert_clean_error(code, err, "visualize.py: error: ", "none.tfrecord")
    OUTCOMES.append(("visualize.py", "missing file", code))


def test_benchmark_unknown_config(capsys):
    code, _, err = run("benchmark", ["detector", "--cfg", "no_such_config", "--quick"], capsys)
    assert_clean_error(code, err, "benchmark.py: error: ", "'no_such_config' not found")
    OUTCOMES.append(("benchmark.py", "unknown config", code))


def test_make_synthetic_bad_output(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the output folder should go")
    code, _, err = run("make_synthetic", ["--format", "waymo-v1", "--frames", "1", "--out", str(blocker / "x")], capsys)
    assert_clean_error(code, err, "make_synthetic.py: error: ")
    OUTCOMES.append(("make_synthetic.py", "output under a file", code))


def test_demo_bad_config(tmp_path, capsys):
    code, _, err = run("demo", ["--cfg", "no_such_config", "--work-dir", str(tmp_path)], capsys)
    assert_clean_error(code, err, "demo.py: error: ", "'no_such_config' not found")
    OUTCOMES.append(("demo.py", "unknown config", code))


def test_convert_checkpoint_missing_file(tmp_path, capsys):
    argv = ["--from", "openpcdet", "--cfg", "waymo_centerpoint.yaml", str(tmp_path / "none.pth"),
            str(tmp_path / "out.pth")]  # fmt: skip
    code, _, err = run("convert_checkpoint", argv, capsys)
    assert_clean_error(code, err, "convert_checkpoint.py: error: ", "none.pth: no such checkpoint file")
    OUTCOMES.append(("convert_checkpoint.py", "missing file", code))


# --- the boundary itself ----------------------------------------------------------------------


def test_debug_shows_the_traceback(checkpoints, capsys):
    code, _, err = run("test", ["--cfg", DEMO, "--ckpt", str(checkpoints["empty"]), "--debug"], capsys)
    assert code == 2 and "Traceback" in err and "CheckpointError" in err and "test.py: error: checkpoint" in err


def test_unexpected_errors_keep_their_traceback():
    def main(argv):
        raise RuntimeError("a bug, not a bad input")

    with pytest.raises(RuntimeError, match="a bug"):
        run_tool(main, [])


def test_scripts_as_subprocesses(eval_files, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for argv, expected in [
        (["eval.py", "waymo", str(eval_files["nan_scores"]), str(eval_files["gt"])], "scores are NaN"),
        (
            ["train.py", "--cfg", DEMO, "--set", "optimizer.lr=fast", "--work-dir", str(tmp_path)],
            "optimizer.lr must be",
        ),
    ]:
        proc = subprocess.run([sys.executable, str(REPO / "tools" / argv[0]), *argv[1:]], capture_output=True,
                              text=True, env=env, timeout=300)  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert f"{argv[0]}: error: " in proc.stderr and expected in proc.stderr and "Traceback" not in proc.stderr
