"""nuScenes detection metrics: equality with nuscenes-devkit 1.2.0 (the oracle), edge cases, the
results JSON and the crash traps."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import sys

import numpy as np
import pytest

from pointformer.data.formats.errors import DataFormatError
from pointformer.data.formats.nuscenes import NuScenesReader
from pointformer.data.formats.nuscenes_tables import (
    ATTRIBUTE_NAMES,
    DETECTION_NAMES,
    scene_names_of_split,
    yaw_to_quaternion,
)
from pointformer.data.formats.nuscenes_writer import token, write_nuscenes
from pointformer.data.synthetic import generate_sequence, nuscenes_lidars
from pointformer.evaluation import nuscenes_cli
from pointformer.evaluation.nuscenes import (
    NuScenesEvalError,
    default_attribute,
    evaluate,
    evaluate_files,
    load_ground_truth,
    read_results,
    results_from_json,
    results_from_lidar_boxes,
    write_results,
)
from pointformer.utils.cli import run_tool

VERSION = "v1.0-mini"
SPLIT = "synth_val"
SCENES = ["scene-0103", "scene-0916"]  # also the devkit's predefined mini_val
RACK = "static_object.bicycle_rack"


def _devkit():
    try:
        from nuscenes import NuScenes
        from nuscenes.eval.detection.config import config_factory
        from nuscenes.eval.detection.evaluate import DetectionEval
    except ImportError as e:
        pytest.skip(f"nuscenes-devkit 1.2.0 oracle unavailable: missing package {e.name!r} ({e})")
    return NuScenes, config_factory, DetectionEval


def _load(root, name):
    with open(root / VERSION / f"{name}.json") as f:
        return json.load(f)


def _save(root, name, records):
    with open(root / VERSION / f"{name}.json", "w") as f:
        json.dump(records, f)


def _add_edge_cases(root) -> None:
    """Post-processes the written tables: bicycle racks around some bicycles (and one empty rack),
    0-point ground truth, and a 2-D-only offset so that some boxes fall beyond their class range
    (the synthetic labels reach 85 m, beyond every range, already)."""
    cats, insts, anns = _load(root, "category"), _load(root, "instance"), _load(root, "sample_annotation")
    cat_name = {c["token"]: c["name"] for c in cats}
    inst_cat = {i["token"]: cat_name[i["category_token"]] for i in insts}
    rack_cat = token("category", RACK)
    cats.append({"token": rack_cat, "name": RACK, "description": "bicycle rack"})
    bikes = [a for a in anns if inst_cat[a["instance_token"]] == "vehicle.bicycle"]
    assert len(bikes) >= 6
    new = []
    for k, b in enumerate(bikes[::3]):
        inst = token("rack-instance", k)
        ann = {
            "token": token("rack", k), "sample_token": b["sample_token"], "instance_token": inst,
            "visibility_token": "4", "attribute_tokens": [],
            # A rack rotated against the bike, centred 0.5 m off it: the bike's centre is inside.
            "translation": [b["translation"][0] + 0.5, b["translation"][1], b["translation"][2]],
            "size": [3.0, 4.0, 3.0], "rotation": yaw_to_quaternion(0.3 * k).tolist(),
            "prev": "", "next": "", "num_lidar_pts": 5, "num_radar_pts": 0,
        }  # fmt: skip
        insts.append({"token": inst, "category_token": rack_cat, "nbr_annotations": 1,
                      "first_annotation_token": ann["token"], "last_annotation_token": ann["token"]})  # fmt: skip
        new.append(ann)
    anns.extend(new)
    # 0-point ground truth (lidar and radar): dropped by the evaluation.
    for a in anns[5::17]:
        if inst_cat.get(a["instance_token"]) is not None:
            a["num_lidar_pts"], a["num_radar_pts"] = 0, 0
    # Radar points only: kept.
    anns[7]["num_lidar_pts"], anns[7]["num_radar_pts"] = 0, 3
    _save(root, "category", cats)
    _save(root, "instance", insts)
    _save(root, "sample_annotation", anns)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("nusc_eval")
    spec = dataclasses.replace(nuscenes_lidars()[0], width=120)
    seqs = [generate_sequence(s, 21, "nuscenes", lidars=(spec,), density=1.0) for s in (3, 4)]
    write_nuscenes(root, seqs, scene_names=SCENES, splits={SPLIT: SCENES, "one": SCENES[:1]}, min_points=0)
    _add_edge_cases(root)
    return root


@pytest.fixture(scope="module")
def gt(dataset):
    return load_ground_truth(dataset, VERSION, SPLIT)


@pytest.fixture(scope="module")
def nusc(dataset):
    NuScenes, _, _ = _devkit()
    return NuScenes(version=VERSION, dataroot=str(dataset), verbose=False)


def _random_boxes(rng, token, ego, n, score_levels=None):
    out = []
    for _ in range(n):
        name = DETECTION_NAMES[rng.integers(len(DETECTION_NAMES))]
        r, a = 60 * math.sqrt(rng.random()), rng.uniform(-math.pi, math.pi)
        score = float(rng.random()) if score_levels is None else float(rng.integers(score_levels)) / score_levels
        out.append({
            "sample_token": token,
            "translation": [ego[0] + r * math.cos(a), ego[1] + r * math.sin(a), float(rng.normal())],
            "size": rng.uniform(0.3, 5.0, 3).tolist(),
            "rotation": yaw_to_quaternion(rng.uniform(-math.pi, math.pi)).tolist(),
            "velocity": rng.normal(0, 3, 2).tolist(),
            "detection_name": name,
            "detection_score": score,
            "attribute_name": default_attribute(name, rng.normal(0, 0.5, 2)),
        })  # fmt: skip
    return out


def _perturbed(rng, dataset, tokens, gt, noise=1.0):
    """Predictions near the ground truth (all annotations of a detection class, including the
    0-point, out-of-range and in-rack ones), with a few misses, duplicates and false positives."""
    out = {}
    for s, tok in enumerate(tokens):
        boxes = []
        b = gt.boxes
        for i in range(int(b.offsets[s]), int(b.offsets[s + 1])):
            if rng.random() < 0.1:
                continue  # missed
            name = str(b.names[i])
            yaw = 2 * math.atan2(b.rotation[i, 3], b.rotation[i, 0]) + noise * rng.normal(0, 0.2)
            vel = b.velocity[i] if np.isfinite(b.velocity[i]).all() else np.zeros(2)
            vel = (vel + noise * rng.normal(0, 0.3, 2)).tolist()
            if rng.random() < 0.1:
                vel = [float("nan"), float("nan")]
            attr = str(b.attributes[i])
            if attr and rng.random() < 0.2:
                attr = default_attribute(name, rng.normal(0, 1, 2))
            box = {
                "sample_token": tok,
                "translation": (b.translation[i] + noise * rng.normal(0, 0.3, 3)).tolist(),
                "size": (b.size[i] * np.exp(noise * rng.normal(0, 0.1, 3))).tolist(),
                "rotation": yaw_to_quaternion(yaw).tolist(),
                "velocity": vel,
                "detection_name": name,
                "detection_score": float(rng.uniform(0.2, 1.0)),
                "attribute_name": attr,
            }
            boxes.append(box)
            if rng.random() < 0.05:  # a duplicate, scored lower: a false positive
                dup = copy.deepcopy(box)
                dup["detection_score"] = box["detection_score"] * 0.5
                boxes.append(dup)
        boxes += _random_boxes(rng, tok, gt.ego_translation[s], 5)
        out[tok] = boxes
    return out


def _results_json(results: dict) -> dict:
    return {"meta": {"use_camera": False, "use_lidar": True, "use_radar": False, "use_map": False,
                     "use_external": False}, "results": results}  # fmt: skip


def _devkit_eval(dataset, nusc, path, out_dir, split=SPLIT):
    _, config_factory, DetectionEval = _devkit()
    ev = DetectionEval(nusc, config_factory("detection_cvpr_2019"), str(path), eval_set=split,
                       output_dir=str(out_dir), verbose=False)  # fmt: skip
    metrics, md_list = ev.evaluate()
    return metrics.serialize(), md_list


def _assert_same(ours, theirs, where="") -> None:
    if isinstance(theirs, dict):
        assert set(ours) == set(theirs), where
        for k in theirs:
            _assert_same(ours[k], theirs[k], f"{where}/{k}")
    elif isinstance(theirs, (list, tuple)):
        assert len(ours) == len(theirs), where
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            _assert_same(a, b, f"{where}[{i}]")
    elif isinstance(theirs, float):
        if math.isnan(theirs):
            assert math.isnan(ours), f"{where}: {ours} vs NaN"
        else:
            assert abs(ours - theirs) <= 1e-6, f"{where}: ours {ours} vs devkit {theirs}"
    else:
        assert ours == theirs, f"{where}: {ours!r} vs {theirs!r}"


def _compare(dataset, nusc, tmp_path, results, split=SPLIT):
    path = tmp_path / "results.json"
    with open(path, "w") as f:
        json.dump(results, f)
    theirs, md_list = _devkit_eval(dataset, nusc, path, tmp_path / "devkit", split)
    metrics = evaluate_files(path, dataset, VERSION, split)
    ours = metrics.serialize()
    assert ours.pop("meta") == results["meta"]
    ours.pop("eval_time"), theirs.pop("eval_time")
    _assert_same(ours, theirs)
    for (name, th), md in metrics.metric_data.items():
        ref = md_list[(name, th)]
        for f in ("recall", "precision", "confidence", "trans_err", "vel_err", "scale_err", "orient_err", "attr_err"):
            np.testing.assert_allclose(getattr(md, f), getattr(ref, f), atol=1e-6, rtol=0, err_msg=f"{name}@{th} {f}")
    return metrics


# --- equality with the devkit ---------------------------------------------------------------------


def test_ground_truth_edge_cases_present(dataset, gt):
    b = gt.boxes
    assert gt.racks, "no bicycle racks in the split"
    assert (b.num_pts == 0).any()
    assert np.isnan(b.velocity).any()
    dist = np.hypot(*(b.translation - gt.ego_translation[b.sample_index])[:, :2].T)
    assert (dist >= 50).any()
    assert {"trailer", "construction_vehicle", "motorcycle"}.isdisjoint(set(b.names.tolist()))


def test_ground_truth_equals_devkit_load_gt(dataset, nusc):
    """Box by box (velocities included, bit for bit) the devkit's ``load_gt`` of the split."""
    from nuscenes.eval.common.loaders import load_gt
    from nuscenes.eval.detection.data_classes import DetectionBox

    ref = load_gt(nusc, "mini_val", DetectionBox)  # the scenes of SPLIT
    ours = load_ground_truth(dataset, VERSION, "mini_val")
    b = ours.boxes
    assert list(ours.sample_tokens) == ref.sample_tokens
    for s, tok in enumerate(ours.sample_tokens):
        theirs, i = ref[tok], slice(int(b.offsets[s]), int(b.offsets[s + 1]))
        assert len(theirs) == i.stop - i.start
        if not theirs:
            continue
        for field in ("translation", "size", "rotation", "velocity"):
            np.testing.assert_array_equal(getattr(b, field)[i], [getattr(x, field) for x in theirs], err_msg=field)
        assert b.names[i].tolist() == [x.detection_name for x in theirs]
        assert b.attributes[i].tolist() == [x.attribute_name for x in theirs]
        assert b.num_pts[i].tolist() == [x.num_pts for x in theirs]


def test_random_predictions_equal_devkit(dataset, nusc, gt, tmp_path):
    rng = np.random.default_rng(0)
    # Scores on a coarse grid: many ties, which exercise the devkit's ordering rules.
    results = {tok: _random_boxes(rng, tok, gt.ego_translation[s], 150, score_levels=20)
               for s, tok in enumerate(gt.sample_tokens)}  # fmt: skip
    metrics = _compare(dataset, nusc, tmp_path, _results_json(results))
    assert metrics.label_aps["trailer"][0.5] == 0.0 and metrics.label_tp_errors["trailer"]["trans_err"] == 1.0


def test_near_perfect_predictions_equal_devkit(dataset, nusc, gt, tmp_path):
    rng = np.random.default_rng(1)
    results = _perturbed(rng, dataset, gt.sample_tokens, gt)
    # Bicycles in racks (and motorcycles) are dropped from predictions too.
    rack_sample = next(iter(gt.racks))
    tok = gt.sample_tokens[rack_sample]
    rack = gt.racks[rack_sample][0]
    results[tok].append({**results[tok][0], "translation": rack[:3].tolist(), "detection_name": "motorcycle",
                         "attribute_name": "cycle.with_rider", "detection_score": 0.99})  # fmt: skip
    metrics = _compare(dataset, nusc, tmp_path, _results_json(results))
    assert metrics.mean_ap > 0.3 and metrics.nd_score > 0.3
    assert math.isnan(metrics.label_tp_errors["traffic_cone"]["orient_err"])
    assert math.isnan(metrics.label_tp_errors["barrier"]["vel_err"])


def test_exact_predictions_equal_devkit(dataset, nusc, gt, tmp_path):
    rng = np.random.default_rng(2)
    results = _perturbed(rng, dataset, gt.sample_tokens, gt, noise=0.0)
    metrics = _compare(dataset, nusc, tmp_path, _results_json(results))
    assert metrics.label_tp_errors["car"]["trans_err"] == pytest.approx(0.0, abs=1e-9)


def test_predefined_split_keeps_the_file_order(dataset, nusc, gt, tmp_path):
    """mini_val (predefined): the results must list exactly its samples; prediction order (for
    equal scores) is the file's, here reversed."""
    rng = np.random.default_rng(3)
    results = {tok: _random_boxes(rng, tok, gt.ego_translation[s], 100, score_levels=5)
               for s, tok in enumerate(gt.sample_tokens)}  # fmt: skip
    results = dict(reversed(list(results.items())))
    _compare(dataset, nusc, tmp_path, _results_json(results), split="mini_val")
    extra = dict(results, extra_token=[])
    with pytest.raises(NuScenesEvalError, match="exactly"):
        evaluate(load_ground_truth(dataset, VERSION, "mini_val"), results_from_json(_results_json(extra)))


def test_devkit_val_split_on_a_trainval_dataset(dataset, gt, tmp_path):
    """``val`` takes its scene names from the devkit's code (never splits.json) and the predefined
    rules (the results list exactly its samples); the numbers equal the devkit's."""
    import shutil

    NuScenes, _, _ = _devkit()
    from nuscenes.utils.splits import create_splits_scenes

    root, version = tmp_path / "trainval", "v1.0-trainval"
    shutil.copytree(dataset / VERSION, root / version)
    shutil.copytree(dataset / "maps", root / "maps")
    rename = dict(zip(SCENES, create_splits_scenes()["val"][:2], strict=True))
    scenes = json.loads((root / version / "scene.json").read_text())
    for s in scenes:
        s["name"] = rename.get(s["name"], s["name"])
    (root / version / "scene.json").write_text(json.dumps(scenes))
    rng = np.random.default_rng(7)
    results = {tok: _random_boxes(rng, tok, gt.ego_translation[s], 60, score_levels=10)
               for s, tok in enumerate(gt.sample_tokens)}  # fmt: skip
    path = tmp_path / "results.json"
    path.write_text(json.dumps(_results_json(results)))
    nusc = NuScenes(version=version, dataroot=str(root), verbose=False)
    theirs, _ = _devkit_eval(root, nusc, path, tmp_path / "devkit", split="val")
    ours = evaluate_files(path, root, version, "val").serialize()
    ours.pop("meta"), ours.pop("eval_time"), theirs.pop("eval_time")
    _assert_same(ours, theirs)
    val_gt = load_ground_truth(root, version, "val")
    assert val_gt.predefined and val_gt.sample_tokens == gt.sample_tokens
    with pytest.raises(NuScenesEvalError, match="exactly"):
        evaluate(val_gt, results_from_json(_results_json(dict(results, extra=[]))))
    with pytest.raises(NuScenesEvalError, match="'trainval'"):
        load_ground_truth(dataset, VERSION, "val")


def test_devkit_splits_need_the_devkit(dataset, monkeypatch):
    monkeypatch.setitem(sys.modules, "nuscenes.utils.splits", None)  # import fails
    with pytest.raises(DataFormatError, match="nuscenes-devkit"):
        scene_names_of_split(dataset, "v1.0-trainval", "train_detect")


def test_custom_split_ignores_extra_samples(dataset, gt):
    rng = np.random.default_rng(4)
    results = {tok: _random_boxes(rng, tok, gt.ego_translation[s], 20) for s, tok in enumerate(gt.sample_tokens)}
    one = load_ground_truth(dataset, VERSION, "one")
    a = evaluate(one, results_from_json(_results_json(results))).serialize()
    b = evaluate(one, results_from_json(_results_json({t: results[t] for t in one.sample_tokens}))).serialize()
    a.pop("eval_time"), b.pop("eval_time")
    assert json.dumps(a) == json.dumps(b)


# --- results JSON ---------------------------------------------------------------------------------


def test_results_round_trip(tmp_path, gt):
    rng = np.random.default_rng(5)
    results = {tok: _random_boxes(rng, tok, gt.ego_translation[s], 7) for s, tok in enumerate(gt.sample_tokens)}
    results[gt.sample_tokens[0]][0]["velocity"] = [float("nan"), float("nan")]
    results[gt.sample_tokens[1]] = []
    r = results_from_json(_results_json(results))
    path = write_results(tmp_path / "r.json", r)
    back = read_results(path)
    assert back.meta == r.meta
    assert back.boxes.sample_tokens == r.boxes.sample_tokens
    np.testing.assert_array_equal(back.boxes.offsets, r.boxes.offsets)
    for f in ("translation", "size", "rotation", "velocity", "scores", "names", "attributes"):
        np.testing.assert_array_equal(getattr(back.boxes, f), getattr(r.boxes, f))
    assert json.loads(path.read_text())["results"][gt.sample_tokens[1]] == []


def test_results_from_lidar_boxes_match_annotations(dataset, gt):
    """Ground-truth boxes read in the LIDAR_TOP frame and written back land on the annotations."""
    reader = NuScenesReader(dataset, VERSION)
    tok = gt.sample_tokens[1]
    sample = reader.sample(tok, nsweeps=1)
    keep = [i for i, n in enumerate(sample.names) if n]
    boxes = np.asarray(sample.boxes, np.float64)[keep]
    names = [sample.names[i] for i in keep]
    res = results_from_lidar_boxes([(tok, boxes, np.linspace(1, 0.5, len(keep)), names, sample.lidar_to_global)])
    b = res.boxes
    s = gt.sample_tokens.index(tok)
    ref = slice(int(gt.boxes.offsets[s]), int(gt.boxes.offsets[s + 1]))
    np.testing.assert_allclose(b.translation, gt.boxes.translation[ref], atol=1e-4)
    np.testing.assert_allclose(b.size, gt.boxes.size[ref], atol=1e-5)
    yaw = lambda q: np.arctan2(2 * (q[:, 0] * q[:, 3] + q[:, 1] * q[:, 2]), 1 - 2 * (q[:, 2] ** 2 + q[:, 3] ** 2))  # noqa: E731
    np.testing.assert_allclose(np.cos(yaw(b.rotation) - yaw(gt.boxes.rotation[ref])), 1.0, atol=1e-9)
    finite = np.isfinite(gt.boxes.velocity[ref]).all(axis=1)
    np.testing.assert_allclose(b.velocity[finite], gt.boxes.velocity[ref][finite], atol=1e-4)
    for name, v, attr in zip(b.names, b.velocity, b.attributes, strict=True):
        assert attr == default_attribute(str(name), v)


def test_default_attribute_rule():
    assert default_attribute("car", [1.0, 0.0]) == "vehicle.moving"
    assert default_attribute("car", [0.1, 0.1]) == "vehicle.parked"
    assert default_attribute("bus", [0.0, 0.0]) == "vehicle.stopped"
    assert default_attribute("pedestrian", [0.0, 0.5]) == "pedestrian.moving"
    assert default_attribute("pedestrian", [float("nan")] * 2) == "pedestrian.standing"
    assert default_attribute("bicycle", [0.3, 0.0]) == "cycle.with_rider"
    assert default_attribute("motorcycle", [0.0, 0.0]) == "cycle.without_rider"
    assert default_attribute("barrier", [5.0, 0.0]) == "" == default_attribute("traffic_cone", [0, 0])
    assert all(default_attribute(n, [0, 0]) in ATTRIBUTE_NAMES + ("",) for n in DETECTION_NAMES)


# --- crash traps ----------------------------------------------------------------------------------


def _one_box(tok, **kw):
    box = {"sample_token": tok, "translation": [1.0, 2.0, 0.5], "size": [2.0, 4.0, 1.5],
           "rotation": [1.0, 0.0, 0.0, 0.0], "velocity": [0.0, 0.0], "detection_name": "car",
           "detection_score": 0.5, "attribute_name": "vehicle.parked"}  # fmt: skip
    box.update(kw)
    return box


def test_crash_traps_raise_clear_errors(dataset, gt):
    toks = gt.sample_tokens
    empty = {t: [] for t in toks}
    with pytest.raises(NuScenesEvalError, match="no box"):
        evaluate(gt, results_from_json(_results_json(empty)))
    with pytest.raises(NuScenesEvalError, match="more than 500"):
        evaluate(gt, results_from_json(_results_json(dict(empty, **{toks[0]: [_one_box(toks[0])] * 501}))))
    with pytest.raises(NuScenesEvalError, match="no entry"):
        evaluate(gt, results_from_json(_results_json({toks[0]: [_one_box(toks[0])]})))
    for bad, match in (
        ({"detection_name": "vehicle.car"}, "detection names"),
        ({"attribute_name": "moving"}, "attribute names"),
        ({"translation": [float("nan"), 0.0, 0.0]}, "non-finite translation"),
        ({"size": [1.0, float("inf"), 1.0]}, "non-finite size"),
        ({"rotation": [0.0, 0.0, 0.0, 0.0]}, "zero rotation"),
        ({"detection_score": float("nan")}, "detection_score"),
        ({"velocity": [0.0]}, "velocity"),
        ({"sample_token": "other"}, "sample_token"),
    ):
        with pytest.raises(NuScenesEvalError, match=match):
            results_from_json(_results_json({toks[0]: [_one_box(toks[0], **bad)]}))
    with pytest.raises(NuScenesEvalError, match="'results'"):
        results_from_json({"meta": {}})
    with pytest.raises(NuScenesEvalError, match="'meta'"):
        results_from_json({"results": {}})
    # A matched box with a zero size (the devkit's scale-IoU assert).
    b = gt.boxes
    i = int(np.flatnonzero((b.names == "car") & (b.num_pts > 0))[0])
    s = int(b.sample_index[i])
    bad = _one_box(toks[s], translation=b.translation[i].tolist(), size=[0.0, 4.0, 1.5])
    with pytest.raises(NuScenesEvalError, match="size"):
        evaluate(gt, results_from_json(_results_json(dict(empty, **{toks[s]: [bad]}))))


def test_ground_truth_traps(dataset, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(dataset / VERSION, root / VERSION)
    shutil.copytree(dataset / "maps", root / "maps")
    anns = _load(root, "sample_annotation")
    attrs = _load(root, "attribute")
    anns[0]["attribute_tokens"] = [attrs[0]["token"], attrs[1]["token"]]
    _save(root, "sample_annotation", anns)
    with pytest.raises(DataFormatError, match="at most one"):  # the table reader refuses it already
        load_ground_truth(root, VERSION, SPLIT)
    with pytest.raises(NuScenesEvalError, match="mini"):
        load_ground_truth(dataset, "v1.0-trainval", "mini_val")


# --- command line ---------------------------------------------------------------------------------


def test_cli_writes_summary(dataset, gt, tmp_path, capsys):
    rng = np.random.default_rng(6)
    results = {tok: _random_boxes(rng, tok, gt.ego_translation[s], 30) for s, tok in enumerate(gt.sample_tokens)}
    path = tmp_path / "sub" / "results.json"
    path.parent.mkdir()
    path.write_text(json.dumps(_results_json(results)))
    parser = argparse.ArgumentParser()
    nuscenes_cli.add_arguments(parser)
    args = parser.parse_args([str(path), "--dataroot", str(dataset), "--version", VERSION, "--split", SPLIT])
    assert nuscenes_cli.run(args) == 0
    out = capsys.readouterr().out
    assert "mAP:" in out and "NDS:" in out and "Per-class results:" in out and "traffic_cone" in out
    summary = json.loads((path.parent / "metrics_summary.json").read_text())
    expected = json.loads(json.dumps(evaluate(gt, results_from_json(_results_json(results))).serialize()))
    summary.pop("eval_time"), expected.pop("eval_time")
    assert summary == expected
    assert set(summary["label_aps"]["car"]) == {"0.5", "1.0", "2.0", "4.0"}
    args = parser.parse_args([str(path), "--dataroot", str(dataset), "--version", VERSION, "--split", "nope",
                              "--output-dir", str(tmp_path / "o")])  # fmt: skip
    # Bad input raises an InputError, reported by the tool's error boundary (one line, exit 2).
    assert run_tool(lambda _: nuscenes_cli.run(args), [], prog="eval.py") == 2
    err = capsys.readouterr().err
    assert "eval.py: error: " in err and "nope" in err and "Traceback" not in err


def test_eval_tool_nuscenes_subcommand(dataset, gt, tmp_path, capsys):
    """``tools/eval.py nuscenes RESULTS --dataroot --version --split [--output-dir]`` itself."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "eval_tool", Path(__file__).resolve().parents[2] / "tools" / "eval.py"
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    rng = np.random.default_rng(8)
    results = {tok: _random_boxes(rng, tok, gt.ego_translation[s], 10) for s, tok in enumerate(gt.sample_tokens)}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(_results_json(results)))
    common = [str(path), "--dataroot", str(dataset), "--version", VERSION, "--split", SPLIT]
    assert tool.main(["nuscenes", *common]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "metrics_summary.json").read_text())
    assert f"NDS: {summary['nd_score']:.4f}" in out and f"mAP: {summary['mean_ap']:.4f}" in out
    assert tool.main(["nuscenes", *common, "--output-dir", str(tmp_path / "out")]) == 0
    again = json.loads((tmp_path / "out" / "metrics_summary.json").read_text())
    summary.pop("eval_time"), again.pop("eval_time")
    assert again == summary


def test_ragged_box_lists_are_refused_even_when_their_lengths_add_up():
    box = {"sample_token": "s", "translation": [0.0, 0.0, 0.0], "size": [1.0, 1.0, 1.0], "rotation": [1.0, 0, 0, 0],
           "velocity": [0.0, 0.0], "detection_name": "car", "detection_score": 0.5, "attribute_name": ""}  # fmt: skip
    long, short = dict(box, translation=[0.0, 0.0, 0.0, 0.0]), dict(box, translation=[0.0, 0.0])
    data = {"meta": {}, "results": {"s": [long, short]}}  # 4 + 2 translation entries: 3 per box on average
    with pytest.raises(NuScenesEvalError, match="translation"):
        results_from_json(data)
    assert results_from_json({"meta": {}, "results": {"s": [box, box]}}).boxes.translation.shape == (2, 3)
