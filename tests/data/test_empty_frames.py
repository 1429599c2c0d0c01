"""A frame with zero points (a Waymo label-only frame) through conversion, LayoutDataset (with
sweeps, ground-truth sampling and augmentation), collate and voxelization: kept with 0 points."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from pointformer.data import convert
from pointformer.data.collate import collate_frames
from pointformer.data.dataset import DatasetConfig, LayoutDataset
from pointformer.data.formats import waymo_v1
from pointformer.data.layout import load_points, read_frame_table, read_gt_database
from pointformer.ops import voxelize

_spec = importlib.util.spec_from_file_location("tiny_waymo", Path(__file__).with_name("tiny_waymo.py"))
tiny_waymo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny_waymo)

CONTEXT = "4000_0000_000_0020_000"
EMPTY = 1  # the middle frame of three has no laser data, only labels


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("empty_src")
    frames = tiny_waymo.tiny_sequence(CONTEXT, 3, seed=7)
    frames[EMPTY] = dataclasses.replace(frames[EMPTY], lasers=())
    assert len(frames[EMPTY].to_frame().points) == 0 and len(frames[EMPTY].labels.boxes) > 0
    (src / "training").mkdir()
    waymo_v1.write_frames(src / "training" / f"segment-{CONTEXT}_with_camera_labels.tfrecord", frames)
    out = tmp_path_factory.mktemp("empty_out")
    with pytest.warns(UserWarning, match="no range images; yielding its .* labels with zero points"):
        summary = convert.convert_waymo(src, out, splits=("training",), workers=0, progress=False, sweeps=2)
    assert summary.frames == summary.frames_converted == 3 and not summary.failed
    return out


def test_converter_keeps_the_empty_frame(root):
    frames = read_frame_table(root, "training")
    assert len(frames) == 3
    assert frames.num_points[EMPTY] == 0 and all(frames.num_points[i] > 0 for i in (0, 2))
    points = load_points(root, frames[EMPTY])
    assert points.shape == (0, 5) and points.dtype == np.float32
    assert len(frames[EMPTY].boxes) > 0  # its labels are kept
    gt = read_gt_database(root, "training")
    assert len(gt) > 0 and frames.frame_id[EMPTY] not in set(gt.frame_id)


def test_dataset_and_collate(root):
    plain = LayoutDataset(root, "training", {"point_cloud_range": None, "min_points_in_box": 0})
    empty = plain[EMPTY]
    assert empty.points.shape == (0, 5) and empty.num_boxes > 0
    gt = {"sample_groups": {"Vehicle": 4, "Pedestrian": 3, "Cyclist": 3}}
    for config in (
        DatasetConfig(gt_sampling=None),
        DatasetConfig.from_mapping({"gt_sampling": gt}),
        DatasetConfig(num_sweeps=2, point_features=("x", "y", "z", "intensity", "elongation", "time")),
    ):
        ds = LayoutDataset(root, "training", config, training=True)
        samples = [ds[i] for i in range(len(ds))]
        assert samples[EMPTY].points.shape[1] == len(config.point_features)
        if config.num_sweeps:  # frame 2's sweeps are the empty frame and frame 0
            assert samples[EMPTY].num_points > 0  # frame 0's points merged in
            time = samples[2].points[:, -1]
            assert np.isclose(np.unique(time), [0.0, 0.2]).all()  # nothing 0.1 s old: that sweep is empty
        elif config.gt_sampling is None:
            assert samples[EMPTY].num_points == 0
        batch = collate_frames(samples)
        assert batch.point_offsets.tolist() == [0, *np.cumsum([s.num_points for s in samples]).tolist()]
        vox = voxelize(batch.points, (0.32, 0.32, 6.0), (-74.88, -74.88, -2.0, 74.88, 74.88, 4.0),
                       batch_index=batch.batch_index, batch_size=batch.batch_size)  # fmt: skip
        assert vox.coords.shape[1] == 4


def test_collate_all_empty(root):
    ds = LayoutDataset(root, "training", {"min_points_in_box": 0})
    batch = collate_frames([ds[EMPTY], ds[EMPTY]])
    assert batch.points.shape == (0, 5) and batch.batch_index.shape == (0,)
    assert batch.point_offsets.tolist() == [0, 0, 0] and batch.frame_points(1).shape == (0, 5)
    assert batch.boxes.shape[0] == 2 * ds[EMPTY].num_boxes
    vox = voxelize(batch.points, (0.32, 0.32, 6.0), (-74.88, -74.88, -2.0, 74.88, 74.88, 4.0),
                   batch_index=batch.batch_index, batch_size=2)  # fmt: skip
    assert vox.num_voxels == 0
    assert torch.equal(vox.coords, torch.zeros((0, 4), dtype=torch.int32))
