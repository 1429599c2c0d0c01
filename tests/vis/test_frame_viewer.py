"""The frame viewer: colours, box wireframes, BEV pictures and headless Open3D rendering."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from pointformer.structures.boxes import Boxes3D
from pointformer.vis import BevGrid, FrameScene, box_corners, box_wireframes, colormap, point_colors, read_png
from pointformer.vis.bev import render_frame_bev, write_png
from pointformer.vis.scene import GT_COLOR, PRED_COLOR

GT = np.round(np.array(GT_COLOR) * 255)
PRED = np.round(np.array(PRED_COLOR) * 255)


def luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.2126, 0.7152, 0.0722])


def near(image: np.ndarray, color: np.ndarray, tol: int = 0) -> np.ndarray:
    return np.abs(image.astype(np.int64) - color).max(axis=-1) <= tol


def make_scene(num_ground: int = 6000, seed: int = 0) -> FrameScene:
    """Ground points, a car-sized cluster, one GT box (ahead-left, heading 0.7) and one prediction
    (behind-right, heading -2.0)."""
    rng = np.random.default_rng(seed)
    ground = rng.uniform([-30, -30, -0.05], [30, 30, 0.05], (num_ground, 3))
    car = rng.uniform([8, 3, 0], [12, 7, 1.7], (800, 3))
    points = np.concatenate([ground, car]).astype(np.float32)
    return FrameScene(
        points=points,
        intensity=rng.random(len(points)).astype(np.float32),
        gt_boxes=[[10.0, 5.0, 0.85, 4.8, 2.1, 1.7, 0.7]],
        gt_names=["vehicle"],
        pred_boxes=[[-10.0, -5.0, 0.85, 4.6, 2.0, 1.6, -2.0]],
        pred_scores=[0.8],
        pred_names=["vehicle"],
    )


def test_colormap_is_monotone_and_in_range() -> None:
    t = np.linspace(0.0, 1.0, 1001)
    rgb = colormap(t)
    assert rgb.shape == (1001, 3) and rgb.dtype == np.float32
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    assert np.all(np.diff(luminance(rgb.astype(np.float64))) >= -1e-6), "lightness must not decrease"
    assert luminance(rgb[-1]) - luminance(rgb[0]) > 0.6
    # Out of range values clip to the ends; NaN maps to the low end.
    assert np.array_equal(colormap(np.array([-3.0, 7.0, np.nan])), colormap(np.array([0.0, 1.0, 0.0])))


def test_point_colors_follow_height_and_intensity() -> None:
    points = np.zeros((50, 3), np.float32)
    points[:, 2] = np.linspace(-2, 4, 50)
    scene = FrameScene(points, intensity=np.linspace(1.0, 0.0, 50))
    by_height = luminance(point_colors(scene, "height", value_range=(-2, 4)).astype(np.float64))
    assert np.all(np.diff(by_height) >= -1e-6) and by_height[-1] > by_height[0]
    by_intensity = luminance(point_colors(scene, "intensity").astype(np.float64))
    assert np.all(np.diff(by_intensity) <= 1e-6) and by_intensity[0] > by_intensity[-1]
    with pytest.raises(ValueError, match="no intensity"):
        point_colors(FrameScene(points), "intensity")
    with pytest.raises(ValueError, match="height' or 'intensity"):
        point_colors(scene, "range")


def test_scene_validation() -> None:
    with pytest.raises(ValueError, match=r"\(N, C >= 3\)"):
        FrameScene(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="gt_names"):
        FrameScene(np.zeros((4, 3)), gt_boxes=np.zeros((2, 7)), gt_names=["car"])
    scene = FrameScene(np.zeros((4, 3)), pred_boxes=np.zeros((2, 7)))
    assert scene.pred_scores.tolist() == [1.0, 1.0] and scene.pred_names == ("", "")
    kept = scene.with_predictions(np.zeros((3, 7)), [0.1, 0.5, 0.9], ["a", "b", "c"]).filter_predictions(0.5)
    assert kept.pred_names == ("b", "c") and len(kept.pred_boxes) == 2


def test_box_corners_match_boxes3d() -> None:
    boxes = np.random.default_rng(0).uniform([-20, -20, -1, 1, 1, 1, -math.pi], [20, 20, 2, 5, 3, 2, math.pi], (6, 7))
    expected = Boxes3D(torch.from_numpy(boxes)).corners().numpy()
    np.testing.assert_allclose(box_corners(boxes), expected, atol=1e-9)


def test_wireframe_heading_mark_points_forward() -> None:
    boxes = np.array([[1.0, 2.0, 0.5, 4.0, 2.0, 1.5, 0.9], [-3.0, 0.0, 1.0, 2.0, 1.0, 1.0, -2.5]])
    vertices, lines = box_wireframes(boxes)
    assert vertices.shape == (20, 3) and lines.shape == (30, 2) and lines.max() == 19
    for i, box in enumerate(boxes):
        centre, front = vertices[10 * i + 8], vertices[10 * i + 9]
        np.testing.assert_allclose(centre, box[:3], atol=1e-9)
        np.testing.assert_allclose(
            front - centre, [box[3] / 2 * math.cos(box[6]), box[3] / 2 * math.sin(box[6]), 0], atol=1e-9
        )
    assert box_wireframes(boxes, heading_mark=False)[1].shape == (24, 2)


def test_bev_grid_orientation() -> None:
    grid = BevGrid((-10, 30), (-20, 20), pixels_per_metre=4)
    assert grid.shape == (160, 160)
    (r0, c0), (r1, c1), (r2, c2) = grid.to_pixels(np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]]))
    assert c1 > c0 and r1 == r0, "+x (forward) is to the right"
    assert r2 < r0 and c2 == c0, "+y (left) is up"


def test_bev_picture_boxes_and_heading_ticks(tmp_path) -> None:
    scene = make_scene()
    grid = BevGrid((-32, 32), (-32, 32), pixels_per_metre=8)
    path = tmp_path / "bev.png"
    write_png(str(path), render_frame_bev(scene, grid, box_thickness=1))
    image = read_png(path)
    assert image.shape == (512, 512, 3)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20, "points in many colours"
    for box, color in ((scene.gt_boxes[0], GT), (scene.pred_boxes[0], PRED)):
        rows, cols = np.nonzero(near(image, color))
        assert len(rows) > 50
        # The box colour lies around the box: within its half-diagonal of the centre.
        r, c = grid.to_pixels(box[:2])
        radius = np.hypot(box[3], box[4]) / 2 * grid.pixels_per_metre + 2
        assert np.all(np.hypot(rows - r, cols - c) <= radius)
        # Heading tick: drawn from the centre towards the front, not towards the rear.
        direction = np.array([math.cos(box[6]), math.sin(box[6])])
        ahead = np.round(grid.to_pixels(box[:2] + 0.3 * box[3] * direction)).astype(int)
        behind = np.round(grid.to_pixels(box[:2] - 0.3 * box[3] * direction)).astype(int)
        assert near(image[ahead[0], ahead[1]], color), "tick pixel ahead of the centre"
        assert not near(image[behind[0], behind[1]], color), "nothing drawn behind the centre"


def test_bev_picture_by_intensity_differs() -> None:
    scene = make_scene(num_ground=2000)
    grid = BevGrid((-32, 32), (-32, 32), pixels_per_metre=4)
    assert not np.array_equal(render_frame_bev(scene, grid), render_frame_bev(scene, grid, color="intensity"))


def _open3d_or_skip():
    from pointformer.vis.open3d_viewer import import_open3d

    try:
        return import_open3d()
    except ImportError as e:
        pytest.skip(f"Open3D not importable: {e}")


def test_offscreen_render_shows_points_and_boxes(tmp_path) -> None:
    _open3d_or_skip()
    from pointformer.vis.open3d_viewer import render_offscreen

    scene = make_scene()
    path = tmp_path / "frame.png"
    image = render_offscreen(scene, path, width=480, height=270)
    assert image.shape == (270, 480, 3)
    decoded = read_png(path)
    assert np.array_equal(decoded, image)
    assert len(np.unique(decoded.reshape(-1, 3), axis=0)) > 20, "not blank: points in many colours"
    assert near(decoded, GT, tol=8).sum() > 30, "ground-truth wireframe visible"
    assert near(decoded, PRED, tol=8).sum() > 30, "prediction wireframe visible"
    # The default chase camera looks forward from behind the ego: the GT box (ahead, left) is in
    # the upper half of the picture, left of centre; the prediction (behind, right) is lower right.
    gt_rows, gt_cols = np.nonzero(near(decoded, GT, tol=8))
    pred_rows, pred_cols = np.nonzero(near(decoded, PRED, tol=8))
    assert gt_cols.mean() < 240 < pred_cols.mean()
    assert gt_rows.mean() < pred_rows.mean()


def test_missing_open3d_is_a_clear_error(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "open3d", None)  # makes `import open3d` raise ImportError
    from pointformer.vis.open3d_viewer import render_offscreen, show

    for call in (lambda: render_offscreen(make_scene(100), tmp_path / "x.png"), lambda: show(make_scene(100))):
        with pytest.raises(ImportError, match=r"pip install open3d-cpu==0\.20\.0.*libusb-1\.0-0"):
            call()
    assert not (tmp_path / "x.png").exists()
