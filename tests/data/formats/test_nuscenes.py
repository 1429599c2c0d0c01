"""nuScenes: synthetic writer -> our reader round trip, nuscenes-devkit 1.2.0 as an oracle, bad input."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import numpy as np
import pytest

from pointformer.data.formats import DataFormatError
from pointformer.data.formats.nuscenes import NuScenesReader, read_pcd_bin
from pointformer.data.formats.nuscenes_tables import (
    PREDEFINED_SPLITS,
    TABLE_NAMES,
    matrix_to_quaternion,
    quaternion_to_matrix,
    safe_join,
    transform_matrix,
)
from pointformer.data.formats.nuscenes_writer import write_nuscenes
from pointformer.data.synthetic import generate_sequence, nuscenes_lidars

SEEDS = (3, 4)
# 21 frames at 20 Hz: keyframes 0, 10, 20 (3 samples per scene), 9 sweeps between them; the last
# keyframe has exactly 10 sweeps behind it (itself included).
NUM_FRAMES = 21


def _sequences():
    # A narrower LIDAR_TOP (360 azimuth steps instead of 1084) and fewer objects keep it fast;
    # the geometry and the writer's paths are the same.
    spec = dataclasses.replace(nuscenes_lidars()[0], width=360)
    return [generate_sequence(s, NUM_FRAMES, "nuscenes", lidars=(spec,), density=0.5) for s in SEEDS]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("nusc")
    seqs = _sequences()
    summary = write_nuscenes(root, seqs, splits={"synth_train": ["scene-0103"], "synth_val": ["scene-0916"]})
    return root, seqs, summary


@pytest.fixture(scope="module")
def reader(dataset):
    return NuScenesReader(dataset[0], "v1.0-mini")


def _devkit():
    """The devkit's NuScenes and LidarPointCloud, or a skip naming the missing package."""
    try:
        from nuscenes import NuScenes
        from nuscenes.utils.data_classes import LidarPointCloud
    except ImportError as e:
        pytest.skip(f"nuscenes-devkit 1.2.0 oracle unavailable: missing package {e.name!r} ({e})")
    return NuScenes, LidarPointCloud


@pytest.fixture(scope="module")
def nusc(dataset):
    NuScenes, _ = _devkit()
    return NuScenes(version="v1.0-mini", dataroot=str(dataset[0]), verbose=False)


def _wrap(a):
    return (np.asarray(a, np.float64) + np.pi) % (2 * np.pi) - np.pi


# --- geometry helpers ------------------------------------------------------------------------------


def test_quaternion_matrix_round_trip():
    rng = np.random.default_rng(0)
    for q in rng.normal(size=(50, 4)):
        q = q / np.linalg.norm(q)
        q = -q if q[0] < 0 else q
        rot = quaternion_to_matrix(q)
        np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(rot) == pytest.approx(1.0)
        np.testing.assert_allclose(matrix_to_quaternion(rot), q, atol=1e-12)
    # A +90 deg yaw maps x to y.
    np.testing.assert_allclose(quaternion_to_matrix([math.cos(math.pi / 4), 0, 0, math.sin(math.pi / 4)]) @ [1, 0, 0],
                               [0, 1, 0], atol=1e-15)  # fmt: skip
    m = transform_matrix([1.0, 2.0, 3.0], q)
    np.testing.assert_allclose(transform_matrix([1.0, 2.0, 3.0], q, inverse=True) @ m, np.eye(4), atol=1e-12)


def test_quaternion_matches_pyquaternion():
    pyq = pytest.importorskip("pyquaternion", reason="pyquaternion not installed (devkit oracle)")
    for q in np.random.default_rng(1).normal(size=(20, 4)):
        np.testing.assert_allclose(quaternion_to_matrix(q), pyq.Quaternion(q / np.linalg.norm(q)).rotation_matrix,
                                   atol=1e-12)  # fmt: skip


def test_safe_join(tmp_path):
    assert safe_join(tmp_path, "samples/LIDAR_TOP/a.pcd.bin", "sample_data", "t") == (
        tmp_path / "samples/LIDAR_TOP/a.pcd.bin"
    )
    assert safe_join(tmp_path, "samples/../sweeps/a.bin", "sample_data", "t") == tmp_path / "sweeps/a.bin"
    for bad in ("../../etc/passwd", "/etc/passwd", "samples/../../x", "..", "", "C:/x"):
        with pytest.raises(DataFormatError, match="sample_data 't'"):
            safe_join(tmp_path, bad, "sample_data", "t")


# --- round trip -------------------------------------------------------------------------------------


def test_layout_and_listing(dataset, reader):
    root, seqs, summary = dataset
    for name in TABLE_NAMES:
        assert (root / "v1.0-mini" / f"{name}.json").is_file()
    assert not list(root.rglob("*.tmp"))
    assert reader.scene_names == ("scene-0103", "scene-0916")
    assert reader.sample_tokens() == [t for s in summary.sample_tokens for t in s]
    assert reader.sample_tokens("synth_val") == list(summary.sample_tokens[1])
    assert reader.sample_tokens("mini_val") == reader.sample_tokens()
    assert reader.sample_tokens("mini_train") == []
    with pytest.raises(DataFormatError, match="no split 'nope'"):
        reader.sample_tokens("nope")
    sweeps = list((root / "sweeps" / "LIDAR_TOP").iterdir())
    assert len(sweeps) == len(SEEDS) * (NUM_FRAMES - 3)
    assert len(list((root / "samples" / "LIDAR_TOP").iterdir())) == len(SEEDS) * 3


def test_points_round_trip(dataset, reader):
    """Keyframe points come back in the LIDAR frame as the synthetic scan (vehicle frame) mapped
    through the preset's extrinsic, with intensity and ring."""
    _, seqs, summary = dataset
    for seq, tokens, frames in zip(seqs, summary.sample_tokens, summary.sample_frames, strict=True):
        ext = seq.lidars[0].extrinsic
        for tok, fi in zip(tokens, frames, strict=True):
            sample = reader.sample(tok, nsweeps=1, min_distance=0.0)
            scan = seq[fi].scan("LIDAR_TOP")
            expected = (scan.points()[:, :3].astype(np.float64) - ext[:3, 3]) @ ext[:3, :3]
            assert sample.points.shape == (len(expected), 5) and sample.points.dtype == np.float32
            np.testing.assert_allclose(sample.points[:, :3], expected, rtol=0, atol=5e-5)
            np.testing.assert_array_equal(sample.points[:, 3], scan.points()[:, 3])
            np.testing.assert_array_equal(sample.points[:, 4], 0.0)
            raw = read_pcd_bin(sample.lidar_path)
            np.testing.assert_array_equal(raw[:, 4], np.nonzero(scan.range_image[..., 0] > 0)[0])
            np.testing.assert_allclose(sample.sensor_to_ego, ext, atol=1e-12)
            pose = seq[fi].pose.copy()
            pose[2, 3] = 0.0
            np.testing.assert_allclose(sample.ego_to_global, pose, atol=1e-9)


def test_boxes_round_trip(dataset, reader):
    """Annotated objects (a nuScenes category and >= 1 point) come back as the synthetic boxes, in
    the ego (= synthetic vehicle) frame and in the LIDAR frame."""
    _, seqs, summary = dataset
    checked_velocity = 0
    for seq, tokens, frames in zip(seqs, summary.sample_tokens, summary.sample_frames, strict=True):
        ext = seq.lidars[0].extrinsic
        ext_yaw = math.atan2(ext[1, 0], ext[0, 0])
        for tok, fi in zip(tokens, frames, strict=True):
            labels = seq[fi].labels
            keep = np.array([c is not None for c in labels.nuscenes_categories]) & (
                labels.num_top_lidar_points_in_box >= 1
            )
            sample = reader.sample(tok, nsweeps=1)
            assert len(sample) == keep.sum() > 0
            exp = labels.boxes[keep].astype(np.float64)
            np.testing.assert_allclose(sample.boxes_ego[:, :6], exp[:, :6], rtol=0, atol=2e-5)
            np.testing.assert_allclose(_wrap(sample.boxes_ego[:, 6] - exp[:, 6]), 0, atol=2e-6)
            centre = (exp[:, :3] - ext[:3, 3]) @ ext[:3, :3]
            np.testing.assert_allclose(sample.boxes[:, :3], centre, rtol=0, atol=5e-5)
            np.testing.assert_array_equal(sample.boxes[:, 3:6], sample.boxes_ego[:, 3:6])
            np.testing.assert_allclose(_wrap(sample.boxes[:, 6] - (exp[:, 6] - ext_yaw)), 0, atol=2e-6)
            assert np.all((sample.boxes[:, 6] >= -np.pi) & (sample.boxes[:, 6] < np.pi))
            assert sample.boxes.dtype == np.float32 and sample.boxes.shape[1] == 9
            cats = [c for c, k in zip(labels.nuscenes_categories, keep, strict=True) if k]
            assert list(sample.category_names) == cats
            assert set(sample.names) <= {"car", "truck", "bus", "pedestrian", "bicycle", "barrier", "traffic_cone"}
            attrs = [a or "" for a, k in zip(labels.nuscenes_attributes, keep, strict=True) if k]
            assert list(sample.attribute_names) == attrs
            np.testing.assert_array_equal(sample.num_lidar_pts, labels.num_top_lidar_points_in_box[keep])
            np.testing.assert_array_equal(sample.num_radar_pts, 0)
            # Velocity: a difference of positions 0.5-1 s apart vs the synthetic instantaneous one
            # (objects follow curved lanes at constant speed: close, not equal).
            known = ~np.isnan(sample.boxes_ego[:, 7])
            vel = labels.velocity[keep][known, :2]
            np.testing.assert_allclose(sample.boxes_ego[known, 7:9], vel, atol=0.3)
            vel_lidar = np.c_[vel, np.zeros(len(vel))] @ ext[:3, :3]
            np.testing.assert_allclose(sample.boxes[known, 7:9], vel_lidar[:, :2], atol=0.3)
            checked_velocity += int(known.sum())
    assert checked_velocity > 0


def test_multisweep(dataset, reader):
    root, seqs, summary = dataset
    first = reader.sample(summary.sample_tokens[0][0])
    assert first.num_sweeps == 1  # the chain runs out at the scene's first sample_data
    last = reader.sample(summary.sample_tokens[0][2])
    assert last.num_sweeps == 10 and len(set(last.sweep_tokens)) == 10
    lags = np.unique(last.points[:, 4])
    np.testing.assert_allclose(lags, np.arange(10) * 0.05, atol=1e-6)
    close = (np.abs(last.points[:, 0]) < 1) & (np.abs(last.points[:, 1]) < 1) & (last.points[:, 4] == 0)
    assert not close.any()
    # Static scene points of a sweep land where the keyframe sees them: compare each sweep's
    # ground-truth mapping (world, with the z folded as the writer does) with ours.
    seq = seqs[0]
    ext = seq.lidars[0].extrinsic
    ref_pose = seq[20].pose.copy()
    for k, fi in enumerate(range(20, 10, -1)):
        pts = last.points[last.points[:, 4] == np.float32(1e-6 * (seq.timestamp_micros(20) - seq.timestamp_micros(fi)))]
        raw = seq[fi].scan("LIDAR_TOP").points()[:, :3].astype(np.float64)
        raw_s = (raw - ext[:3, 3]) @ ext[:3, :3]
        raw = raw[~((np.abs(raw_s[:, 0]) < 1) & (np.abs(raw_s[:, 1]) < 1))]
        pose = seq[fi].pose.copy()
        world = raw @ pose[:3, :3].T + pose[:3, 3]
        world[:, 2] += ref_pose[2, 3] - pose[2, 3]  # both poses are written with z = 0
        in_ref = (world - ref_pose[:3, 3]) @ ref_pose[:3, :3]
        np.testing.assert_allclose(pts[:, :3], (in_ref - ext[:3, 3]) @ ext[:3, :3], atol=1e-4, err_msg=f"sweep {k}")


# --- devkit oracle ------------------------------------------------------------------------------------


def test_devkit_loads_and_agrees_on_boxes(dataset, reader, nusc):
    _, _, summary = dataset
    assert len(nusc.sample) == sum(len(s) for s in summary.sample_tokens)
    assert len(nusc.scene) == len(SEEDS)
    from nuscenes.utils import splits

    assert tuple(splits.mini_val) == PREDEFINED_SPLITS["mini_val"]
    assert tuple(splits.mini_train) == PREDEFINED_SPLITS["mini_train"]
    for tok in reader.sample_tokens():
        ours = reader.sample(tok, nsweeps=1)
        sd_token = nusc.get("sample", tok)["data"]["LIDAR_TOP"]
        assert sd_token == ours.lidar_token
        _, boxes, _ = nusc.get_sample_data(sd_token)  # sensor frame, in sample['anns'] order
        assert [b.token for b in boxes] == list(ours.annotation_tokens)
        np.testing.assert_allclose(np.array([b.center for b in boxes]), ours.boxes[:, :3], rtol=0, atol=1e-4)
        np.testing.assert_allclose(np.array([b.wlh for b in boxes])[:, [1, 0, 2]], ours.boxes[:, 3:6], atol=1e-5)
        yaw = np.array([b.orientation.yaw_pitch_roll[0] for b in boxes])
        np.testing.assert_allclose(_wrap(yaw - ours.boxes[:, 6]), 0, atol=1e-6)
        vel = np.array([nusc.box_velocity(t) for t in ours.annotation_tokens])
        np.testing.assert_array_equal(np.isnan(vel), np.isnan(ours.velocity_global))
        np.testing.assert_allclose(vel, ours.velocity_global, rtol=0, atol=1e-9)


def test_devkit_multisweep(dataset, reader, nusc):
    _, LidarPointCloud = _devkit()
    for tok in reader.sample_tokens():
        ours = reader.sample(tok, nsweeps=10)
        pc, times = LidarPointCloud.from_file_multisweep(nusc, nusc.get("sample", tok), "LIDAR_TOP", "LIDAR_TOP",
                                                         nsweeps=10)  # fmt: skip
        assert pc.points.shape[1] == len(ours.points)
        np.testing.assert_allclose(pc.points[:3].T, ours.points[:, :3], rtol=0, atol=1e-5)
        np.testing.assert_array_equal(pc.points[3], ours.points[:, 3])
        np.testing.assert_allclose(times[0], ours.points[:, 4], rtol=0, atol=1e-6)


# --- bad input -----------------------------------------------------------------------------------------


@pytest.fixture
def copy_root(dataset, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(dataset[0], root)
    return root


def _edit_table(root, name, edit):
    path = root / "v1.0-mini" / f"{name}.json"
    records = json.loads(path.read_text())
    edit(records)
    path.write_text(json.dumps(records))


def test_missing_table(copy_root):
    (copy_root / "v1.0-mini" / "sample_data.json").unlink()
    with pytest.raises(DataFormatError, match="sample_data.json"):
        NuScenesReader(copy_root)
    with pytest.raises(DataFormatError, match="does not exist"):
        NuScenesReader(copy_root, "v1.0-trainval")


def test_record_without_token_and_dangling_reference(copy_root):
    _edit_table(copy_root, "instance", lambda r: r[0].update(category_token="f" * 32))
    with pytest.raises(DataFormatError, match=r"instance '[0-9a-f]+': category_token 'f+' names no record of category"):
        NuScenesReader(copy_root)
    _edit_table(copy_root, "log", lambda r: r[0].pop("token"))
    with pytest.raises(DataFormatError, match=r"log.json: record 0 has no 'token'"):
        NuScenesReader(copy_root)


@pytest.mark.parametrize(
    "table, edit, match",
    [
        ("sample", lambda r: r.append(dict(r[0])), r"sample.json: duplicate token"),
        ("sample", lambda r: r.insert(1, ["not", "a", "record"]), r"sample.json: record 1 is a list, not an object"),
        ("sample", lambda r: r[3].pop("scene_token"), r"sample '[0-9a-f]+': missing field 'scene_token'"),
        ("sample", lambda r: r[2].update(next="f" * 32), r"sample '[0-9a-f]+': next 'f+' names no record of sample"),
        ("sample", lambda r: r[2].update(scene_token=["x"]), r"sample '[0-9a-f]+': scene_token 'x' names no record"),
        ("sample", lambda r: r[2].update(scene_token={"a": 1}), r"scene_token \{'a': 1\} names no record"),
        ("sample_annotation", lambda r: r[4].update(attribute_tokens=["f" * 32]), "attribute_tokens 'f+' names no"),
        (
            "sample_annotation",
            lambda r: r[4].update(attribute_tokens=2 * next(a["attribute_tokens"] for a in r if a["attribute_tokens"])),
            "attribute_tokens must be a list of at most one",
        ),
        ("map", lambda r: r[0].update(log_tokens=[*r[0]["log_tokens"], "nolog"]), "log_tokens 'nolog' names no"),
    ],
)
def test_table_errors_name_the_record(copy_root, table, edit, match):
    """The table checks run over whole columns; a failure still names the file or record."""
    _edit_table(copy_root, table, edit)
    with pytest.raises(DataFormatError, match=match):
        NuScenesReader(copy_root)


def test_missing_and_truncated_pcd_bin(dataset, copy_root):
    tok = dataset[2].sample_tokens[0][1]
    reader = NuScenesReader(copy_root)
    path = reader.sample(tok, nsweeps=1).lidar_path
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    with pytest.raises(DataFormatError, match=rf"{path.name}: \d+ bytes is not a whole number"):
        reader.sample(tok)
    path.unlink()
    with pytest.raises(DataFormatError, match=rf"{path.name} does not exist"):
        reader.sample(tok)
    # A missing sweep fails the multi-sweep read, not the keyframe-only one.
    path.write_bytes(data)
    sweep = reader.sample_data_path(reader.tables.get("sample_data", reader.sample(tok).sweep_tokens[3])["token"])
    sweep.unlink()
    reader.sample(tok, nsweeps=3)
    with pytest.raises(DataFormatError, match=sweep.name):
        reader.sample(tok, nsweeps=10)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd"])
def test_filename_escaping_dataroot(dataset, copy_root, bad):
    tok = dataset[2].sample_tokens[0][0]
    sd_tok = NuScenesReader(copy_root).sample(tok, nsweeps=1).lidar_token

    def edit(records):
        next(r for r in records if r["token"] == sd_tok)["filename"] = bad

    _edit_table(copy_root, "sample_data", edit)
    reader = NuScenesReader(copy_root)
    with pytest.raises(DataFormatError, match=rf"sample_data '{sd_tok}': file path '{bad}' escapes the dataroot"):
        reader.sample(tok)


def test_two_attribute_tokens_rejected(copy_root):
    """The devkit loads such a table but its evaluation raises on it; we refuse it at load."""
    attrs = [r["token"] for r in json.loads((copy_root / "v1.0-mini" / "attribute.json").read_text())]
    holder = {}

    def edit(records):
        holder["token"] = records[0]["token"]
        records[0]["attribute_tokens"] = attrs[:2]

    _edit_table(copy_root, "sample_annotation", edit)
    with pytest.raises(
        DataFormatError, match=rf"sample_annotation '{holder['token']}': attribute_tokens .* at most one"
    ):
        NuScenesReader(copy_root)


def test_writer_refuses_predefined_split_names(tmp_path):
    seq = _sequences()[0]
    with pytest.raises(ValueError, match="predefined"):
        write_nuscenes(tmp_path, [seq], splits={"val": ["scene-0103"]})
