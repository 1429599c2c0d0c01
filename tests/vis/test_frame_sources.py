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


def test_converted_roots_nuscenes_and_waymo(tmp_path: Path) -> None:
    """A converted root (tools/create_data.py) by frame id, sample token and index, with sweeps
    accumulated; rendered in bird's-eye view through tools/visualize.py frame."""
    import argparse

    from pointformer.data.convert import convert_waymo
    from pointformer.data.convert.nuscenes import convert_nuscenes
    from pointformer.data.formats.nuscenes import NuScenesReader
    from pointformer.data.formats.nuscenes_writer import write_nuscenes
    from pointformer.data.layout import read_frame_table
    from pointformer.vis import read_png
    from pointformer.vis.cli import add_frame_arguments, run_frame

    spec = dataclasses.replace(nuscenes_lidars()[0], width=240)
    write_nuscenes(tmp_path / "nusc", [generate_sequence(3, 11, "nuscenes", lidars=(spec,), density=0.3)])
    convert_nuscenes(tmp_path / "nusc", tmp_path / "conv", splits=("synthetic",), progress=False)
    token = NuScenesReader(tmp_path / "nusc", "v1.0-mini").sample_tokens()[1]
    by_id = load_frame_scene(tmp_path / "conv", "scene-0103_0001")  # the only split: found by itself
    by_index = load_frame_scene(tmp_path / "conv", 1, split="synthetic")
    by_token = load_frame_scene(tmp_path / "conv", token, nsweeps=10)
    rec = read_frame_table(tmp_path / "conv", "synthetic")[1]
    for s in (by_id, by_index, by_token):
        np.testing.assert_array_equal(s.gt_boxes, rec.boxes[:, :7])
        assert s.gt_names == tuple(rec.names) and len(s.gt_names) > 0
    np.testing.assert_array_equal(by_id.points, by_index.points)
    assert len(by_id.points) == rec.num_points and len(by_token.points) > 5 * len(by_id.points)
    # The sweeps land where the nuScenes reader puts them (same order, no min-distance filter).
    direct = NuScenesReader(tmp_path / "nusc", "v1.0-mini").sample(token, nsweeps=10, min_distance=0.0)
    np.testing.assert_allclose(by_token.points, direct.points[:, :4], atol=1e-4)
    with pytest.raises(FrameNotFoundError, match="frame 2 out of range: .* holds 2 frames"):
        load_frame_scene(tmp_path / "conv", 2)
    with pytest.raises(FrameNotFoundError, match="neither a frame id, a sample token nor an index"):
        load_frame_scene(tmp_path / "conv", "nope")
    with pytest.raises(FrameNotFoundError, match="no split 'x'"):
        load_frame_scene(tmp_path / "conv", 0, split="x")

    parser = argparse.ArgumentParser()
    add_frame_arguments(parser)
    png = tmp_path / "bev.png"
    args = parser.parse_args(["--data", str(tmp_path / "conv"), "--frame", token, "--bev", "--save", str(png)])
    assert run_frame(args) == 0
    assert read_png(png).shape[:2] == (900, 900)

    # Waymo, converted: the vehicle-frame points of the file's frame.
    top = dataclasses.replace(waymo_lidars()[0], width=300)
    sequence = generate_sequence(1, 2, "waymo", lidars=(top,), density=0.2, label_range=40.0)
    path = write_waymo_v1(sequence, tmp_path / "waymo" / "validation")
    convert_waymo(tmp_path / "waymo", tmp_path / "conv_waymo", splits=("validation",), progress=False)
    scene = load_frame_scene(tmp_path / "conv_waymo", 1, nsweeps=2)
    reference = list(waymo_v1.read_frames(path))
    keep = [f.points[:, 5] == -1 for f in reference]
    assert len(scene.points) == keep[1].sum() + keep[0].sum()
    np.testing.assert_array_equal(scene.points[: keep[1].sum()], reference[1].points[keep[1], :5])
