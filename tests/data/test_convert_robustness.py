"""Converter robustness (issue 18): non-finite points dropped with one warning per input file,
empty keyframes in the summary, resume that verifies each kept file and redoes bad ones, stale
temporary files removed at the next start."""

from __future__ import annotations

import dataclasses
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from pointformer.data.convert import LabelledFrame, SequenceSource, convert_sequences
from pointformer.data.convert.nuscenes import convert_nuscenes
from pointformer.data.layout import read_frame_table

# --- an adapter with frames that a test chooses -------------------------------------------------

FRAMES: dict[str, list[np.ndarray]] = {}  # sequence -> points of each frame (in-process conversion only)


def _frame(points: np.ndarray, index: int) -> LabelledFrame:
    return LabelledFrame(
        timestamp_micros=index,
        pose=np.eye(4),
        points=points,
        boxes=np.zeros((0, 9), np.float32),
        names=np.zeros(0, np.str_),
        difficulty=np.zeros(0, np.int8),
        tracking_difficulty=np.zeros(0, np.int8),
        num_points_in_box=np.zeros(0, np.int32),
        object_ids=np.zeros(0, np.str_),
        speed_global=np.zeros((0, 3), np.float32),
        accel_global=np.zeros((0, 3), np.float32),
        source=f"input/{index}.bin",
    )


def read_chosen(source: SequenceSource):
    for i, points in enumerate(FRAMES[source.sequence]):
        yield _frame(points, i)


def _convert(out: Path, sequences: dict[str, list[np.ndarray]]):
    FRAMES.clear()
    FRAMES.update(sequences)
    sources = [SequenceSource("training", s, f"{__name__}:read_chosen", __file__, fingerprint=s) for s in sequences]
    return convert_sequences(sources, out, dataset="chosen", source_format="test", point_features="xyzie",
                             class_names=[], workers=0, progress=False)  # fmt: skip


def _points(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-10, 10, (n, 5)).astype(np.float32)


def test_non_finite_points_are_dropped_with_one_warning_per_file(tmp_path):
    bad = _points(50)
    bad[3, 0] = np.nan
    bad[7, 2] = np.inf
    bad[9, 4] = -np.inf
    with pytest.warns(UserWarning) as caught:
        summary = _convert(tmp_path, {"a": [_points(20), bad, np.zeros((0, 5), np.float32)]})
    messages = [str(w.message) for w in caught]
    dropped = [m for m in messages if "NaN or infinite" in m]
    assert dropped == ["input/1.bin: dropped 3 of 50 points with NaN or infinite values"]
    assert summary.non_finite_points == 3
    points = np.load(tmp_path / "points/a/0001.npy")
    assert points.shape == (47, 5) and np.isfinite(points).all()
    assert np.array_equal(points, np.delete(bad, [3, 7, 9], axis=0))
    # The empty frame: kept, warned about and in the summary.
    assert summary.empty_frames == ["a_0002"]
    assert any("1 frames without points (a_0002)" in m for m in messages)
    assert "empty frames (no points, kept with their boxes): 1: a_0002" in str(summary)
    assert "points with NaN or infinite values dropped: 3" in str(summary)
    assert read_frame_table(tmp_path, "training").num_points.tolist() == [20, 47, 0]


def test_resume_verifies_kept_files_and_redoes_bad_sequences(tmp_path):
    sequences = {"a": [_points(30, 1), _points(40, 2)], "b": [_points(25, 3)]}
    _convert(tmp_path, sequences)
    good = {p: p.read_bytes() for p in sorted((tmp_path / "points").rglob("*.npy"))}
    # After the conversion: one file truncated, one overwritten with the same size but a bad header.
    a1 = tmp_path / "points/a/0001.npy"
    a1.write_bytes(good[a1][:-12])
    b0 = tmp_path / "points/b/0000.npy"
    b0.write_bytes(b"\0" * len(good[b0]))
    summary = _convert(tmp_path, sequences)
    assert (summary.converted, summary.resumed) == (2, 0)
    assert {p: p.read_bytes() for p in good} == good  # both sequences written again, whole
    # A finished conversion resumes everything, and a file that changes size is found again.
    assert (_convert(tmp_path, sequences).resumed) == 2
    a0 = tmp_path / "points/a/0000.npy"
    a0.write_bytes(good[a0] + b"\0" * 20)  # appended bytes: the header no longer accounts for them
    summary = _convert(tmp_path, sequences)
    assert (summary.converted, summary.resumed) == (1, 1)
    assert a0.read_bytes() == good[a0]


def test_stale_temporaries_are_removed_at_the_next_start(tmp_path):
    sequences = {"a": [_points(10)]}
    _convert(tmp_path, sequences)
    stale = [
        tmp_path / ".meta.json.k1ll3d.tmp",
        tmp_path / ".frames_training.parquet.x.tmp",
        tmp_path / "parts" / "training" / ".a.frames.parquet.y.tmp",
        tmp_path / "points" / "a" / ".0000.npy.z.tmp",
    ]
    for p in stale:
        p.write_bytes(b"half")
    keep = tmp_path / "points" / "a" / "notes.tmp"  # not one of ours
    keep.write_text("keep")
    summary = _convert(tmp_path, sequences)
    assert summary.resumed == 1
    assert not any(p.exists() for p in stale) and keep.exists()


# --- nuScenes: the real reader's files -----------------------------------------------------------


@pytest.fixture(scope="module")
def nuscenes_root(tmp_path_factory) -> Path:
    from pointformer.data.formats.nuscenes_writer import write_nuscenes
    from pointformer.data.synthetic import generate_sequence, nuscenes_lidars

    root = tmp_path_factory.mktemp("nusc_robust")
    spec = dataclasses.replace(nuscenes_lidars()[0], width=90)
    write_nuscenes(root, [generate_sequence(5, 21, "nuscenes", lidars=(spec,), density=0.2)],
                   scene_names=["scene-0001"], splits={"synth_train": ["scene-0001"]})  # fmt: skip
    return root


def test_nuscenes_non_finite_and_empty_lidar_files(nuscenes_root, tmp_path):
    root = tmp_path / "nusc"
    shutil.copytree(nuscenes_root, root)
    keyframes = sorted((root / "samples" / "LIDAR_TOP").glob("*.pcd.bin"))
    assert len(keyframes) == 3
    raw = np.fromfile(keyframes[0], "<f4").reshape(-1, 5)
    raw[[0, 5], 0] = np.nan
    raw[11, 3] = np.inf
    raw.tofile(keyframes[0])
    keyframes[2].write_bytes(b"")  # a 0-byte keyframe
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = convert_nuscenes(root, tmp_path / "out", splits=["synth_train"], sweeps=0,
                                   gt_database_splits=[], progress=False)  # fmt: skip
    messages = [str(w.message) for w in caught]
    assert f"{keyframes[0]}: dropped 3 of {len(raw)} points with NaN or infinite values" in messages
    assert summary.non_finite_points == 3
    assert summary.empty_frames == ["scene-0001_0002"]
    assert "empty frames (no points, kept with their boxes): 1: scene-0001_0002" in str(summary)
    table = read_frame_table(tmp_path / "out", "synth_train")
    assert table.num_points.tolist()[0] == len(raw) - 3 and table.num_points.tolist()[2] == 0
    assert np.isfinite(np.load(tmp_path / "out" / table.points_path[0])).all()


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((50, 5), np.float32),
        np.zeros((0, 5), np.float32),
        np.zeros(7, np.int64),
        np.zeros((3, 4, 2), "<f8"),
        np.zeros((), np.float32),
        np.zeros((2, 3), np.float32, order="F"),
    ],  # fmt: skip
    ids=["points", "empty", "int64", "3d", "scalar", "fortran"],
)
def test_verify_file(tmp_path, array):
    from pointformer.data.convert.checks import file_record, verify_file

    path = tmp_path / "a.npy"
    np.save(path, array)
    data = path.read_bytes()
    assert verify_file(path, file_record(path)) and verify_file(path, None)
    for damaged in (data[:-1], data + b"x", b"\0" * len(data), data[:5]):
        path.write_bytes(damaged)
        assert not verify_file(path, None)
    path.write_bytes(data[:-1])
    assert not verify_file(path, len(data), header=False) and verify_file(path, len(data) - 1, header=False)
    assert not verify_file(tmp_path / "missing.npy", None)
