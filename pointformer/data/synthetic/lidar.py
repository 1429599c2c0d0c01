"""Spinning multi-beam LiDAR models and their pixel geometry.

A scan is a range image of ``H`` rows (beams) by ``W`` columns (azimuth steps). The pixel -> ray
geometry is Waymo's (``range_image_utils``; reference/formats-and-metrics.md C.1) for every
preset, so a reader that turns range images into points with that formula reproduces exactly the
points produced here:

* row ``h`` has inclination ``inclinations[h]``; row 0 is the highest beam (top-down order);
* column ``w`` has the sensor-frame azimuth ``az(w) = (2*((W - w) - 0.5)/W - 1)*pi - az_corr``
  with ``az_corr = atan2(E[1, 0], E[0, 0])`` (the extrinsic's yaw), i.e. the vehicle-frame
  azimuth of column ``w`` is ``(2*((W - w) - 0.5)/W - 1)*pi``: column 0 looks towards ~+pi
  (backwards) and the azimuth decreases with ``w``;
* the direction in the sensor frame is ``[cos(az)cos(incl), sin(az)cos(incl), sin(incl)]`` and a
  point is ``E[:3, :3] @ (range * direction) + E[:3, 3]`` in the vehicle frame.

Waymo stores ``beam_inclinations`` bottom-up (ascending): a writer stores ``inclinations[::-1]``
(or only min/max when ``uniform_inclinations``, as for the short-range lasers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# Waymo LaserName enum (dataset.proto).
WAYMO_LASER_IDS = {"TOP": 1, "FRONT": 2, "SIDE_LEFT": 3, "SIDE_RIGHT": 4, "REAR": 5}

# Pixel value of every channel where a laser has no return (Waymo: range <= 0 means no return).
NO_RETURN = -1.0


def _pose(x: float, y: float, z: float, yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    e = np.eye(4)
    e[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
    e[:3, 3] = (x, y, z)
    return e


def uniform_inclinations(low: float, high: float, rows: int) -> np.ndarray:
    """``(rows,)`` float64 top-down inclinations (rad) as Waymo derives them from min/max:
    ``low + (h + 0.5)/H * (high - low)`` for ``h = 0..H-1``, reversed (row 0 highest)."""
    h = np.arange(rows, dtype=np.float64)
    return (low + (h + 0.5) / rows * (high - low))[::-1].copy()


def horizon_dense_inclinations(low: float, high: float, rows: int, horizon: float = 0.0) -> np.ndarray:
    """``(rows,)`` float64 top-down inclinations (rad) from ``low`` to ``high`` (both included),
    spaced about 3x more densely near ``horizon`` than at the ends, like Waymo's TOP laser."""
    fine = np.linspace(low, high, 4001)
    density = 1.0 / (0.3 + np.abs(fine - horizon) / max(horizon - low, high - horizon))
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(fine))])
    cdf /= cdf[-1]
    return np.interp(np.linspace(0.0, 1.0, rows), cdf, fine)[::-1].copy()


@dataclass(frozen=True, eq=False)
class LidarSpec:
    """One spinning LiDAR: its range-image shape, beams, range limits, noise and mounting.

    Attributes:
        name: laser name (``"TOP"``, ``"FRONT"``, ``"SIDE_LEFT"``, ``"SIDE_RIGHT"``, ``"REAR"``
            for Waymo; ``"LIDAR_TOP"`` for nuScenes).
        laser_id: Waymo ``LaserName`` value (TOP=1 .. REAR=5); 0 for non-Waymo sensors.
        inclinations: ``(H,)`` float64 beam inclinations in radians, top-down (row 0 highest).
        width: ``W``, azimuth steps (columns) per rotation.
        extrinsic: ``(4, 4)`` float64 sensor -> vehicle transform.
        min_range, max_range: metres; hits outside give no return.
        range_noise: standard deviation of the Gaussian range noise (m).
        scan_duration: seconds per rotation (time stamps; scans are simulated as instantaneous).
        horizontal_fov: full horizontal field of view (rad) centred on the sensor's +x axis;
            ``2*pi`` for a full rotation. Columns outside it never return.
        num_returns: 1 or 2 (second returns at object edges and through vegetation).
        uniform_inclinations: whether ``inclinations`` follow Waymo's min/max formula (a writer
            then stores only min/max, as Waymo does for the short-range lasers).
        intensity_scale: intensities are ``reflectivity``-based values of order 0..1 (retro-
            reflectors up to ~3) times this factor (1 for Waymo; 255 for nuScenes, clipped).
        intensity_max: clip for intensities, or None.
        dropout: base probability that a hit gives no return (more for dark, far surfaces).
    """

    name: str
    laser_id: int
    inclinations: np.ndarray
    width: int
    extrinsic: np.ndarray
    min_range: float
    max_range: float
    range_noise: float = 0.01
    scan_duration: float = 0.1
    horizontal_fov: float = 2 * math.pi
    num_returns: int = 2
    uniform_inclinations: bool = False
    intensity_scale: float = 1.0
    intensity_max: float | None = None
    dropout: float = 0.01
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        incl = np.asarray(self.inclinations, dtype=np.float64)
        if incl.ndim != 1 or incl.size == 0 or np.any(np.diff(incl) > 0):
            raise ValueError("inclinations must be a non-empty (H,) array in top-down (non-increasing) order")
        ext = np.asarray(self.extrinsic, dtype=np.float64)
        if ext.shape != (4, 4):
            raise ValueError(f"extrinsic must be (4, 4), got {ext.shape}")
        if self.num_returns not in (1, 2):
            raise ValueError("num_returns must be 1 or 2")
        object.__setattr__(self, "inclinations", incl)
        object.__setattr__(self, "extrinsic", ext)

    @property
    def height(self) -> int:
        """``H``, the number of beams (rows)."""
        return int(self.inclinations.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)``."""
        return self.height, self.width

    @property
    def inclination_min(self) -> float:
        return float(self.inclinations[-1])

    @property
    def inclination_max(self) -> float:
        return float(self.inclinations[0])

    @property
    def azimuth_correction(self) -> float:
        """``az_corr = atan2(E[1, 0], E[0, 0])``: the extrinsic's yaw (rad)."""
        return math.atan2(self.extrinsic[1, 0], self.extrinsic[0, 0])

    def vehicle_azimuths(self) -> np.ndarray:
        """``(W,)`` float64 vehicle-frame azimuth (rad) of each column: ``(2*((W-w)-0.5)/W-1)*pi``."""
        w = np.arange(self.width, dtype=np.float64)
        return (2.0 * ((self.width - w) - 0.5) / self.width - 1.0) * math.pi

    def sensor_azimuths(self) -> np.ndarray:
        """``(W,)`` float64 sensor-frame azimuth (rad) of each column (C.1's ``az(w)``)."""
        return self.vehicle_azimuths() - self.azimuth_correction

    def column_in_fov(self) -> np.ndarray:
        """``(W,)`` bool: columns inside ``horizontal_fov`` (about the sensor's +x axis)."""
        az = self.sensor_azimuths()
        wrapped = np.arctan2(np.sin(az), np.cos(az))
        return np.abs(wrapped) <= self.horizontal_fov / 2 + 1e-12

    def directions(self) -> np.ndarray:
        """``(H, W, 3)`` float64 unit ray directions in the sensor frame."""
        if "dirs" not in self._cache:
            az = self.sensor_azimuths()[None, :]
            incl = self.inclinations[:, None]
            d = np.stack(
                np.broadcast_arrays(np.cos(az) * np.cos(incl), np.sin(az) * np.cos(incl), np.sin(incl)), axis=-1
            )
            d.setflags(write=False)
            self._cache["dirs"] = d
        return self._cache["dirs"]

    def vehicle_directions(self) -> np.ndarray:
        """``(H, W, 3)`` float64 unit ray directions in the vehicle frame (``E[:3, :3] @ dir``)."""
        return self.directions() @ self.extrinsic[:3, :3].T

    def points_from_range(self, range_image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Waymo's range image -> points conversion.

        Args:
            range_image: ``(H, W)`` or ``(H, W, C)`` (channel 0 = range in metres; <= 0 = none).

        Returns:
            ``(N, 3)`` float32 points in the vehicle frame, for the valid pixels in row-major
            order, and the ``(N, 2)`` int64 ``(row, column)`` of each.
        """
        r = np.asarray(range_image)
        r = r[..., 0] if r.ndim == 3 else r
        if r.shape != self.shape:
            raise ValueError(f"range image of {self.name} must be {self.shape}, got {r.shape}")
        rows, cols = np.nonzero(r > 0)
        d = self.directions()[rows, cols]
        p = (r[rows, cols].astype(np.float64)[:, None] * d) @ self.extrinsic[:3, :3].T + self.extrinsic[:3, 3]
        return p.astype(np.float32), np.stack([rows, cols], axis=1)


def waymo_lidars() -> tuple[LidarSpec, ...]:
    """Waymo's five lasers, in LaserName order: TOP (64 x 2650, inclination -17.6..+2.4 deg,
    denser near the horizon, 75 m, ~2.2 m high) and the four short-range lasers FRONT,
    SIDE_LEFT, SIDE_RIGHT, REAR (200 x 600, inclination -90..+30 deg, 20 m, limited FOV),
    all with two returns and 10 Hz rotation."""
    deg = math.pi / 180.0
    # Like real TOP calibrations, the TOP sensor's x axis is not the vehicle's (exercises az_corr).
    top = LidarSpec(
        name="TOP",
        laser_id=1,
        inclinations=horizon_dense_inclinations(-17.6 * deg, 2.4 * deg, 64, horizon=-1.0 * deg),
        width=2650,
        extrinsic=_pose(1.43, 0.0, 2.184, 148.0 * deg),
        min_range=0.7,
        max_range=75.0,
        range_noise=0.01,
        dropout=0.045,
    )
    short = dict(
        inclinations=uniform_inclinations(-90.0 * deg, 30.0 * deg, 200),
        width=600,
        min_range=0.3,
        max_range=20.0,
        range_noise=0.01,
        horizontal_fov=20.0 * deg,
        uniform_inclinations=True,
        dropout=0.05,
    )
    return (
        top,
        LidarSpec(name="FRONT", laser_id=2, extrinsic=_pose(4.07, 0.0, 0.69, 0.0), **short),
        LidarSpec(name="SIDE_LEFT", laser_id=3, extrinsic=_pose(3.25, 1.02, 0.98, 90.0 * deg), **short),
        LidarSpec(name="SIDE_RIGHT", laser_id=4, extrinsic=_pose(3.25, -1.02, 0.98, -90.0 * deg), **short),
        LidarSpec(name="REAR", laser_id=5, extrinsic=_pose(-1.16, 0.0, 0.46, 180.0 * deg), **short),
    )


def nuscenes_lidars() -> tuple[LidarSpec, ...]:
    """nuScenes LIDAR_TOP (Velodyne HDL-32E): 32 beams uniform in -30.67..+10.67 deg, 1084
    azimuth steps per 20 Hz sweep, 70 m, single return; sensor frame x right, y forward, z up
    (extrinsic: a -90 deg yaw, mounted at (0.94, 0, 1.84) m); intensity 0..255."""
    deg = math.pi / 180.0
    incl = np.linspace(10.67 * deg, -30.67 * deg, 32)
    return (
        LidarSpec(
            name="LIDAR_TOP",
            laser_id=0,
            inclinations=incl,
            width=1084,
            extrinsic=_pose(0.943713, 0.0, 1.84023, -90.0 * deg),
            min_range=1.0,
            max_range=70.0,
            range_noise=0.02,
            scan_duration=0.05,
            num_returns=1,
            intensity_scale=255.0,
            intensity_max=255.0,
            dropout=0.01,
        ),
    )


PRESETS = {"waymo": waymo_lidars, "nuscenes": nuscenes_lidars}


def preset_lidars(preset: str) -> tuple[LidarSpec, ...]:
    """The lasers of ``preset`` (``"waymo"`` or ``"nuscenes"``)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[preset]()
