"""LiDAR presets and the Waymo pixel geometry (reference/formats-and-metrics.md C.1)."""

import math

import numpy as np
import pytest

from pointformer.data.synthetic.lidar import (
    LidarSpec,
    horizon_dense_inclinations,
    nuscenes_lidars,
    preset_lidars,
    uniform_inclinations,
    waymo_lidars,
)


def _c1_points(range_image, beam_inclinations_bottom_up, extrinsic):
    """C.1's conversion, written out independently (Waymo stores inclinations bottom-up)."""
    h, w = range_image.shape
    incl = np.asarray(beam_inclinations_bottom_up)[::-1]
    az_corr = math.atan2(extrinsic[1, 0], extrinsic[0, 0])
    out = []
    for row in range(h):
        for col in range(w):
            r = range_image[row, col]
            if r <= 0:
                continue
            az = (2 * ((w - col) - 0.5) / w - 1) * math.pi - az_corr
            p = r * np.array([math.cos(az) * math.cos(incl[row]), math.sin(az) * math.cos(incl[row]),
                              math.sin(incl[row])])  # fmt: skip
            out.append(extrinsic[:3, :3] @ p + extrinsic[:3, 3])
    return np.array(out)


def test_waymo_presets():
    top, front, left, right, rear = waymo_lidars()
    assert [s.name for s in (top, front, left, right, rear)] == ["TOP", "FRONT", "SIDE_LEFT", "SIDE_RIGHT", "REAR"]
    assert [s.laser_id for s in (top, front, left, right, rear)] == [1, 2, 3, 4, 5]
    assert top.shape == (64, 2650) and top.num_returns == 2 and top.max_range == 75.0
    assert math.isclose(math.degrees(top.inclination_max), 2.4)
    assert math.isclose(math.degrees(top.inclination_min), -17.6)
    spacing = -np.diff(top.inclinations)
    horizon_row = int(np.argmin(np.abs(top.inclinations)))
    assert spacing[horizon_row] < 0.5 * spacing[-1]  # denser near the horizon
    assert 2.0 < top.extrinsic[2, 3] < 2.4
    for s in (front, left, right, rear):
        assert s.shape == (200, 600) and s.max_range == 20.0 and s.uniform_inclinations
        assert 0 < s.column_in_fov().sum() < 600
        # The FOV looks outwards: the mean vehicle-frame direction of its columns is the mount yaw.
        az = s.vehicle_azimuths()[s.column_in_fov()]
        mean_dir = math.atan2(np.sin(az).mean(), np.cos(az).mean())
        yaw = math.atan2(s.extrinsic[1, 0], s.extrinsic[0, 0])
        assert abs(math.remainder(mean_dir - yaw, 2 * math.pi)) < 0.02


def test_nuscenes_preset():
    (lidar,) = nuscenes_lidars()
    assert lidar.shape == (32, 1084) and lidar.num_returns == 1 and lidar.max_range == 70.0
    # Sensor frame x right, y forward: sensor +y is vehicle +x, sensor +x is vehicle -y.
    np.testing.assert_allclose(lidar.extrinsic[:3, :3] @ [0, 1, 0], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(lidar.extrinsic[:3, :3] @ [1, 0, 0], [0, -1, 0], atol=1e-12)
    assert math.isclose(lidar.extrinsic[2, 3], 1.84023)
    with pytest.raises(ValueError):
        preset_lidars("kitti")


def test_pixel_geometry_matches_c1():
    top = waymo_lidars()[0]
    vaz = top.vehicle_azimuths()
    assert math.pi - vaz[0] < 2 * math.pi / top.width  # column 0 looks towards ~+pi
    assert np.all(np.diff(vaz) < 0)  # azimuth decreases with the column
    assert top.inclinations[0] == top.inclinations.max()  # row 0 is the highest beam
    # Vehicle-frame ray directions: azimuth of column w is C.1's, whatever the extrinsic yaw.
    d = top.vehicle_directions()
    np.testing.assert_allclose(np.arctan2(d[10, :, 1], d[10, :, 0]), np.arctan2(np.sin(vaz), np.cos(vaz)), atol=1e-9)
    np.testing.assert_allclose(np.arcsin(d[:, 5, 2]), top.inclinations, atol=1e-12)

    rng = np.random.default_rng(0)
    for spec in (top, waymo_lidars()[2], nuscenes_lidars()[0]):
        ri = rng.uniform(1.0, 50.0, spec.shape)
        ri[rng.random(spec.shape) < 0.3] = -1.0
        pts, rc = spec.points_from_range(ri)
        assert pts.dtype == np.float32 and len(pts) == (ri > 0).sum()
        # Only a sample of pixels through the slow independent formula.
        sub = np.full(spec.shape, -1.0)
        sub[:3] = ri[:3]
        ref = _c1_points(sub, spec.inclinations[::-1], spec.extrinsic)
        np.testing.assert_allclose(spec.points_from_range(sub)[0], ref, atol=1e-4)


def test_inclination_helpers():
    u = uniform_inclinations(-1.0, 1.0, 4)
    np.testing.assert_allclose(u, [0.75, 0.25, -0.25, -0.75])
    h = horizon_dense_inclinations(-0.3, 0.05, 64)
    assert h[0] == pytest.approx(0.05) and h[-1] == pytest.approx(-0.3) and np.all(np.diff(h) < 0)
    with pytest.raises(ValueError):
        LidarSpec("X", 0, np.array([0.0, 0.1]), 10, np.eye(4), 0.1, 10.0)  # not top-down
