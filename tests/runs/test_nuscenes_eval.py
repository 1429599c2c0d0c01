"""nuScenes evaluation through the runs path (``eval.metric: nuscenes``) on a tiny synthetic
dataroot: an oracle detector scores the devkit's perfect values, the numbers equal
``evaluate_files`` on the written results JSON, partial splits, the results' frames, and errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from pointformer.config import ConfigError, load_config
from pointformer.data.layout import read_frame_columns, read_frame_table, read_meta
from pointformer.evaluation.nuscenes import (
    DetectionConfig,
    evaluate,
    evaluate_files,
    load_ground_truth,
    read_results,
    write_results,
)
from pointformer.models import Detections
from pointformer.runs.evaluate import evaluate_model
from pointformer.runs.nuscenes_eval import nuscenes_source, restrict_ground_truth

CFG = "nuscenes_flatformer.yaml"
VERSION = "v1.0-mini"


class Oracle(torch.nn.Module):
    """Returns each frame's (range-filtered) ground truth as detections, velocities included."""

    def __init__(self, class_names, score=1.0):
        super().__init__()
        self.class_names = tuple(class_names)
        self.score = score

    def forward(self, batch):
        out = []
        for b in range(batch.batch_size):
            boxes = batch.frame_boxes(b).clone()
            labels = batch.labels[batch.box_offsets[b] : batch.box_offsets[b + 1]].clone()
            out.append(Detections(boxes, torch.full((len(boxes),), self.score), labels))
        return out


@pytest.fixture(scope="module")
def cfg(tiny_overrides):
    return load_config(CFG, tiny_overrides())


@pytest.fixture(scope="module")
def oracle_result(cfg):
    return evaluate_model(Oracle(cfg.class_names), cfg, progress=False)


def test_meta_records_the_dataroot_and_the_source_resolves(tiny_nuscenes, cfg):
    meta = read_meta(tiny_nuscenes.root)
    assert meta["dataroot"] == str(tiny_nuscenes.dataroot.resolve()) and meta["version"] == VERSION
    source = nuscenes_source(cfg, "b")
    assert (source.dataroot, source.version, source.split) == (tiny_nuscenes.dataroot.resolve(), VERSION, "b")
    # The config's keys override meta.json; nuscenes_eval_split names the devkit split of val_split.
    other = load_config(CFG, [f"dataset.root={tiny_nuscenes.root}", "dataset.val_split=b",
                              f"dataset.nuscenes_dataroot={tiny_nuscenes.dataroot}",
                              "dataset.nuscenes_version=v1.0-mini", "dataset.nuscenes_eval_split=a"])  # fmt: skip
    assert nuscenes_source(other, "b").split == "a" and nuscenes_source(other, "a").split == "a"
    assert nuscenes_source(other, "b").dataroot == tiny_nuscenes.dataroot


def test_source_errors(tiny_nuscenes, tmp_path):
    missing = load_config(CFG, [f"dataset.root={tiny_nuscenes.root}", f"dataset.nuscenes_dataroot={tmp_path}"])
    with pytest.raises(ConfigError, match="nuscenes_dataroot"):
        nuscenes_source(missing, "b")
    waymo_names = load_config("waymo_flatformer.yaml", [f"dataset.root={tiny_nuscenes.root}", "eval.metric=nuscenes"])
    with pytest.raises(ConfigError, match="detection classes"):
        nuscenes_source(waymo_names, "b")
    with pytest.raises(ConfigError, match="eval.metric must be one of waymo, nuscenes, none"):
        load_config(CFG, ["eval.metric=kitti"])


def test_oracle_scores_the_perfect_values(oracle_result, tiny_nuscenes):
    m = oracle_result.metrics
    gt = load_ground_truth(tiny_nuscenes.dataroot, VERSION, "b").boxes
    # Classes with ground truth inside the devkit's class range (bird's-eye distance to the ego).
    rng = DetectionConfig().class_range
    ego = load_ground_truth(tiny_nuscenes.dataroot, VERSION, "b").ego_translation[gt.sample_index]
    dist = np.linalg.norm((gt.translation - ego)[:, :2], axis=1)
    present = {n for n, d in zip(gt.names.tolist(), dist.tolist(), strict=True) if d < rng[n]}
    assert {"car", "pedestrian"} <= present
    aps = m.mean_dist_aps
    for c in DetectionConfig().class_names:
        if c in present:
            assert aps[c] == pytest.approx(1.0), c
            errors = m.label_tp_errors[c]
            # Centres, sizes, yaw and velocities went through the LIDAR -> global pose exactly.
            for k in ("trans_err", "scale_err", "orient_err", "vel_err"):
                assert math.isnan(errors[k]) or errors[k] < 1e-3, (c, k, errors[k])
        else:
            assert aps[c] == 0.0, c
    assert m.mean_ap == pytest.approx(len(present) / 10)
    s = oracle_result.scalars
    assert s["mAP"] == pytest.approx(m.mean_ap) and s["NDS"] == pytest.approx(m.nd_score)
    assert s["car/AP"] == pytest.approx(1.0) and set(s) >= {"mATE", "mASE", "mAOE", "mAVE", "mAAE"}
    # The summary is the devkit's.
    assert oracle_result.lines[0] == f"mAP: {m.mean_ap:.4f}"
    assert f"NDS: {m.nd_score:.4f}" in oracle_result.lines


def test_results_json_evaluates_to_the_same_numbers(oracle_result, tiny_nuscenes, tmp_path):
    path = write_results(tmp_path / "results_nusc.json", oracle_result.nuscenes_results)
    data = json.loads(path.read_text())
    tokens = read_frame_columns(tiny_nuscenes.root, "b", ["sample_token"])["sample_token"]
    assert sorted(data["results"]) == sorted(tokens) and data["meta"]["use_lidar"] is True
    files = evaluate_files(path, tiny_nuscenes.dataroot, VERSION, "b")
    m = oracle_result.metrics
    assert files.label_aps == m.label_aps
    assert json.dumps(files.label_tp_errors) == json.dumps(m.label_tp_errors)  # NaN where undefined, equal
    assert files.nd_score == m.nd_score and files.mean_ap == m.mean_ap


def test_results_are_the_lidar_boxes_in_the_global_frame(oracle_result, tiny_nuscenes):
    """Sample tokens and poses of the frame table: each oracle box lands on an annotation."""
    frames = read_frame_table(tiny_nuscenes.root, "b")
    results = oracle_result.nuscenes_results.boxes
    gt = load_ground_truth(tiny_nuscenes.dataroot, VERSION, "b").boxes
    for s, token in enumerate(results.sample_tokens):
        g = gt.sample_tokens.index(token)
        pred = results.translation[results.offsets[s] : results.offsets[s + 1]]
        ann = gt.translation[gt.offsets[g] : gt.offsets[g + 1]]
        assert len(pred) == len(frames[s].boxes) > 0
        d = np.linalg.norm(pred[:, None, :] - ann[None, :, :], axis=-1).min(axis=1)
        assert d.max() < 1e-3


def test_partial_split_uses_the_evaluated_samples(cfg, tiny_nuscenes):
    result = evaluate_model(Oracle(cfg.class_names), cfg, max_frames=2, progress=False)
    assert len(result.nuscenes_results.boxes.sample_tokens) == 2
    assert "ground truth of the 2 evaluated samples" in result.lines[0]
    gt = load_ground_truth(tiny_nuscenes.dataroot, VERSION, "b")
    sub = restrict_ground_truth(gt, result.nuscenes_results.boxes.sample_tokens)
    assert len(sub.sample_tokens) == 2 and len(sub.boxes) < len(gt.boxes)
    expected = evaluate(sub, result.nuscenes_results)
    assert result.metrics.label_aps == expected.label_aps and result.metrics.nd_score == expected.nd_score
    assert result.metrics.mean_dist_aps["car"] == pytest.approx(1.0)


def test_no_predictions_score_zero(cfg):
    class Silent(Oracle):
        def forward(self, batch):
            return [Detections(torch.zeros(0, 9), torch.zeros(0), torch.zeros(0, dtype=torch.int64))] * batch.batch_size

    result = evaluate_model(Silent(cfg.class_names), cfg, progress=False)
    assert result.scalars["NDS"] == 0.0 and result.scalars["mAP"] == 0.0 and result.scalars["mATE"] == 1.0
    assert "no predicted box" in result.lines[0]


def test_box_cap_and_models_without_velocity(cfg, tmp_path):
    """At most 500 boxes per sample (the best by score); 7-column boxes report zero velocity."""

    class Many(Oracle):
        def forward(self, batch):
            out = []
            for b in range(batch.batch_size):
                boxes = batch.frame_boxes(b)[:1, :7].repeat(600, 1)
                boxes[:, 0] += torch.arange(600) * 0.01
                out.append(Detections(boxes, torch.linspace(0.01, 1.0, 600), torch.zeros(600, dtype=torch.int64)))
            return out

    result = evaluate_model(Many(cfg.class_names), cfg, progress=False)
    boxes = result.nuscenes_results.boxes
    assert (boxes.counts() == 500).all()
    assert boxes.scores.min() > 0.15 and (boxes.velocity == 0).all()
    write_results(tmp_path / "r.json", result.nuscenes_results)
    assert len(read_results(tmp_path / "r.json").boxes) == len(boxes)


def test_split_without_annotations_gives_results_only(cfg, tiny_nuscenes, monkeypatch):
    """A test split (v1.0-test has no annotations): the results JSON, no metrics."""
    import pointformer.runs.nuscenes_eval as nuscenes_eval
    from pointformer.evaluation.nuscenes import DetectionBoxes, NuScenesGroundTruth

    tokens = read_frame_columns(tiny_nuscenes.root, "b", ["sample_token"])["sample_token"]
    empty = NuScenesGroundTruth(DetectionBoxes.from_records([(t, []) for t in tokens], ground_truth=True),
                                np.zeros((len(tokens), 3)), {}, "b", False)  # fmt: skip
    monkeypatch.setattr(nuscenes_eval, "ground_truth", lambda source: empty)
    result = evaluate_model(Oracle(cfg.class_names), cfg, progress=False)
    assert result.metrics is None and result.scalars == {} and "no annotations" in result.lines[0]
    assert len(result.nuscenes_results.boxes) > 0


def test_the_devkit_reads_the_results_and_agrees(tiny_nuscenes, tiny_overrides, tmp_path):
    """nuscenes-devkit's own DetectionEval on the written results JSON (an imperfect oracle: a +-30 m
    range and random scores) gives our numbers."""
    pytest.importorskip("nuscenes")
    from nuscenes import NuScenes
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.detection.evaluate import DetectionEval

    class RandomScores(Oracle):
        def forward(self, batch):
            out = super().forward(batch)
            return [Detections(d.boxes, torch.rand(len(d)), d.labels) for d in out]

    torch.manual_seed(0)
    cfg = load_config(CFG, tiny_overrides(30))
    result = evaluate_model(RandomScores(cfg.class_names), cfg, progress=False)
    path = write_results(tmp_path / "results_nusc.json", result.nuscenes_results)
    nusc = NuScenes(VERSION, str(tiny_nuscenes.dataroot), verbose=False)
    devkit = DetectionEval(nusc, config_factory("detection_cvpr_2019"), str(path), eval_set="b",
                           output_dir=str(tmp_path / "devkit"), verbose=False)  # fmt: skip
    theirs, _ = devkit.evaluate()
    ours = result.metrics
    assert 0.1 < ours.mean_ap < 0.9
    assert ours.nd_score == pytest.approx(theirs.nd_score, abs=1e-9)
    assert ours.mean_ap == pytest.approx(theirs.mean_ap, abs=1e-9)
    for m, e in theirs.tp_errors.items():
        assert ours.tp_errors[m] == pytest.approx(e, abs=1e-9), m
    for c, aps in theirs._label_aps.items():
        for th, ap in aps.items():
            assert ours.label_aps[c][th] == pytest.approx(ap, abs=1e-9), (c, th)
