"""Range image -> points against an independent per-pixel float64 loop."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pointformer.data.formats import DataFormatError
from pointformer.data.formats.range_image import matrix_to_pose6, range_image_to_points, row_inclinations


def _rot(roll: float, pitch: float, yaw: float) -> np.ndarray:
    rx = np.array([[1, 0, 0], [0, math.cos(roll), -math.sin(roll)], [0, math.sin(roll), math.cos(roll)]])
    ry = np.array([[math.cos(pitch), 0, math.sin(pitch)], [0, 1, 0], [-math.sin(pitch), 0, math.cos(pitch)]])
    rz = np.array([[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _transform(roll, pitch, yaw, t) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = _rot(roll, pitch, yaw)
    m[:3, 3] = t
    return m


def _reference(image, extrinsic, beam_inclinations, incl_min, incl_max, pixel_pose=None, frame_pose=None):
    """Per-pixel loop, written from the reference text (C.1), not from the vectorized code."""
    height, width, _ = image.shape
    points = []
    for h in range(height):
        # row h is the (H - 1 - h)-th beam from the bottom
        k = height - 1 - h
        if beam_inclinations is not None:
            incl = beam_inclinations[k]
        else:
            incl = incl_min + (k + 0.5) / height * (incl_max - incl_min)
        for w in range(width):
            r = float(image[h, w, 0])
            if r <= 0:
                continue
            az = (2 * ((width - w) - 0.5) / width - 1) * math.pi - math.atan2(extrinsic[1, 0], extrinsic[0, 0])
            p = np.array([r * math.cos(az) * math.cos(incl), r * math.sin(az) * math.cos(incl), r * math.sin(incl), 1])
            p = extrinsic @ p
            if pixel_pose is not None:
                roll, pitch, yaw, x, y, z = (float(v) for v in pixel_pose[h, w])
                p = _transform(roll, pitch, yaw, (x, y, z)) @ p
                if frame_pose is not None:
                    p = np.linalg.inv(frame_pose) @ p
            points.append([*p[:3], *image[h, w, 1:]])
    return np.array(points, dtype=np.float64).reshape(-1, 2 + image.shape[2])


def _image(rng, height, width):
    image = np.zeros((height, width, 4), np.float32)
    image[..., 0] = rng.uniform(0.5, 80, (height, width))
    image[..., 0][rng.random((height, width)) < 0.3] = -1  # no return
    image[..., 0][rng.random((height, width)) < 0.1] = 0
    image[..., 1] = rng.uniform(0, 2, (height, width))
    image[..., 2] = rng.uniform(0, 1, (height, width))
    image[..., 3] = rng.choice([-1.0, 1.0], (height, width))
    return image


@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("with_pose", [False, True])
def test_matches_per_pixel_reference(uniform, with_pose):
    rng = np.random.default_rng(1 + uniform + 2 * with_pose)
    height, width = 7, 23
    image = _image(rng, height, width)
    extrinsic = _transform(0.02, -0.03, 2.5, (1.4, 0.1, 2.2))  # large yaw: azimuth correction matters
    beams = None if uniform else np.sort(rng.uniform(-0.4, 0.1, height))
    incl_min, incl_max = -0.3, 0.05
    pixel_pose = frame_pose = None
    if with_pose:
        frame_pose = _transform(0.01, 0.02, 1.0, (100.0, -50.0, 3.0))
        base = matrix_to_pose6(frame_pose)
        pixel_pose = (base + rng.normal(0, [0.01, 0.01, 0.05, 0.5, 0.5, 0.05], (height, width, 6))).astype(np.float32)

    expected = _reference(image, extrinsic, beams, incl_min, incl_max, pixel_pose, frame_pose)
    incl = row_inclinations(height, beams, incl_min, incl_max)
    got = range_image_to_points(image, extrinsic, incl, pixel_pose, frame_pose)
    assert got.dtype == np.float32 and got.shape == (expected.shape[0], 6)
    assert expected.shape[0] == int((image[..., 0] > 0).sum())
    np.testing.assert_allclose(got[:, :3], expected[:, :3], rtol=0, atol=2e-5)
    np.testing.assert_array_equal(got[:, 3:], expected[:, 3:].astype(np.float32))


def test_row_inclinations_order():
    assert np.allclose(row_inclinations(4, None, -0.4, 0.4), [0.3, 0.1, -0.1, -0.3])
    assert np.allclose(row_inclinations(3, np.array([-0.2, 0.0, 0.1])), [0.1, 0.0, -0.2])
    with pytest.raises(DataFormatError, match="3 beam inclinations but the range image has 4 rows"):
        row_inclinations(4, np.array([-0.2, 0.0, 0.1]))


def test_geometry_of_a_single_pixel():
    # Identity extrinsic, one beam at inclination 0: column w looks at azimuth
    # (2 (W - w - 0.5) / W - 1) pi, so the middle columns of an even W straddle +x.
    width = 4
    image = np.zeros((1, width, 4), np.float32)
    image[0, :, 0] = 10.0
    pts = range_image_to_points(image, np.eye(4), np.zeros(1))
    az = np.arctan2(pts[:, 1], pts[:, 0])
    np.testing.assert_allclose(az, [0.75 * np.pi, 0.25 * np.pi, -0.25 * np.pi, -0.75 * np.pi], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(pts[:, :3], axis=1), 10.0, atol=1e-5)


def test_pose6_round_trip():
    m = _transform(0.1, -0.2, 2.9, (1.0, 2.0, 3.0))
    p = matrix_to_pose6(m)
    np.testing.assert_allclose(_transform(*p[:3], p[3:]), m, atol=1e-12)


def test_shape_errors():
    image = np.ones((4, 5, 4), np.float32)
    with pytest.raises(DataFormatError, match="row inclinations"):
        range_image_to_points(image, np.eye(4), np.zeros(3))
    with pytest.raises(DataFormatError, match="pixel pose shape"):
        range_image_to_points(image, np.eye(4), np.zeros(4), pixel_pose=np.zeros((4, 4, 6), np.float32))


def test_empty_image():
    pts = range_image_to_points(np.zeros((3, 4, 4), np.float32), np.eye(4), np.zeros(3))
    assert pts.shape == (0, 6) and pts.dtype == np.float32
