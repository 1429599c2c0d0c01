"""``configs/nuscenes_flatformer.yaml`` end to end on the tiny synthetic nuScenes data, reduced with
--set (a +-12.8 m range, a narrower model, one frame): one training iteration with class-balanced sampling, the nuScenes
evaluation at the end of training, and tools/test.py writing the results JSON and
metrics_summary.json that ``evaluate_files`` (the devkit-equal evaluator) reproduces. Also the
CBGS training data over the converted frames."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pointformer.config import load_config
from pointformer.data.cbgs import ClassBalancedDataset, class_draw_counts, frame_classes
from pointformer.evaluation.nuscenes import evaluate_files, read_results
from pointformer.runs import evaluate_cli, train_cli
from pointformer.runs.data import FrameSubset, build_dataset, training_data
from pointformer.utils.cli import run_tool

CFG = "nuscenes_flatformer.yaml"


def reduced(reduced_flatformer) -> list[str]:
    """The tiny data, a +-12.8 m grid (80 x 80 pillars of 0.32 m) and the demo's narrower model
    (the same parts; the 2D backbone and head at stride 2), one training frame."""
    return reduced_flatformer(12.8) + ["train.max_frames=1", "train.epochs=1", "train.log_interval=1"]


def as_args(sets: list[str]) -> list[str]:
    return [a for s in sets for a in ("--set", s)]


def test_cbgs_training_data_over_converted_frames(tiny_overrides):
    cfg = load_config(CFG, tiny_overrides() + ["train.max_frames=2"])
    assert cfg.train.cbgs
    dataset = build_dataset(cfg, cfg.data.train_split, training=True)
    data = training_data(cfg, dataset)
    assert isinstance(data, ClassBalancedDataset) and isinstance(data.dataset, FrameSubset)
    assert set(data.indices.tolist()) <= {0, 1}
    classes = frame_classes([dataset.frames[i] for i in range(2)], cfg.class_names, 1)
    assert len(data) == class_draw_counts(classes, 10).sum() > 2
    # A frame drawn twice in an epoch is augmented twice, differently.
    i, j = np.flatnonzero(data.indices == data.indices[0])[:2]
    assert not np.array_equal(data[int(i)].points, data[int(j)].points)
    np.testing.assert_array_equal(data[int(i)].points, data[int(i)].points)  # deterministic per draw
    # Without a key, LayoutDataset.get is __getitem__.
    np.testing.assert_array_equal(dataset.get(1).points, dataset[1].points)
    plain = load_config(CFG, tiny_overrides() + ["train.max_frames=2", "train.cbgs=false"])
    assert isinstance(training_data(plain, dataset), FrameSubset)


@pytest.fixture(scope="module")
def trained(reduced_flatformer, tmp_path_factory, captured):
    """One epoch of one iteration: the training frame's class-balanced draws in one batch."""
    sets = reduced(reduced_flatformer)
    cfg = load_config(CFG, sets)
    dataset = build_dataset(cfg, cfg.data.train_split, training=True)
    draws = int(class_draw_counts(frame_classes([dataset.frames[0]], cfg.class_names, 1), 10).sum())
    sets.append(f"train.batch_size={draws}")
    work_dir = tmp_path_factory.mktemp("nus_train") / "work"
    with captured() as out:
        code = train_cli.main(["--cfg", CFG, *as_args(sets), "--work-dir", str(work_dir), "--no-progress"])
    return work_dir, out.getvalue(), code, sets


def test_one_iteration_trains_and_evaluates_with_nds(trained):
    work_dir, out, code, _ = trained
    assert code == 0, out
    assert (work_dir / "epoch_001.pth").is_file()
    assert "class-balanced draws per epoch" in out
    assert "final evaluation:" in out and " NDS " in out and " mAP " in out and "car/AP" in out
    assert "Per-class results:" in out  # the devkit's summary in the log


def test_tools_test_writes_results_the_evaluator_reads(trained, tiny_nuscenes, tmp_path, captured):
    work_dir, _, code, sets = trained
    assert code == 0
    results, out_dir = tmp_path / "results_nusc.json", tmp_path / "out"
    argv = ["--cfg", CFG, "--ckpt", str(work_dir / "epoch_001.pth"), *as_args(sets),
            "--set", "model.head.score_threshold=0.0",  # an untrained head: keep its boxes
            "--submission", str(results), "--out-dir", str(out_dir), "--no-progress"]  # fmt: skip
    with captured() as buffer:
        assert evaluate_cli.main(argv) == 0
    printed = buffer.getvalue()
    assert "NDS: " in printed and f"submission: {results}" in printed
    read = read_results(results)
    assert len(read.boxes.sample_tokens) == 3 and 0 < read.boxes.counts().max() <= 500
    summary = json.loads((out_dir / "metrics_summary.json").read_text())
    scalars = json.loads((out_dir / "metrics.json").read_text())
    files = evaluate_files(results, tiny_nuscenes.dataroot, "v1.0-mini", "b")
    assert summary["nd_score"] == pytest.approx(files.nd_score, abs=1e-12)
    assert summary["mean_ap"] == pytest.approx(files.mean_ap, abs=1e-12)
    assert scalars["NDS"] == pytest.approx(files.nd_score, abs=1e-12)
    assert summary["label_aps"] == json.loads(json.dumps(files.serialize()["label_aps"]))
    # --gt-file is Waymo's.
    with captured() as buffer:
        # A usage error (argparse: usage line, then the message on stderr, status 2) through the boundary.
        assert run_tool(evaluate_cli.main, argv[:4] + ["--gt-file", str(tmp_path / "gt.bin")]) == 2
    assert "nuScenes ground truth is the dataroot's tables" in buffer.getvalue()
