"""LayoutDataset over a tiny converted Waymo dataset: loading, features, filters, sweeps, gt
sampling, the disable-augmentation switch, collation and DataLoader determinism."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pointformer.data import convert
from pointformer.data.collate import FrameBatch, collate_frames
from pointformer.data.dataset import DatasetConfig, LayoutDataset
from pointformer.data.layout import load_points, read_frame_table
from pointformer.ops import boxes_iou_bev

_spec = importlib.util.spec_from_file_location("tiny_waymo", Path(__file__).with_name("tiny_waymo.py"))
tiny_waymo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny_waymo)

GT = {"sample_groups": {"Vehicle": 4, "Pedestrian": 3, "Cyclist": 3}, "min_points": {"Vehicle": 2}}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Converted tiny Waymo: training 5 frames (sequences of 3 and 2), validation 2; 2 sweeps."""
    src = tiny_waymo.write_tiny_waymo(tmp_path_factory.mktemp("tiny_src"))
    out = tmp_path_factory.mktemp("tiny_out")
    convert.convert_waymo(src["v1"], out, workers=0, progress=False, sweeps=2)
    return out


def plain(**kw) -> dict:
    """Options of an unaugmented, unfiltered dataset, updated with ``kw``."""
    return {"point_cloud_range": None, "min_points_in_box": 0, **kw}


def test_length_ids_and_features(root):
    ds = LayoutDataset(root, "training", plain())
    assert len(ds) == 5 and len(LayoutDataset(root, "validation")) == 2
    frames = read_frame_table(root, "training")
    for i in range(len(ds)):
        s = ds[i]
        assert s.frame_id == frames.frame_id[i]
        assert s.point_features == ("x", "y", "z", "intensity", "elongation")
        raw = load_points(root, frames[i])
        assert s.points.dtype == np.float32
        np.testing.assert_array_equal(s.points[:, :3], raw[:, :3])
        np.testing.assert_allclose(s.points[:, 3:], np.tanh(raw[:, 3:]), rtol=1e-6)
        np.testing.assert_array_equal(s.pose, frames.pose[i])
    with pytest.raises(IndexError):
        ds[5]
    raw_ds = LayoutDataset(root, "training", plain(point_features=["x", "y", "z", "intensity"], feature_transforms={}))
    np.testing.assert_array_equal(raw_ds[0].points, load_points(root, frames[0])[:, :4])


def test_class_mapping_and_box_filters(root):
    frames = read_frame_table(root, "training")
    ds = LayoutDataset(root, "training", plain(class_names=["Cyclist", "Vehicle"]))
    s = ds[0]
    rec = frames[0]
    keep = np.isin(rec.names, ["Cyclist", "Vehicle"])
    assert s.names.tolist() == rec.names[keep].tolist()
    assert s.labels.dtype == np.int64
    assert s.labels.tolist() == [{"Cyclist": 0, "Vehicle": 1}[n] for n in s.names]
    np.testing.assert_array_equal(s.boxes, rec.boxes[keep])

    r = (-10.0, -12.0, -1.0, 10.0, 12.0, 2.5)
    ranged = LayoutDataset(root, "training", plain(point_cloud_range=r))
    raw = load_points(root, rec)
    lo, hi = np.float32(r[:3]), np.float32(r[3:])
    inside = np.all((raw[:, :3] >= lo) & (raw[:, :3] < hi), 1)
    s = ranged[0]
    assert 0 < len(s.points) == inside.sum()
    np.testing.assert_array_equal(s.points[:, :3], raw[inside, :3])
    box_in = np.all((rec.boxes[:, :2] >= lo[:2]) & (rec.boxes[:, :2] < hi[:2]), 1) & np.isin(
        rec.names, ("Vehicle", "Pedestrian", "Cyclist")
    )
    np.testing.assert_array_equal(s.boxes, rec.boxes[box_in])
    assert not np.any(s.boxes[:, 0] == 500)  # the far box is gone

    minp = LayoutDataset(root, "training", plain(min_points_in_box=40))
    for i in range(len(minp)):
        assert np.all(minp[i].num_points_in_box >= 40)
    assert sum(minp[i].num_boxes for i in range(5)) < sum(
        LayoutDataset(root, "training", plain())[i].num_boxes for i in range(5)
    )


def test_config_validation(root):
    with pytest.raises(ValueError, match="unknown dataset options"):
        LayoutDataset(root, "training", {"num_sweep": 1})
    with pytest.raises(ValueError, match="needs the 'time'"):
        DatasetConfig(num_sweeps=1)
    with pytest.raises(ValueError, match="sweeps per frame"):
        LayoutDataset(root, "training", {"num_sweeps": 3, "point_features": ["x", "y", "z", "time"]})
    with pytest.raises(ValueError, match="unknown gt_sampling options"):
        DatasetConfig.from_mapping({"gt_sampling": {"groups": {}}})
    cfg = DatasetConfig.from_mapping({"gt_sampling": GT, "rotation_range": [-0.5, 0.5]})
    assert cfg.gt_sampling.sample_groups["Vehicle"] == 4 and cfg.rotation_range == (-0.5, 0.5)


def test_multi_sweep_pose_and_time(root, tmp_path):
    """A static world point written into each frame of a sequence (in that frame's vehicle frame)
    lands at one place once the sweeps are merged; the time column is t_frame - t_sweep."""
    work = tmp_path / "root"
    shutil.copytree(root, work)
    frames = read_frame_table(work, "training")
    world = np.array([105.0, -25.0, 1.5, 1.0])
    for i in range(3):  # sequence 1000: frames 0, 1, 2
        rec = frames[i]
        local = np.linalg.solve(rec.pose, world)[:3]
        pts = np.array([[*local, 7.0, 0.0], [i + 1.0, 2.0, 0.0, float(i), 0.0]], np.float32)
        np.save(work / rec.points_path, pts)
    ds = LayoutDataset(
        work,
        "training",
        plain(num_sweeps=2, point_features=["x", "y", "z", "intensity", "time"], feature_transforms={}),
    )
    s = ds[2]
    assert s.point_features == ("x", "y", "z", "intensity", "time") and len(s.points) == 6
    static = s.points[s.points[:, 3] == 7.0]
    assert len(static) == 3
    expected = np.linalg.solve(frames[2].pose, world)[:3]
    np.testing.assert_allclose(static[:, :3], np.tile(expected, (3, 1)), atol=1e-4)
    t = frames.timestamp_micros
    np.testing.assert_allclose(static[:, 4], [0.0, (t[2] - t[1]) * 1e-6, (t[2] - t[0]) * 1e-6], rtol=1e-6)
    assert static[1, 4] > 0
    # The first frame of a sequence has no sweeps; one sweep only for the second.
    assert len(ds[0].points) == 2 and np.all(ds[0].points[:, 4] == 0)
    assert len(ds[1].points) == 4
    one = LayoutDataset(work, "training", plain(num_sweeps=1, point_features=["x", "y", "z", "time"]))
    assert len(one[2].points) == 4


def training_dataset(root, **kw) -> LayoutDataset:
    return LayoutDataset(
        root, "training", {"gt_sampling": GT, "point_cloud_range": (-30, -30, -5, 30, 30, 8), **kw}, training=True
    )


def test_training_sample_with_gt_sampling(root):
    # Global augmentations off, so the scene's boxes stay first and in place.
    ds = training_dataset(root, min_points_in_box=0, flip_axes=[], rotation_range=None, scaling_range=None)
    a, b = ds[1], ds[1]
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    boxes = torch.from_numpy(a.boxes[:, :7].astype(np.float64))
    eval_boxes = LayoutDataset(
        root, "training", {"point_cloud_range": (-30, -30, -5, 30, 30, 8), "min_points_in_box": 0}
    )[1]
    assert a.num_boxes > eval_boxes.num_boxes  # objects were pasted
    pasted = boxes[eval_boxes.num_boxes :]
    others = boxes[: eval_boxes.num_boxes]
    assert torch.all(boxes_iou_bev(pasted, others) == 0)
    assert torch.all(boxes_iou_bev(pasted, pasted).fill_diagonal_(0) == 0)
    assert set(a.labels.tolist()) <= {0, 1, 2}
    ds.set_epoch(1)
    c = ds[1]
    assert not (c.points.shape == a.points.shape and np.array_equal(c.points, a.points))


def test_disable_augmentation_switch(root):
    ds = training_dataset(root, disable_augmentation_after_epoch=2)
    plain_ds = LayoutDataset(root, "training", {"point_cloud_range": (-30, -30, -5, 30, 30, 8)})
    for epoch, augmented in ((0, True), (1, True), (2, False), (5, False)):
        ds.set_epoch(epoch)
        assert ds.augmenting == augmented
        s, ref = ds[2], plain_ds[2]
        same = (
            s.points.shape == ref.points.shape
            and np.array_equal(s.points, ref.points)
            and np.array_equal(s.boxes, ref.boxes)
        )
        assert same != augmented


def test_collate(root):
    ds = LayoutDataset(root, "training", plain())
    samples = [ds[i] for i in range(3)]
    batch = collate_frames(samples)
    assert isinstance(batch, FrameBatch) and batch.batch_size == 3
    n = [s.num_points for s in samples]
    m = [s.num_boxes for s in samples]
    assert batch.points.shape == (sum(n), 5) and batch.points.dtype == torch.float32
    assert batch.batch_index.dtype == torch.int64
    assert batch.batch_index.tolist() == sum(([b] * n[b] for b in range(3)), [])
    assert batch.boxes.shape == (sum(m), 9) and batch.labels.dtype == torch.int64
    assert batch.box_batch_index.tolist() == sum(([b] * m[b] for b in range(3)), [])
    assert batch.point_offsets.tolist() == [0, n[0], n[0] + n[1], sum(n)]
    assert batch.poses.shape == (3, 4, 4) and batch.poses.dtype == torch.float64
    assert batch.frame_ids == tuple(s.frame_id for s in samples)
    for b in range(3):
        np.testing.assert_array_equal(batch.frame_points(b).numpy(), samples[b].points)
        np.testing.assert_array_equal(batch.frame_boxes(b).numpy(), samples[b].boxes)
    moved = batch.to("cpu")
    assert moved is not batch and torch.equal(moved.points, batch.points)
    with pytest.raises(ValueError, match="point features differ"):
        collate_frames(
            [samples[0], samples[1].replace(points=samples[1].points[:, :4], point_features=("x", "y", "z", "i"))]
        )


def _batches(ds: LayoutDataset, workers: int, epoch: int) -> list[FrameBatch]:
    ds.set_epoch(epoch)
    loader = DataLoader(ds, batch_size=2, shuffle=False, num_workers=workers, collate_fn=collate_frames)
    return list(loader)


def test_dataloader_workers_give_identical_batches(root):
    ds = training_dataset(root)
    for epoch in (0, 1):
        serial, parallel = _batches(ds, 0, epoch), _batches(ds, 2, epoch)
        assert len(serial) == len(parallel) == 3
        for a, b in zip(serial, parallel, strict=True):
            assert a.frame_ids == b.frame_ids
            for name in ("points", "batch_index", "boxes", "labels", "box_batch_index"):
                assert torch.equal(getattr(a, name), getattr(b, name)), name
