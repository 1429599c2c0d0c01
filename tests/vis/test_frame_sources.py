"""load_frame_scene on the other sources: a Waymo v2 root and a nuScenes dataroot (synthetic)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from pointformer.data.formats import waymo_v1
from pointformer.data.synthetic import generate_sequence, nuscenes_lidars, waymo_lidars
from pointformer.data.synthetic.waymo_export import write_waymo_v1, write_waymo_v2
from pointformer.vis.cli import FrameNotFoundError, load_frame_scene


def test_waymo_v2_root_matches_v1(tmp_path: Path) -> None:
    top = dataclasses.replace(waymo_lidars()[0], width=300)
    sequence = generate_sequence(1, 2, "waymo", lidars=(top,), density=0.2, label_range=40.0)
    write_waymo_v2(sequence, tmp_path / "v2", "validation")
    v1 = write_waymo_v1(sequence, tmp_path / "v1")
    scene = load_frame_scene(tmp_path / "v2", 1)  # the only split and segment: found by themselves
    again = load_frame_scene(tmp_path / "v2", 1, split="validation", context=sequence.name)
    reference = list(waymo_v1.read_frames(v1))[1]
    for s in (scene, again):
        np.testing.assert_array_equal(s.points, reference.points)
        np.testing.assert_array_equal(s.gt_boxes, reference.labels.boxes)
    with pytest.raises(FrameNotFoundError, match="frame 2 out of range: segment .* holds 2 frames"):
        load_frame_scene(tmp_path / "v2", 2)
    with pytest.raises(FrameNotFoundError, match="no segment 'nope'"):
        load_frame_scene(tmp_path / "v2", 0, context="nope")


def test_nuscenes_sample_by_index_and_token(tmp_path: Path) -> None:
    from pointformer.data.formats.nuscenes_writer import write_nuscenes

    spec = dataclasses.replace(nuscenes_lidars()[0], width=240)
    write_nuscenes(tmp_path, [generate_sequence(3, 11, "nuscenes", lidars=(spec,), density=0.3)])
    first = load_frame_scene(tmp_path, 1)
    token = first.title.split()[-1]
    by_token = load_frame_scene(tmp_path, token, nsweeps=3)
    np.testing.assert_array_equal(by_token.gt_boxes, first.gt_boxes)
    assert len(by_token.points) > len(first.points), "sweeps accumulated"
    assert first.points.shape[1] == 5 and len(first.gt_boxes) == len(first.gt_names) > 0
    with pytest.raises(FrameNotFoundError, match="frame 2 out of range: .* holds 2 samples"):
        load_frame_scene(tmp_path, 2)
    with pytest.raises(FrameNotFoundError, match="neither a sample token nor an index"):
        load_frame_scene(tmp_path, "not-a-token")
