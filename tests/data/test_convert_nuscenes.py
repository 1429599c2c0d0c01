"""nuScenes conversion into the layout: rows, points, boxes, sweeps by pose, gt database, resume, CLI."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pointformer.data import convert
from pointformer.data.convert.nuscenes import convert_nuscenes
from pointformer.data.formats.nuscenes import NuScenesReader, read_pcd_bin
from pointformer.data.formats.nuscenes_tables import DETECTION_NAMES
from pointformer.data.layout import (
    FRAME_SCHEMA,
    load_gt_points,
    load_points,
    read_frame_columns,
    read_frame_table,
    read_gt_database,
    read_meta,
)
from pointformer.utils.cli import run_tool

SCENES = ("scene-0103", "scene-0916")  # the devkit's mini_val
SPLITS = {"a": [SCENES[0]], "b": [SCENES[1]]}
KEYFRAMES = 3  # 21 frames at 20 Hz: keyframes at frames 0, 10, 20


@pytest.fixture(scope="module")
def dataroot(tmp_path_factory) -> Path:
    from pointformer.data.formats.nuscenes_writer import write_nuscenes
    from pointformer.data.synthetic import generate_sequence, nuscenes_lidars

    root = tmp_path_factory.mktemp("nuscenes")
    spec = dataclasses.replace(nuscenes_lidars()[0], width=240)
    seqs = [generate_sequence(seed, 21, "nuscenes", lidars=(spec,), density=0.3) for seed in (3, 4)]
    write_nuscenes(root, seqs, scene_names=SCENES, splits=SPLITS)
    return root


@pytest.fixture(scope="module")
def reader(dataroot) -> NuScenesReader:
    return NuScenesReader(dataroot, "v1.0-mini")


@pytest.fixture(scope="module")
def converted(dataroot, tmp_path_factory) -> Path:
    """Custom splits from splits.json; 10 listed sweeps: the last keyframe's reach the one before."""
    out = tmp_path_factory.mktemp("out")
    summary = convert_nuscenes(dataroot, out, splits=("a", "b"), sweeps=10, gt_database_splits=("a",), progress=False)
    assert summary.converted == 2 and summary.frames == summary.frames_converted == 2 * KEYFRAMES
    return out


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def _accumulate(root: Path, rec, min_distance: float = 0.0) -> np.ndarray:
    """The frame's points and its sweeps' moved by ``inv(pose) @ sweep pose``, with the time lag
    (as a dataset would), and the reader's min-distance filter in each sweep's own frame."""
    chunks = []
    for pts, pose, stamp in [(load_points(root, rec), rec.pose, rec.timestamp_micros)] + [
        (load_points(root, s), s.pose, s.timestamp_micros) for s in rec.sweeps
    ]:
        pts = pts[~((np.abs(pts[:, 0]) < min_distance) & (np.abs(pts[:, 1]) < min_distance))]
        m = np.linalg.inv(rec.pose) @ pose
        xyz = pts[:, :3].astype(np.float64) @ m[:3, :3].T + m[:3, 3]
        lag = np.full((len(pts), 1), 1e-6 * (rec.timestamp_micros - stamp))
        chunks.append(np.concatenate([xyz, pts[:, 3:4], lag], axis=1))
    return np.concatenate(chunks)


def _row_id(records, sample_data_token: str) -> str:
    """A sweep's id: its sample_data token, or the frame id of the keyframe row it is."""
    lidar = read_frame_columns(records.table.parent, records.table.stem.removeprefix("frames_"), ["lidar_token"])
    tokens = lidar["lidar_token"]
    return records.frame_id[tokens.index(sample_data_token)] if sample_data_token in tokens else sample_data_token


def test_meta_and_schema(converted):
    meta = read_meta(converted)
    assert meta["dataset"] == "nuscenes" and meta["version"] == meta["source_format"] == "v1.0-mini"
    assert meta["point_features"] == ["x", "y", "z", "intensity"]
    assert meta["class_names"] == list(DETECTION_NAMES) and len(DETECTION_NAMES) == 10
    assert meta["splits"]["a"]["sweeps"] == 10 and meta["splits"]["a"]["gt_database"]
    assert not meta["splits"]["b"]["gt_database"]
    schema = pq.read_schema(converted / "frames_a.parquet").remove_metadata()
    assert schema.names[: len(FRAME_SCHEMA)] == FRAME_SCHEMA.names
    assert {"sample_token", "num_radar_pts", "attribute_names", "lidar_token"} <= set(schema.names)


def test_rows_points_boxes(reader, converted):
    for split, scenes in SPLITS.items():
        records = read_frame_table(converted, split)
        extra = read_frame_columns(
            converted, split, ["sample_token", "lidar_token", "num_radar_pts", "attribute_names", "category_names"]
        )
        tokens = reader.sample_tokens(split)
        assert len(records) == len(tokens) == KEYFRAMES * len(scenes)
        for i, token in enumerate(tokens):
            rec, sample = records[i], reader.sample(token, nsweeps=1, min_distance=0.0)
            assert extra["sample_token"][i] == token and extra["lidar_token"][i] == sample.lidar_token
            assert (rec.sequence, rec.frame_index) == (sample.scene_name, i % KEYFRAMES)
            assert rec.frame_id == f"{sample.scene_name}_{i % KEYFRAMES:04d}"
            points = load_points(converted, rec, num_features=4)
            np.testing.assert_array_equal(points, read_pcd_bin(sample.lidar_path)[:, :4])
            np.testing.assert_allclose(points, sample.points[:, :4], atol=1e-5)
            np.testing.assert_allclose(rec.pose, sample.lidar_to_global, atol=1e-12)
            keep = np.asarray([n != "" for n in sample.names])
            assert keep.sum() > 0  # (boxes without a detection class, if any, are dropped)
            np.testing.assert_array_equal(rec.boxes, sample.boxes[keep])
            assert rec.names.tolist() == [n for n, k in zip(sample.names, keep, strict=True) if k]
            assert rec.object_ids.tolist() == [t for t, k in zip(sample.instance_tokens, keep, strict=True) if k]
            np.testing.assert_array_equal(rec.num_points_in_box, sample.num_lidar_pts[keep])
            np.testing.assert_array_equal(rec.speed_global, sample.velocity_global[keep].astype(np.float32))
            assert extra["num_radar_pts"][i] == sample.num_radar_pts[keep].tolist()
            assert extra["attribute_names"][i] == [a for a, k in zip(sample.attribute_names, keep, strict=True) if k]
            assert extra["category_names"][i] == [c for c, k in zip(sample.category_names, keep, strict=True) if k]


@pytest.mark.parametrize("min_distance", [0.0, 1.0])
def test_sweeps_reproduce_the_readers_accumulation(reader, converted, min_distance):
    for split in SPLITS:
        records = read_frame_table(converted, split)
        for i, token in enumerate(reader.sample_tokens(split)):
            rec = records[i]
            expected = reader.sample(token, nsweeps=11, min_distance=min_distance)
            # 0, 9, then 10 (the last with the previous keyframe); the reader's order, keyframe first.
            assert [rec.frame_id] + [s.frame_id for s in rec.sweeps] == [
                rec.frame_id if t == expected.lidar_token else _row_id(records, t) for t in expected.sweep_tokens
            ]
            got = _accumulate(converted, rec, min_distance)
            assert got.shape == expected.points.shape
            # Same order: the keyframe, then the sweeps along prev, each file's points in file order.
            np.testing.assert_allclose(got, expected.points, atol=1e-4)
        # The last keyframe's sweeps reach the previous keyframe: its row and points file are reused.
        last = records[KEYFRAMES - 1]
        assert last.sweeps[-1].frame_id == records[KEYFRAMES - 2].frame_id
        assert last.sweeps[-1].points_path == records[KEYFRAMES - 2].points_path
        assert all(s.points_path.startswith(f"points/{last.sequence}/sweeps/") for s in last.sweeps[:-1])


def test_gt_database(converted):
    db = read_gt_database(converted, "a")
    assert len(db) > 0 and set(db.frame_id) <= set(read_frame_table(converted, "a").frame_id)
    assert not (converted / "gt_database_b.parquet").exists()
    records = read_frame_table(converted, "a")
    by_id = {r: records[i] for i, r in enumerate(records.frame_id)}
    for k in range(len(db)):
        rec = by_id[db.frame_id[k]]
        assert db.object_id[k] == rec.object_ids[db.box_index[k]] and db.name[k] == rec.names[db.box_index[k]]
        np.testing.assert_array_equal(db.box[k], rec.boxes[db.box_index[k]])
        pts = load_gt_points(converted, db, k)
        assert pts.shape == (db.num_points[k], 4)
        half = np.linalg.norm(db.box[k, 3:6]) / 2 + 1e-3
        assert np.all(np.linalg.norm(pts[:, :3], axis=1) <= half)


def test_resume_writes_nothing(dataroot, converted):
    before = _snapshot(converted)
    summary = convert_nuscenes(
        dataroot, converted, splits=("a", "b"), sweeps=10, gt_database_splits=("a",), progress=False
    )
    assert summary.resumed == 2 and summary.converted == 0 and summary.frames == 2 * KEYFRAMES
    assert _snapshot(converted) == before


def test_cli_predefined_split_default_sweeps(dataroot, reader, tmp_path, capsys):
    argv = ["--dataset", "nuscenes", "--root", str(dataroot), "--out", str(tmp_path), "--version", "v1.0-mini"]
    argv += "--splits mini_val --workers 0 --no-progress".split()
    assert convert.main(argv) == 0
    out = capsys.readouterr().out
    assert "sequences: 2 (2 converted, 0 resumed, 0 failed)" in out and f"frames: {2 * KEYFRAMES}" in out
    assert read_meta(tmp_path)["splits"]["mini_val"]["sweeps"] == 9
    records = read_frame_table(tmp_path, "mini_val")
    # Default 9 listed sweeps = the reader's (and OpenPCDet's) 10 with the keyframe, min distance 1 m.
    for i, token in enumerate(reader.sample_tokens("mini_val")):
        expected = reader.sample(token, nsweeps=10).points.astype(np.float64)
        got = _accumulate(tmp_path, records[i], min_distance=1.0)
        np.testing.assert_allclose(got, expected, atol=1e-4)
    assert convert.main(argv) == 0
    assert "(0 converted, 2 resumed, 0 failed)" in capsys.readouterr().out


def test_cli_errors(dataroot, tmp_path, capsys):
    argv = ["--dataset", "nuscenes", "--root", str(dataroot), "--out", str(tmp_path), "--no-progress"]
    assert run_tool(convert.main, argv + ["--splits", "nope"]) == 2
    assert "no split 'nope'" in capsys.readouterr().err
