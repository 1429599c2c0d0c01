"""LayoutDataset over a tiny converted nuScenes dataset: sweeps accumulated by pose with the time
channel (as the devkit's reader), the 1 m close-point removal, the 10 detection classes, gt
sampling and collate."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from pointformer.data.collate import collate_frames
from pointformer.data.convert.nuscenes import convert_nuscenes
from pointformer.data.dataset import NUSCENES_CLASS_NAMES, DatasetConfig, LayoutDataset
from pointformer.data.formats.nuscenes import NuScenesReader, read_pcd_bin
from pointformer.data.formats.nuscenes_tables import DETECTION_NAMES
from pointformer.data.layout import read_frame_table

SCENE = "scene-0103"
KEYFRAMES = 3  # 21 sweeps at 20 Hz: keyframes at 0, 10, 20
SWEEPS = 9  # OpenPCDet's 10-sweep input


@pytest.fixture(scope="module")
def dataroot(tmp_path_factory) -> Path:
    from pointformer.data.formats.nuscenes_writer import write_nuscenes
    from pointformer.data.synthetic import generate_sequence, nuscenes_lidars

    root = tmp_path_factory.mktemp("nuscenes")
    spec = dataclasses.replace(nuscenes_lidars()[0], width=240)
    write_nuscenes(root, [generate_sequence(5, 21, "nuscenes", lidars=(spec,), density=0.5)], scene_names=[SCENE],
                   splits={"a": [SCENE]})  # fmt: skip
    return root


@pytest.fixture(scope="module")
def reader(dataroot) -> NuScenesReader:
    return NuScenesReader(dataroot, "v1.0-mini")


@pytest.fixture(scope="module")
def root(dataroot, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out")
    convert_nuscenes(dataroot, out, splits=("a",), sweeps=SWEEPS, gt_database_splits=("a",), progress=False)
    return out


def plain(**kw) -> DatasetConfig:
    """nuScenes options without filters or augmentation, updated with ``kw``."""
    return DatasetConfig.nuscenes(point_cloud_range=None, min_points_in_box=0, **kw)


def test_classes_map_to_the_detection_classes(root):
    assert NUSCENES_CLASS_NAMES == DETECTION_NAMES and len(NUSCENES_CLASS_NAMES) == 10
    ds = LayoutDataset(root, "a", plain())
    frames = read_frame_table(root, "a")
    seen = set()
    for i in range(len(ds)):
        s = ds[i]
        assert s.num_boxes == len(frames[i].names) > 0  # every converted box has a detection class
        assert s.labels.tolist() == [DETECTION_NAMES.index(n) for n in frames[i].names]
        seen |= set(s.names.tolist())
    assert seen <= set(DETECTION_NAMES)
    # A Waymo class list keeps nothing.
    assert LayoutDataset(root, "a", plain(class_names=("Vehicle",)))[0].num_boxes == 0


@pytest.mark.parametrize("in_frame", [True, False])
def test_sweeps_accumulate_as_the_devkit(reader, root, in_frame):
    """``close_points_in_frame=True`` is the devkit's ``from_file_multisweep`` (every sweep
    filtered); the default filters only the previous sweeps (OpenPCDet, mmdet3d)."""
    ds = LayoutDataset(root, "a", plain(close_points_in_frame=in_frame))
    assert ds[0].point_features == ("x", "y", "z", "intensity", "time")
    for i, token in enumerate(reader.sample_tokens("a")):
        expected = reader.sample(token, nsweeps=SWEEPS + 1, min_distance=1.0).points
        if not in_frame:
            own = read_pcd_bin(reader.sample(token, nsweeps=1, min_distance=0.0).lidar_path)[:, :4]
            own = np.concatenate([own, np.zeros((len(own), 1), np.float32)], axis=1)
            expected = np.concatenate([own, expected[expected[:, 4] > 0]])
        got = ds[i].points
        assert got.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-4)
        lags = np.unique(got[:, 4])
        assert lags[0] == 0.0 and len(lags) == min(1 + SWEEPS, 1 + 10 * i)  # 20 Hz: 0.05 s steps
        np.testing.assert_allclose(np.diff(lags), 0.05, atol=2e-3)


def test_close_points_removed_in_each_sweeps_own_frame(root, tmp_path):
    """The synthetic sensor sees no ego roof: plant 3 close points in the frame's file and in
    each sweep's (0.5 m from the sensor in x and y; 1.5 m in x is kept)."""
    out = tmp_path / "copy"
    shutil.copytree(root, out)
    frames = read_frame_table(out, "a")
    last = frames[len(frames) - 1]
    close = np.asarray([[0.5, -0.5, 0.0, 1.0], [-0.9, 0.2, 0.5, 1.0], [1.5, 0.0, 0.0, 1.0]], np.float32)
    for rel in [last.points_path] + [s.points_path for s in last.sweeps]:
        np.save(out / rel, np.concatenate([np.load(out / rel), close]))
    files = 1 + len(last.sweeps)
    base = plain(close_point_radius=0.0)
    n_off = LayoutDataset(out, "a", base)[len(frames) - 1].num_points
    n_on = LayoutDataset(out, "a", plain())[len(frames) - 1].num_points
    n_all = LayoutDataset(out, "a", plain(close_points_in_frame=True))[len(frames) - 1].num_points
    assert n_off - n_on == 2 * (files - 1)  # the previous sweeps only (default)
    assert n_off - n_all == 2 * files
    with pytest.raises(ValueError, match="close_point_radius"):
        DatasetConfig.nuscenes(close_point_radius=-1.0)


def test_training_with_gt_sampling_and_collate(root):
    config = DatasetConfig.nuscenes(gt_sampling={"sample_groups": {"car": 8, "pedestrian": 8}})
    ds = LayoutDataset(root, "a", config, training=True)
    samples = [ds[i] for i in range(len(ds))]
    assert any(s.num_boxes > 0 for s in samples)
    for s in samples:
        assert s.points.shape[1] == 5 and (s.labels >= 0).all() and (s.labels < 10).all()
        lo, hi = np.asarray(config.point_cloud_range[:3]), np.asarray(config.point_cloud_range[3:])
        assert ((s.points[:, :3] >= lo) & (s.points[:, :3] < hi)).all()
    batch = collate_frames(samples)
    assert batch.points.shape == (sum(s.num_points for s in samples), 5)
    assert batch.point_features == ("x", "y", "z", "intensity", "time")
    assert batch.boxes.shape == (sum(s.num_boxes for s in samples), 9)
