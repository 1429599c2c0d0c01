"""Waymo range images -> points, vectorized with numpy (float64 inside, float32 out).

The maths of ``waymo_open_dataset/utils/range_image_utils.py`` (reference §C.1):

* row inclinations: the calibration's ``beam_inclinations`` if given, else uniform
  ``min + (h + 0.5) / H * (max - min)`` for ``h = 0..H-1``; then reversed, so row 0 is the highest
  beam;
* column azimuth: ``((W - w - 0.5) / W * 2 - 1) * pi - atan2(E[1, 0], E[0, 0])`` for
  ``w = 0..W-1`` (column 0 looks backwards at about +pi, azimuth decreases to the right), with
  ``E`` the lidar -> vehicle extrinsic;
* lidar frame: ``r * [cos(az) cos(incl), sin(az) cos(incl), sin(incl)]``; vehicle frame:
  ``E[:3, :3] p + E[:3, 3]``;
* with per-pixel poses (TOP laser; ``[roll, pitch, yaw, x, y, z]`` vehicle -> global at the time
  the pixel was captured, rotation ``Rz(yaw) Ry(pitch) Rx(roll)``), points go to the global frame
  through their pixel's pose and back to the frame's vehicle frame through the inverse frame pose
  (rolling-shutter compensation);
* only pixels with ``range > 0`` are points; they come out in row-major pixel order.

The official code runs these steps in TensorFlow float32; here they run in float64, so results
agree with it to float32 rounding (about 1e-5 m at 75 m).
"""

from __future__ import annotations

import numpy as np

from pointformer.data.formats.errors import DataFormatError


def row_inclinations(
    height: int,
    beam_inclinations: np.ndarray | None = None,
    inclination_min: float = 0.0,
    inclination_max: float = 0.0,
) -> np.ndarray:
    """``(H,)`` float64 inclination (radians) of each range-image row, row 0 the highest.

    ``beam_inclinations`` (ascending, as stored in ``LaserCalibration``) wins when non-empty;
    otherwise the beams are spread uniformly over ``[inclination_min, inclination_max]``.
    """
    if beam_inclinations is not None and len(beam_inclinations) > 0:
        incl = np.asarray(beam_inclinations, dtype=np.float64)
        if incl.shape != (height,):
            raise DataFormatError(
                f"calibration has {incl.size} beam inclinations but the range image has {height} rows"
            )
    else:
        incl = inclination_min + (np.arange(height, dtype=np.float64) + 0.5) / height * (
            inclination_max - inclination_min
        )
    return incl[::-1].copy()


def column_azimuths(width: int, extrinsic: np.ndarray) -> np.ndarray:
    """``(W,)`` float64 azimuth (radians, lidar frame) of each range-image column."""
    extrinsic = np.asarray(extrinsic, dtype=np.float64)
    correction = np.arctan2(extrinsic[1, 0], extrinsic[0, 0])
    ratios = (width - np.arange(width, dtype=np.float64) - 0.5) / width
    return (ratios * 2.0 - 1.0) * np.pi - correction


def matrix_to_pose6(matrix: np.ndarray) -> np.ndarray:
    """``[roll, pitch, yaw, x, y, z]`` of a 4x4 rigid transform (rotation ``Rz(yaw) Ry(pitch) Rx(roll)``,
    pitch in [-pi/2, pi/2])."""
    m = np.asarray(matrix, dtype=np.float64)
    roll = np.arctan2(m[2, 1], m[2, 2])
    pitch = np.arcsin(np.clip(-m[2, 0], -1.0, 1.0))
    yaw = np.arctan2(m[1, 0], m[0, 0])
    return np.array([roll, pitch, yaw, m[0, 3], m[1, 3], m[2, 3]], dtype=np.float64)


def range_image_to_points(
    range_image: np.ndarray,
    extrinsic: np.ndarray,
    inclinations: np.ndarray,
    pixel_pose: np.ndarray | None = None,
    frame_pose: np.ndarray | None = None,
) -> np.ndarray:
    """Points of one range image, in the vehicle frame.

    Args:
        range_image: ``(H, W, C)`` float, channel 0 the range in metres (``<= 0``: no return);
            Waymo's C = 4 is ``[range, intensity, elongation, is_in_no_label_zone]``.
        extrinsic: ``(4, 4)`` lidar -> vehicle transform.
        inclinations: ``(H,)`` row inclinations in radians, row 0 the highest (``row_inclinations``).
        pixel_pose: optional ``(H, W, 6)`` per-pixel vehicle -> global ``[roll, pitch, yaw, x, y,
            z]`` (TOP laser).
        frame_pose: ``(4, 4)`` vehicle -> global pose of the frame; used (inverted) only with
            ``pixel_pose``, as in the official code.

    Returns:
        ``(N, 3 + C - 1)`` float32: ``x, y, z`` (metres, vehicle frame) then channels ``1..C-1``,
        one row per pixel with ``range > 0``, in row-major pixel order.
    """
    if range_image.ndim != 3 or range_image.shape[2] < 1:
        raise DataFormatError(f"range image must be (H, W, C), got shape {range_image.shape}")
    height, width, channels = range_image.shape
    inclinations = np.asarray(inclinations, dtype=np.float64)
    if inclinations.shape != (height,):
        raise DataFormatError(f"{inclinations.size} row inclinations for a range image of {height} rows")
    extrinsic = np.asarray(extrinsic, dtype=np.float64)
    if extrinsic.shape != (4, 4):
        raise DataFormatError(f"extrinsic must be 4x4, got shape {extrinsic.shape}")
    if pixel_pose is not None and pixel_pose.shape != (height, width, 6):
        raise DataFormatError(f"pixel pose shape {pixel_pose.shape} does not match range image ({height}, {width}, 6)")

    # One flat gather of the valid pixels (row-major order), then per-component float64 maths:
    # much faster than (N, 3) @ (3, 3) matmuls and (N, 3, 3) einsums on ~10^5 points.
    flat = range_image.reshape(height * width, channels)
    idx = np.flatnonzero(flat[:, 0] > 0)
    rows = idx // width
    cols = idx - rows * width
    valid = flat[idx]
    r = valid[:, 0].astype(np.float64)
    azimuth = column_azimuths(width, extrinsic)
    xy = r * np.cos(inclinations)[rows]
    lx = xy * np.cos(azimuth)[cols]
    ly = xy * np.sin(azimuth)[cols]
    lz = r * np.sin(inclinations)[rows]
    x, y, z = _rigid(extrinsic[:3, :3], extrinsic[:3, 3], lx, ly, lz)

    if pixel_pose is not None:
        pose = pixel_pose.reshape(height * width, 6)[idx].astype(np.float64)
        x, y, z = _apply_pose6(pose, x, y, z)
        if frame_pose is not None:
            frame_pose = np.asarray(frame_pose, dtype=np.float64)
            # inverse(frame_pose) = [R^T, -R^T t]
            rot_t = frame_pose[:3, :3].T
            x, y, z = _rigid(rot_t, -rot_t @ frame_pose[:3, 3], x, y, z)

    out = np.empty((idx.size, 3 + channels - 1), dtype=np.float32)
    out[:, 0] = x
    out[:, 1] = y
    out[:, 2] = z
    out[:, 3:] = valid[:, 1:]
    return out


def _rigid(rot: np.ndarray, trans: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray):
    """``rot @ [x, y, z] + trans`` on coordinate arrays."""
    (a, b, c), (d, e, f), (g, h, i) = rot.tolist()
    return (
        a * x + b * y + c * z + trans[0],
        d * x + e * y + f * z + trans[1],
        g * x + h * y + i * z + trans[2],
    )


def _apply_pose6(pose: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray):
    """``Rz(yaw) Ry(pitch) Rx(roll) [x, y, z] + t`` for ``(N, 6)`` poses, one rotation at a time."""
    roll, pitch, yaw = pose[:, 0], pose[:, 1], pose[:, 2]
    cr, sr = np.cos(roll), np.sin(roll)
    y, z = cr * y - sr * z, sr * y + cr * z
    cp, sp = np.cos(pitch), np.sin(pitch)
    x, z = cp * x + sp * z, cp * z - sp * x
    cy, sy = np.cos(yaw), np.sin(yaw)
    x, y = cy * x - sy * y, sy * x + cy * y
    return x + pose[:, 3], y + pose[:, 4], z + pose[:, 5]
