"""Waymo conversion into the layout: contents, resume, interruption, bad input, path safety."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pointformer.data import convert
from pointformer.data.convert import sequences
from pointformer.data.formats import DataFormatError, waymo_v1, waymo_v2
from pointformer.data.layout import (
    FRAME_SCHEMA,
    GT_SCHEMA,
    load_gt_points,
    load_points,
    read_frame_table,
    read_gt_database,
    read_meta,
)

_spec = importlib.util.spec_from_file_location("tiny_waymo", Path(__file__).with_name("tiny_waymo.py"))
tiny_waymo_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny_waymo_module)

SEQS = tiny_waymo_module.TINY_SEQUENCES
CLASS = {1: "Vehicle", 2: "Pedestrian", 3: "Sign", 4: "Cyclist"}


def _convert(root, out, **kw):
    kw.setdefault("workers", 0)
    kw.setdefault("progress", False)
    return convert.convert_waymo(root, out, **kw)


@pytest.fixture(scope="module")
def tiny_waymo(tmp_path_factory) -> dict[str, Path]:
    """``{"v1": root, "v2": root}``: the same tiny sequences in both Waymo formats."""
    return tiny_waymo_module.write_tiny_waymo(tmp_path_factory.mktemp("tiny_waymo"))


@pytest.fixture(scope="module")
def converted_v1(tiny_waymo, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out_v1")
    summary = _convert(tiny_waymo["v1"], out, sweeps=2)
    assert summary.converted == 3 and summary.resumed == 0 and not summary.failed
    assert summary.frames == summary.frames_converted == 7
    return out


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def _inside(points: np.ndarray, box: np.ndarray) -> np.ndarray:
    d = points[:, :3].astype(np.float64) - box[:3]
    c, s = np.cos(box[6]), np.sin(box[6])
    lx, ly = d[:, 0] * c + d[:, 1] * s, -d[:, 0] * s + d[:, 1] * c
    return (np.abs(lx) <= box[3] / 2) & (np.abs(ly) <= box[4] / 2) & (np.abs(d[:, 2]) <= box[5] / 2)


def _v1_frames(root: Path, split: str, context: str):
    return list(waymo_v1.read_frames(root / split / f"segment-{context}_with_camera_labels.tfrecord"))


def test_meta(converted_v1):
    meta = read_meta(converted_v1)
    assert meta["dataset"] == "waymo" and meta["source_format"] == "v1"
    assert meta["point_features"] == ["x", "y", "z", "intensity", "elongation"]
    assert meta["class_names"] == ["Vehicle", "Pedestrian", "Sign", "Cyclist"]
    assert meta["splits"]["training"]["frames"] == 5 and meta["splits"]["validation"]["frames"] == 2
    assert meta["splits"]["training"]["gt_database"] and not meta["splits"]["validation"]["gt_database"]
    assert meta["splits"]["training"]["sweeps"] == 2
    assert "pointformer" in meta["created_by"]


def test_points_and_table(tiny_waymo, converted_v1):
    for split in ("training", "validation"):
        table = pq.read_table(converted_v1 / f"frames_{split}.parquet")
        assert table.schema.remove_metadata().equals(FRAME_SCHEMA)
        records = read_frame_table(converted_v1, split)
        expected = [(ctx, n) for s, ctx, n in SEQS if s == split]
        assert len(records) == sum(n for _, n in expected)
        row = 0
        for ctx, _ in expected:
            for i, frame in enumerate(_v1_frames(tiny_waymo["v1"], split, ctx)):
                rec = records[row]
                assert (rec.sequence, rec.frame_index, rec.frame_id) == (ctx, i, f"{ctx}_{i:04d}")
                assert rec.points_path == f"points/{ctx}/{i:04d}.npy"
                points = load_points(converted_v1, rec, num_features=5)
                keep = frame.points[:, 5] == -1
                assert 0 < keep.sum() < len(keep)  # NLZ points exist and are dropped
                np.testing.assert_array_equal(points, frame.points[keep, :5])
                assert rec.num_points == len(points)
                assert rec.timestamp_micros == frame.timestamp_micros
                np.testing.assert_array_equal(rec.pose, frame.pose)
                known = frame.labels.types != 0
                np.testing.assert_array_equal(rec.boxes[:, :7], frame.labels.boxes[known])
                velocity = frame.pose[:3, :3].T @ frame.labels.speed[known].T.astype(np.float64)
                np.testing.assert_allclose(rec.boxes[:, 7:], velocity[:2].T, rtol=1e-5, atol=1e-6)
                assert rec.names.tolist() == [CLASS[t] for t in frame.labels.types[known]]
                np.testing.assert_array_equal(rec.difficulty, frame.labels.detection_difficulty[known])
                np.testing.assert_array_equal(rec.tracking_difficulty, frame.labels.tracking_difficulty[known])
                np.testing.assert_array_equal(rec.num_points_in_box, frame.labels.num_lidar_points_in_box[known])
                assert rec.object_ids.tolist() == frame.labels.ids[known].tolist()
                np.testing.assert_array_equal(rec.speed_global, frame.labels.speed[known])
                np.testing.assert_array_equal(rec.accel_global, frame.labels.acceleration[known])
                # Sweeps: the previous (up to 2) frames of the sequence, most recent first.
                assert [s.frame_id for s in rec.sweeps] == [f"{ctx}_{j:04d}" for j in range(i - 1, max(i - 3, -1), -1)]
                if i >= 1:
                    prev = records[row - 1]
                    assert rec.sweeps[0].points_path == prev.points_path
                    np.testing.assert_array_equal(rec.sweeps[0].pose, prev.pose)
                    assert rec.sweeps[0].timestamp_micros == prev.timestamp_micros
                    np.testing.assert_array_equal(
                        load_points(converted_v1, rec.sweeps[0]), load_points(converted_v1, prev)
                    )
                row += 1


def test_gt_database(converted_v1):
    assert not (converted_v1 / "gt_database_validation.parquet").exists()
    table = pq.read_table(converted_v1 / "gt_database_training.parquet")
    assert table.schema.remove_metadata().equals(GT_SCHEMA)
    db = read_gt_database(converted_v1, "training")
    frames = read_frame_table(converted_v1, "training")
    by_id = {frames.frame_id[i]: frames[i] for i in range(len(frames))}
    expected = []
    for fid, rec in by_id.items():
        points = load_points(converted_v1, rec)
        for k, box in enumerate(rec.boxes):
            inside = _inside(points, box)
            if inside.any():
                expected.append((fid, k, points[inside], box))
    assert len(expected) == len(db) > 0
    assert any(
        rec.boxes.shape[0] > 0 and not _inside(load_points(converted_v1, rec), rec.boxes[-1]).any()
        for rec in by_id.values()
    )  # the far box has no points and no object
    found = {(db.frame_id[j], int(db.box_index[j])): j for j in range(len(db))}
    for fid, k, obj_points, box in expected:
        j = found[(fid, k)]
        rec = by_id[fid]
        assert db.path[j] == f"gt_database/training/{rec.sequence}_{rec.frame_index:04d}_{rec.names[k]}_{k}.npy"
        assert db.name[j] == rec.names[k] and db.object_id[j] == rec.object_ids[k]
        np.testing.assert_array_equal(db.box[j], box)
        assert db.difficulty[j] == rec.difficulty[k] and db.num_points[j] == len(obj_points)
        stored = load_gt_points(converted_v1, db, j)
        shifted = obj_points.copy()
        shifted[:, :3] -= box[:3]
        np.testing.assert_array_equal(stored, shifted)


def test_v2_in_workers_matches_v1(tiny_waymo, converted_v1, tmp_path):
    summary = _convert(tiny_waymo["v2"], tmp_path, format="v2", workers=2, sweeps=2)
    assert summary.converted == 3 and summary.frames == 7
    assert read_meta(tmp_path)["source_format"] == "v2"
    for split in ("training", "validation"):
        a, b = read_frame_table(converted_v1, split), read_frame_table(tmp_path, split)
        assert a.frame_id == b.frame_id and a.points_path == b.points_path
        for i in range(len(a)):
            np.testing.assert_array_equal(load_points(converted_v1, a[i]), load_points(tmp_path, b[i]))
            np.testing.assert_array_equal(a[i].boxes, b[i].boxes)
    assert pq.read_table(tmp_path / "gt_database_training.parquet").equals(
        pq.read_table(converted_v1 / "gt_database_training.parquet")
    )


def test_resume_touches_nothing(tiny_waymo, converted_v1):
    before = _snapshot(converted_v1)
    summary = _convert(tiny_waymo["v1"], converted_v1, sweeps=2)
    assert summary.resumed == 3 and summary.converted == 0 and summary.frames_converted == 0
    assert summary.frames == 7
    assert _snapshot(converted_v1) == before


def test_resume_other_sweeps_rewrites_tables_only(tiny_waymo, converted_v1, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(converted_v1, out)
    before = _snapshot(out)
    summary = _convert(tiny_waymo["v1"], out, sweeps=1)
    assert summary.resumed == 3
    after = _snapshot(out)
    changed = {k for k in before if before[k] != after[k]}
    # Validation's frames have at most one previous frame: its table is unchanged.
    assert changed == {"frames_training.parquet", "meta.json"}
    assert all(len(read_frame_table(out, "training")[i].sweeps) <= 1 for i in range(5))


def test_interrupted_run_leaves_no_partial_files(tiny_waymo, converted_v1, tmp_path, monkeypatch):
    victim = SEQS[1][1]
    real_save = sequences._save_npy

    def failing_save(path, array, **kw):
        if path.name == "0001.npy" and path.parent.name == victim:
            raise RuntimeError("simulated crash")
        real_save(path, array, **kw)

    monkeypatch.setattr(sequences, "_save_npy", failing_save)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _convert(tiny_waymo["v1"], tmp_path, sweeps=2)
    assert not list(tmp_path.rglob("*.tmp"))
    assert not (tmp_path / "points" / victim).exists()
    assert not list((tmp_path / "gt_database" / "training").glob(f"{victim}_*"))
    assert not (tmp_path / "parts" / "training" / f"{victim}.frames.parquet").exists()
    assert not (tmp_path / "meta.json").exists() and not (tmp_path / "frames_training.parquet").exists()
    first = SEQS[0][1]
    assert (tmp_path / "parts" / "training" / f"{first}.frames.parquet").is_file()

    monkeypatch.setattr(sequences, "_save_npy", real_save)
    summary = _convert(tiny_waymo["v1"], tmp_path, sweeps=2)
    assert summary.resumed == 1 and summary.converted == 2
    a, b = _snapshot(converted_v1), _snapshot(tmp_path)
    assert a.keys() == b.keys()
    assert all(a[k][0] == b[k][0] for k in a)


def test_load_points_refuses_escaping_paths(converted_v1, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(converted_v1, out)
    (tmp_path / "evil.npy").write_bytes((out / "points" / SEQS[0][1] / "0000.npy").read_bytes())
    path = out / "frames_training.parquet"
    table = pq.read_table(path)
    for bad in ("../evil.npy", str(tmp_path / "evil.npy")):
        paths = table.column("points_path").to_pylist()
        paths[1] = bad
        pq.write_table(
            table.set_column(table.schema.get_field_index("points_path"), "points_path", pa.array(paths)), path
        )
        rec = read_frame_table(out, "training")[1]
        with pytest.raises(DataFormatError, match=r"frames_training\.parquet: row 1.*escapes the dataset root"):
            load_points(out, rec)
    (out / "points" / "link").symlink_to(tmp_path)
    rec = read_frame_table(out, "training")[1]
    with pytest.raises(DataFormatError, match="escapes"):
        load_points(out, type(rec)(**{**rec.__dict__, "points_path": "points/link/evil.npy"}))


def test_corrupt_tfrecord(tiny_waymo, tmp_path):
    root = tmp_path / "in"
    shutil.copytree(tiny_waymo["v1"], root)
    bad = root / "training" / f"segment-{SEQS[1][1]}_with_camera_labels.tfrecord"
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    out = tmp_path / "out"
    with pytest.raises(DataFormatError, match=str(bad.name)):
        _convert(root, out, splits=["training"])
    assert not (out / "points" / SEQS[1][1]).exists()
    assert not (out / "parts" / "training" / f"{SEQS[1][1]}.frames.parquet").exists()
    assert not list(out.rglob("*.tmp"))

    with pytest.warns(UserWarning, match="skipping sequence"):
        summary = _convert(root, out, splits=["training"], on_error="skip")
    assert [s for s, _ in summary.failed] == [SEQS[1][1]] and bad.name in summary.failed[0][1]
    assert summary.resumed == 1 and summary.frames == SEQS[0][2]
    assert "FAILED" in str(summary)
    assert set(read_frame_table(out, "training").sequence) == {SEQS[0][1]}


def test_corrupt_parquet(tiny_waymo, tmp_path):
    root = tmp_path / "in"
    shutil.copytree(tiny_waymo["v2"], root)
    bad = waymo_v2.component_path(root, "validation", "lidar", SEQS[2][1])
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(DataFormatError, match="lidar"):
        _convert(root, tmp_path / "out", format="v2", splits=["validation"])
    assert not list((tmp_path / "out").rglob("*.npy"))


def test_openpcdet_layout(tiny_waymo, converted_v1, tmp_path):
    root = tmp_path / "in"
    (root / "raw_data").mkdir(parents=True)
    (root / "ImageSets").mkdir()
    for split, alias in (("training", "train"), ("validation", "val")):
        names = []
        for f in sorted((tiny_waymo["v1"] / split).glob("*.tfrecord")):
            shutil.copy(f, root / "raw_data" / f.name)
            names.append(f.name.replace("_with_camera_labels", ""))  # OpenPCDet accepts either name
        (root / "ImageSets" / f"{alias}.txt").write_text("\n".join(names) + "\n")
    sources = convert.discover_waymo(root, ["training", "validation"])
    assert [s.sequence for s in sources] == [ctx for _, ctx, _ in SEQS]
    _convert(root, tmp_path / "out", sweeps=2)
    assert pq.read_table(tmp_path / "out" / "frames_training.parquet").equals(
        pq.read_table(converted_v1 / "frames_training.parquet")
    )
    with pytest.raises(FileNotFoundError, match="testing"):
        convert.discover_waymo(root, ["testing"])


def test_other_dataset_in_same_out_is_refused(tiny_waymo, converted_v1, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(converted_v1, out)
    meta = json.loads((out / "meta.json").read_text())
    meta["dataset"] = "nuscenes"
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="dataset"):
        _convert(tiny_waymo["v1"], out)
