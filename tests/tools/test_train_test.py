"""tools/train.py and tools/test.py end to end on a tiny converted Waymo dataset: the missing-dataset
message, a one-iteration training run (checkpoint, TensorBoard, official metric lines), --resume,
inference with submission, ground-truth file and pictures, and the same lines from tools/eval.py.
Also the evaluation glue with an oracle model (mAP 1 where it sees every box)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pointformer.config import load_config
from pointformer.data.convert import main as convert_main
from pointformer.data.formats.waymo_objects import read_objects, write_objects
from pointformer.data.layout import read_frame_table
from pointformer.models import Detections, build_detector
from pointformer.runs import evaluate_cli, train_cli
from pointformer.utils.cli import run_tool

REPO = Path(__file__).resolve().parents[2]
DEMO = "demo/waymo_flatformer_demo.yaml"
CLASSES = ("VEHICLE", "PEDESTRIAN", "CYCLIST")
LINE = re.compile(r"(OBJECT_TYPE_TYPE_([A-Z]+)_LEVEL_([12])): \[mAP ([0-9.e-]+)\] \[mAPH ([0-9.e-]+)\]$")


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tiny_waymo = _load("tiny_waymo", REPO / "tests" / "data" / "tiny_waymo.py")
eval_tool = _load("eval_tool", REPO / "tools" / "eval.py")


def official_lines(text: str) -> dict[str, str]:
    """``{"OBJECT_TYPE_TYPE_VEHICLE_LEVEL_1": "OBJECT_TYPE_TYPE_VEHICLE_LEVEL_1: [mAP 0] [mAPH 0]", ...}``
    of the lines (or log lines ending) in the official format."""
    out = {}
    for line in text.splitlines():
        m = LINE.search(line)
        if m:
            out[m.group(1)] = m.group(0)
    return out


def expected_keys() -> set[str]:
    return {f"OBJECT_TYPE_TYPE_{c}_LEVEL_{k}" for c in CLASSES for k in (1, 2)}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, captured) -> Path:
    """The tiny Waymo v1 sequences (5 training, 2 validation frames) converted with the real converter."""
    base = tmp_path_factory.mktemp("tiny_waymo_train")
    inputs = tiny_waymo.write_tiny_waymo(base / "raw")
    out = base / "converted"
    with captured():
        argv = ["--dataset", "waymo", "--root", str(inputs["v1"]), "--out", str(out), "--workers", "0", "--no-progress"]
        assert convert_main(argv) == 0
    return out


def reduced(root: Path, epochs: int = 1) -> list[str]:
    """--set overrides that make the demo config train one iteration and evaluate one frame."""
    sets = [f"dataset.root={root}", f"train.epochs={epochs}", "train.max_frames=2", "train.batch_size=2",
            "train.workers=0", "eval.max_frames=1", "train.log_interval=1"]  # fmt: skip
    return [a for s in sets for a in ("--set", s)]


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory, captured) -> tuple[Path, str, int]:
    """(work dir, console output, exit code) of one epoch of the reduced demo config."""
    work_dir = tmp_path_factory.mktemp("train") / "work"
    with captured() as out:
        code = train_cli.main(["--cfg", DEMO, *reduced(data_root), "--work-dir", str(work_dir), "--no-progress"])
    return work_dir, out.getvalue(), code


@pytest.fixture(scope="module")
def resumed(trained, data_root, tmp_path_factory, captured) -> tuple[Path, str, int, bytes]:
    """A copy of ``trained``'s work dir resumed with epochs=2: (work dir, output, exit code, the epoch-1
    checkpoint's bytes before resuming). A truncated ``epoch_002.pth`` (a run killed while writing it
    without the atomic writer, or a disk error) is planted first: the resume must skip it."""
    work_dir = tmp_path_factory.mktemp("resume") / "work"
    shutil.copytree(trained[0], work_dir)
    before = (work_dir / "epoch_001.pth").read_bytes()
    (work_dir / "epoch_002.pth").write_bytes(before[: len(before) // 2])
    argv = ["--cfg", DEMO, *reduced(data_root, epochs=2), "--work-dir", str(work_dir), "--no-progress", "--resume"]
    with captured() as out:
        code = train_cli.main(argv)
    return work_dir, out.getvalue(), code, before


# --- errors ----------------------------------------------------------------------------------


def test_missing_dataset_message_and_exit_code(tmp_path):
    # As a script: the wrapper returns main's code.
    missing = tmp_path / "nowhere"
    cmd = [sys.executable, str(REPO / "tools" / "train.py"), "--cfg", DEMO, "--set", f"dataset.root={missing}",
           "--work-dir", str(tmp_path / "work"), "--no-progress"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text
    assert f"no converted 'training' split under '{missing}'" in text
    assert "tools/create_data.py --dataset waymo" in text  # how to convert real data
    assert "tools/make_synthetic.py --format waymo-v1" in text  # how to make synthetic data
    assert not list((tmp_path / "work").glob("*.pth"))


def test_config_errors_exit_2(data_root, tmp_path, capsys, captured):
    assert run_tool(train_cli.main, ["--cfg", DEMO, "--set", "train.epoch=1", "--work-dir", str(tmp_path)]) == 2
    assert "train: unknown keys ['epoch']" in capsys.readouterr().err
    # A model key only the part's constructor can judge: found at build time, reported the same way.
    with captured() as out:
        code = run_tool(train_cli.main, ["--cfg", DEMO, *reduced(data_root), "--set", "model.head.score_treshold=0.1",
                                         "--work-dir", str(tmp_path / "w"), "--no-progress"])  # fmt: skip
    assert code == 2, out.getvalue()  # stdout and stderr together
    assert "model.head: unknown keys ['score_treshold'] for CenterHead" in out.getvalue()
    assert "Traceback" not in out.getvalue()
    assert run_tool(evaluate_cli.main, ["--cfg", "no_such_config", "--ckpt", "x.pth"]) == 2
    assert "'no_such_config' not found" in capsys.readouterr().err


# --- training --------------------------------------------------------------------------------


def test_training_writes_checkpoint_tensorboard_and_metric_lines(trained):
    work_dir, out, code = trained
    assert code == 0, out
    # The model summary with the demo's parameter counts.
    model = build_detector(load_config(DEMO))
    assert model.summary() in out
    assert "2 training frames" in out
    # A checkpoint that loads with weights_only (no code runs) into a fresh model.
    assert sorted(p.name for p in work_dir.glob("*.pth")) == ["epoch_001.pth"]
    state = torch.load(work_dir / "epoch_001.pth", weights_only=True, map_location="cpu")
    assert state["epoch"] == 1 and state["iteration"] == 1
    assert state["config"]["train"]["epochs"] == 1 and state["config"]["train"]["max_frames"] == 2
    model.load_state_dict(state["model"])
    # TensorBoard events with the losses and the metric.
    (events,) = (work_dir / "tensorboard").glob("events.out.tfevents.*")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/loss_heatmap", "train/loss_bbox", "train/loss_iou", "train/lr"} <= tags
    assert "eval/VEHICLE_LEVEL_1/mAPH" in tags
    assert all(torch.isfinite(torch.tensor(e.value)) for e in acc.Scalars("train/loss"))
    # The evaluation lines, in the official format, on the console and in train.log.
    for text in (out, (work_dir / "train.log").read_text()):
        assert set(official_lines(text)) == expected_keys(), text[-3000:]
    assert "final evaluation: " in out and "VEHICLE_LEVEL_1/mAPH" in out
    assert f"work dir: {work_dir}" in out


def test_resume_continues_from_the_last_epoch(resumed):
    work_dir, out, code, before = resumed
    assert code == 0, out
    assert sorted(p.name for p in work_dir.glob("*.pth")) == ["epoch_001.pth", "epoch_002.pth"]
    assert (work_dir / "epoch_001.pth").read_bytes() == before  # continued, not restarted
    assert "skipping checkpoint epoch_002.pth" in out and "not loadable" in out  # the planted damaged one
    assert (work_dir / "epoch_002.pth.damaged").is_file()
    assert f"resumed from {work_dir / 'epoch_001.pth'} (epoch 1, iteration 1)" in out
    assert "training epochs 2-2" in out
    state = torch.load(work_dir / "epoch_002.pth", weights_only=True, map_location="cpu")
    assert state["epoch"] == 2 and state["iteration"] == 2
    steps = {int(s["step"]) for s in state["optimizer"]["state"].values()}
    assert steps == {2}  # the optimizer state carried over: its second step
    assert set(official_lines(out)) == expected_keys()
    # Both runs' events in one TensorBoard dir.
    assert len(list((work_dir / "tensorboard").glob("events.out.tfevents.*"))) == 2


# --- inference -------------------------------------------------------------------------------


def test_test_tool_table_submission_and_pictures(trained, data_root, tmp_path, capsys):
    work_dir, _, code = trained
    assert code == 0
    sub, gt, out_dir = tmp_path / "pred.bin", tmp_path / "gt.bin", tmp_path / "out"
    argv = ["--cfg", DEMO, "--set", f"dataset.root={data_root}", "--ckpt", str(work_dir / "epoch_001.pth"),
            "--submission", str(sub), "--gt-file", str(gt), "--render", "1", "--out-dir", str(out_dir),
            "--predictions-json", str(tmp_path / "pred.json"), "--no-progress"]  # fmt: skip
    assert evaluate_cli.main(argv) == 0  # Open3D pictures too where it renders off-screen, else a warning
    printed = capsys.readouterr().out
    lines = official_lines(printed)
    assert set(lines) == expected_keys(), printed
    # The submission and ground truth are Waymo Objects files of the evaluated frames.
    table = read_frame_table(data_root, "validation")
    frames = set(zip(table.sequence, table.timestamp_micros.tolist(), strict=True))
    predictions, truth = read_objects(sub), read_objects(gt)
    assert len(predictions.types) > 0 and len(truth.types) > 0
    for objects in (predictions, truth):
        keys = zip(objects.context_names.tolist(), objects.frame_timestamps_micros.tolist(), strict=True)
        assert set(keys) <= frames
        assert set(objects.types.tolist()) <= {1, 2, 4}  # vehicle, pedestrian, cyclist: no signs
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert set(metrics) >= {"VEHICLE_LEVEL_1/mAPH", "MEAN_LEVEL_2/mAPH"}
    per_frame = json.loads((tmp_path / "pred.json").read_text())
    assert set(per_frame) == set(table.frame_id)  # both validation frames (eval.max_frames not set)
    assert sum(len(f["scores"]) for f in per_frame.values()) == len(predictions.types)
    pictures = sorted(out_dir.glob("renders/*.png"))
    assert pictures and any(p.name.endswith("_bev.png") for p in pictures)
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 1000 for p in pictures)
    for p in pictures:
        assert f"picture: {p}" in printed
    # tools/eval.py on the two files prints the same lines.
    assert eval_tool.main(["waymo", str(sub), str(gt)]) == 0
    evaluated = official_lines(capsys.readouterr().out)
    assert {k: evaluated[k] for k in lines} == lines


# --- the evaluation glue with an oracle --------------------------------------------------------


class Oracle(torch.nn.Module):
    """Returns the batch's ground truth as detections (score 1), except the classes in ``drop``."""

    class_names = ("Vehicle", "Pedestrian", "Cyclist")

    def __init__(self, drop=()):
        super().__init__()
        self.drop = [self.class_names.index(n) for n in drop]

    def forward(self, batch):
        out = []
        for b in range(batch.batch_size):
            labels = batch.labels[batch.box_offsets[b] : batch.box_offsets[b + 1]]
            keep = ~torch.isin(labels, torch.tensor(self.drop, dtype=labels.dtype))
            boxes = batch.frame_boxes(b)[keep]
            out.append(Detections(boxes.clone(), torch.ones(len(boxes)), labels[keep].clone()))
        return out


def test_oracle_scores_one_and_files_agree_with_eval_tool(data_root, tmp_path, capsys):
    from pointformer.runs.evaluate import evaluate_model, waymo_frames, write_submission
    from pointformer.runs.inference import waymo_ground_truth

    cfg = load_config(DEMO, [f"dataset.root={data_root}"])
    result = evaluate_model(Oracle(drop=("Cyclist",)), cfg, progress=False)
    lines = official_lines("\n".join(result.lines))
    assert set(lines) == expected_keys()
    for level in (1, 2):
        assert lines[f"OBJECT_TYPE_TYPE_VEHICLE_LEVEL_{level}"].endswith("[mAP 1] [mAPH 1]")
        assert lines[f"OBJECT_TYPE_TYPE_PEDESTRIAN_LEVEL_{level}"].endswith("[mAP 1] [mAPH 1]")
        assert lines[f"OBJECT_TYPE_TYPE_CYCLIST_LEVEL_{level}"].endswith("[mAP 0] [mAPH 0]")
    assert result.scalars["VEHICLE_LEVEL_1/mAPH"] == pytest.approx(1.0)
    assert result.scalars["MEAN_LEVEL_1/mAPH"] == pytest.approx(2 / 3)
    # The same through the files tools/test.py writes and tools/eval.py reads.
    from pointformer.runs.data import build_dataset

    dataset = build_dataset(cfg, cfg.data.val_split, training=False)
    frames = waymo_frames(dataset.frames, cfg.grid.point_cloud_range, len(result.predictions))
    write_submission(tmp_path / "pred.bin", frames, result.predictions)
    write_objects(tmp_path / "gt.bin", waymo_ground_truth(frames, Oracle.class_names))
    capsys.readouterr()
    assert eval_tool.main(["waymo", str(tmp_path / "pred.bin"), str(tmp_path / "gt.bin")]) == 0
    evaluated = official_lines(capsys.readouterr().out)
    assert {k: evaluated[k] for k in lines} == lines


# --- training data ---------------------------------------------------------------------------


def test_max_frames_subset_keeps_per_epoch_augmentation(data_root):
    import numpy as np

    from pointformer.data.collate import collate_frames
    from pointformer.engine import build_train_loader
    from pointformer.runs.data import build_dataset, subset

    cfg = load_config(DEMO, [f"dataset.root={data_root}", "train.max_frames=2"])
    dataset = build_dataset(cfg, cfg.data.train_split, training=True)
    data = subset(dataset, cfg.train.max_frames)
    assert len(data) == 2 and len(dataset) == 5
    loader = build_train_loader(data, 1, collate_frames, 0, shuffle=False)
    # What the trainer does before each epoch (Trainer._set_epoch): set_epoch on the sampler and dataset.
    points = []
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)
        loader.dataset.set_epoch(epoch)
        assert dataset.epoch == epoch
        points.append(data[0].points)
    assert not np.array_equal(points[0], points[1])  # new flips, rotation, scaling each epoch
