"""The synthetic world: a street with ground, buildings, street furniture and moving objects.

World frame: right-handed, z up, metres. Everything is laid out in road coordinates ``(s, d)``:
``s`` is the arc length along the road centreline (a circular arc of constant curvature, or a
straight line), ``d`` the lateral offset, positive to the left. Traffic drives on the right:

=================  ==========================  ===============================================
``|d|`` (m)        band                        contents
=================  ==========================  ===============================================
0 - 3.5, 3.5 - 7   inner / outer lane          moving vehicles (cars, trucks, buses); the ego
                                               drives in the right inner lane
7 - 8.6            bike lane                   cyclists
8.6 - 11           parking                     parked cars; construction zones of barriers
                                               and traffic cones
11 - 12.6          furniture strip             signs on poles, lamp posts, trees, bins, bushes
12.6 - 15.8        sidewalk (two walking       walking pedestrians (one direction per band)
                   bands)
15.8 - 17.3        building fronts             standing pedestrians
>= 17.5            buildings                   boxes 4-25 m high, with gaps (alleys)
=================  ==========================  ===============================================

Every object belongs to a band and moves with the band's speed ``ds/dt`` (0 for static bands),
so within a band the configuration moves rigidly (a shift along a constant-curvature road is a
rotation about its centre): objects placed without overlap at t = 0 never overlap later, and
bands are disjoint in ``d``. Occlusion arises from the ray casting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pointformer.data.synthetic.classes import CLASS_INDEX, CLASSES

# Materials of primitives (they set intensity, elongation and second returns).
DIFFUSE, VEGETATION, RETROREFLECTIVE = 0, 1, 2
# Primitive shapes.
BOX, CYLINDER = 0, 1

LANE_WIDTH = 3.5
BIKE = (7.0, 8.6)
PARKING = (8.6, 11.0)
FURNITURE = (11.0, 12.6)
WALK = ((12.6, 14.2), (14.2, 15.8))
STANDING = (15.8, 17.3)
BUILDINGS_FROM = 17.5
EGO_LATERAL = -1.75
# The ego's footprint around its origin (rear axle on the ground): x in [-1.1, 3.9], |y| <= 1.05.
EGO_EXTENT = (-1.1, 3.9, 1.05)


def _wrap(a):
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


@dataclass(frozen=True)
class Road:
    """The road centreline: starts at ``origin`` (world x, y) with ``heading`` (rad), curvature
    ``curvature`` (1/m, positive turning left; 0 = straight)."""

    origin: tuple[float, float]
    heading: float
    curvature: float

    def pose(self, s, d) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World ``x, y`` (m) of road coordinates ``(s, d)`` and the road's yaw there (rad);
        float64 arrays broadcast from ``s`` and ``d``."""
        s, d = np.broadcast_arrays(np.asarray(s, dtype=np.float64), np.asarray(d, dtype=np.float64))
        k, h0 = self.curvature, self.heading
        yaw = h0 + k * s
        if abs(k) < 1e-12:
            xc, yc = self.origin[0] + s * math.cos(h0), self.origin[1] + s * math.sin(h0)
        else:
            xc = self.origin[0] + (np.sin(yaw) - math.sin(h0)) / k
            yc = self.origin[1] - (np.cos(yaw) - math.cos(h0)) / k
        return xc - d * np.sin(yaw), yc + d * np.cos(yaw), yaw

    def frenet(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Road coordinates ``(s, d)`` of world points (float64 arrays)."""
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        k, h0 = self.curvature, self.heading
        px, py = x - self.origin[0], y - self.origin[1]
        if abs(k) < 1e-12:
            return px * math.cos(h0) + py * math.sin(h0), -px * math.sin(h0) + py * math.cos(h0)
        cx, cy = -math.sin(h0) / k, math.cos(h0) / k  # centre relative to the origin
        v0x, v0y, vx, vy = -cx, -cy, px - cx, py - cy
        ang = np.arctan2(v0x * vy - v0y * vx, v0x * vx + v0y * vy)
        return ang / k, 1.0 / k - math.copysign(1.0, k) * np.hypot(vx, vy)


@dataclass(frozen=True, eq=False)
class HeightField:
    """Ground: a continuous piecewise-planar height field.

    ``heights`` ``(NY, NX)`` float64 are the ground heights (m) at the vertices
    ``(origin[0] + i*cell, origin[1] + j*cell)`` (``heights[j, i]``). Each cell is split into two
    triangles along its diagonal from ``(i+1, j)`` to ``(i, j+1)``; the ground is planar on each
    triangle. Outside the grid the height is that of the nearest grid point.
    """

    origin: tuple[float, float]
    cell: float
    heights: np.ndarray

    def height(self, x, y) -> np.ndarray:
        """Ground height (m) at world ``(x, y)``, float64, broadcast."""
        x, y = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
        ny, nx = self.heights.shape
        fx = np.clip((x - self.origin[0]) / self.cell, 0.0, nx - 1.0)
        fy = np.clip((y - self.origin[1]) / self.cell, 0.0, ny - 1.0)
        i = np.minimum(np.floor(fx).astype(np.int64), nx - 2)
        j = np.minimum(np.floor(fy).astype(np.int64), ny - 2)
        u, v = fx - i, fy - j
        h = self.heights
        h00, h10, h01, h11 = h[j, i], h[j, i + 1], h[j + 1, i], h[j + 1, i + 1]
        lower = h00 + (h10 - h00) * u + (h01 - h00) * v
        upper = h11 + (h01 - h11) * (1 - u) + (h10 - h11) * (1 - v)
        return np.where(u + v <= 1.0, lower, upper)

    def gradient(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """``(dh/dx, dh/dy)`` of the triangle containing each point (float64)."""
        e = 1e-4
        return (
            (self.height(np.asarray(x) + e, y) - self.height(np.asarray(x) - e, y)) / (2 * e),
            (self.height(x, np.asarray(y) + e) - self.height(x, np.asarray(y) - e)) / (2 * e),
        )

    @classmethod
    def from_function(cls, fn, x_range, y_range, cell: float) -> HeightField:
        """Samples ``fn(x, y)`` (vectorized, metres) at the vertices covering the ranges."""
        nx = int(math.ceil((x_range[1] - x_range[0]) / cell)) + 1
        ny = int(math.ceil((y_range[1] - y_range[0]) / cell)) + 1
        xs = x_range[0] + cell * np.arange(nx)
        ys = y_range[0] + cell * np.arange(ny)
        return cls((float(x_range[0]), float(y_range[0])), float(cell), fn(xs[None, :], ys[:, None]).astype(np.float64))


@dataclass(frozen=True, eq=False)
class Primitives:
    """Solid shapes the rays intersect: upright oriented boxes and vertical cylinders.

    All arrays have ``P`` rows:
        shape: ``(P,)`` int8, ``BOX`` or ``CYLINDER``.
        center: ``(P, 3)`` float64 world centre (m); for cylinders the axis at mid-height.
        half: ``(P, 3)`` float64 half extents along the shape's own axes (m); cylinders
            ``(radius, radius, half height)``.
        yaw: ``(P,)`` float64 rotation about +z (rad, counter-clockwise from world +x).
        reflectivity: ``(P,)`` float64 (diffuse albedo ~0.05-0.6; retro-reflectors 1-3).
        material: ``(P,)`` int8 ``DIFFUSE``, ``VEGETATION`` or ``RETROREFLECTIVE``.
        object: ``(P,)`` int32 index of the labelled object a shape belongs to, -1 for the
            static world.
    """

    shape: np.ndarray
    center: np.ndarray
    half: np.ndarray
    yaw: np.ndarray
    reflectivity: np.ndarray
    material: np.ndarray
    object: np.ndarray

    def __len__(self) -> int:
        return int(self.shape.shape[0])

    @classmethod
    def empty(cls) -> Primitives:
        return cls.build([], [], [], [], [], [], [])

    @classmethod
    def build(cls, shape, center, half, yaw, reflectivity, material, obj) -> Primitives:
        return cls(
            np.asarray(shape, dtype=np.int8).reshape(-1),
            np.asarray(center, dtype=np.float64).reshape(-1, 3),
            np.asarray(half, dtype=np.float64).reshape(-1, 3),
            np.asarray(yaw, dtype=np.float64).reshape(-1),
            np.asarray(reflectivity, dtype=np.float64).reshape(-1),
            np.asarray(material, dtype=np.int8).reshape(-1),
            np.asarray(obj, dtype=np.int32).reshape(-1),
        )

    @classmethod
    def cat(cls, parts: list[Primitives]) -> Primitives:
        names = ("shape", "center", "half", "yaw", "reflectivity", "material", "object")
        return cls(*(np.concatenate([getattr(p, n) for p in parts]) for n in names))


@dataclass(frozen=True, eq=False)
class ObjectTracks:
    """The ``M`` labelled objects of a scene and their motion in road coordinates.

    Attributes:
        ids: ``(M,)`` str, persistent 32-hex-digit ids (Waymo ``id`` / nuScenes instance token).
        class_index: ``(M,)`` int8 index into ``classes.CLASSES``.
        size: ``(M, 3)`` float64 ``(dx, dy, dz)`` in metres (length, width, height).
        s0: ``(M,)`` float64 road coordinate ``s`` of the box centre at t = 0 (m).
        d: ``(M,)`` float64 lateral offset of the box centre (m, constant).
        speed: ``(M,)`` float64 ``ds/dt`` along the centreline (m/s; 0 = static).
        yaw_offset: ``(M,)`` float64 heading relative to the road direction (rad).
        elevation: ``(M,)`` float64 height of the box bottom above the ground (m; signs ~2 m).
        reflectivity: ``(M,)`` float64; material: ``(M,)`` int8 (see ``Primitives``).
    """

    ids: np.ndarray
    class_index: np.ndarray
    size: np.ndarray
    s0: np.ndarray
    d: np.ndarray
    speed: np.ndarray
    yaw_offset: np.ndarray
    elevation: np.ndarray
    reflectivity: np.ndarray
    material: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def subset(self, index: np.ndarray) -> ObjectTracks:
        names = ("ids", "class_index", "size", "s0", "d", "speed", "yaw_offset", "elevation", "reflectivity",
                 "material")  # fmt: skip
        return ObjectTracks(*(getattr(self, n)[index] for n in names))


@dataclass(frozen=True, eq=False)
class ObjectStates:
    """Objects at one time, in the world frame: ``boxes`` ``(M, 7)`` float64 ``[x, y, z, dx, dy,
    dz, heading]`` (z = box centre, heading in [-pi, pi)); ``velocity`` and ``acceleration``
    ``(M, 3)`` float64 (m/s, m/s^2)."""

    boxes: np.ndarray
    velocity: np.ndarray
    acceleration: np.ndarray


@dataclass(frozen=True)
class EgoMotion:
    """The ego drives at ``speed`` m/s along the road at lateral offset ``d``, from ``s0``."""

    s0: float
    d: float
    speed: float


@dataclass(frozen=True, eq=False)
class Scene:
    """A static world plus moving objects and the ego trajectory.

    ``static`` primitives have ``object == -1``. ``objects`` are the labelled objects;
    ``object_primitives(t)`` gives their shapes at time ``t`` (s).
    """

    road: Road
    ground: HeightField
    static: Primitives
    objects: ObjectTracks
    ego: EgoMotion
    # Labelled objects' shapes are their label boxes shrunk by this margin (m) on every side, so
    # that noisy returns on their faces stay inside the label (real labels are slightly loose).
    surface_margin: float = 0.03

    def ego_pose(self, t: float) -> np.ndarray:
        """``(4, 4)`` float64 vehicle -> world at time ``t`` (s): yaw along the road, origin on the
        ground (no pitch or roll)."""
        x, y, yaw = self.road.pose(self.ego.s0 + self.ego.speed * t, self.ego.d)
        pose = np.eye(4)
        c, s = math.cos(float(yaw)), math.sin(float(yaw))
        pose[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
        pose[:3, 3] = (float(x), float(y), float(self.ground.height(x, y)))
        return pose

    def object_states(self, t: float, index: np.ndarray | None = None) -> ObjectStates:
        """World-frame boxes, velocities and accelerations of the objects (or ``index``) at ``t``."""
        obj = self.objects if index is None else self.objects.subset(index)
        s = obj.s0 + obj.speed * t
        x, y, road_yaw = self.road.pose(s, obj.d)
        z = self.ground.height(x, y) + obj.elevation + obj.size[:, 2] / 2
        heading = _wrap(road_yaw + obj.yaw_offset)
        boxes = np.concatenate([np.stack([x, y, z], 1), obj.size, heading[:, None]], axis=1)
        k = self.road.curvature
        along = obj.speed * (1.0 - k * obj.d)  # speed on the parallel curve at offset d
        vx, vy = along * np.cos(road_yaw), along * np.sin(road_yaw)
        gx, gy = self.ground.gradient(x, y)
        vel = np.stack([vx, vy, gx * vx + gy * vy], axis=1)
        centripetal = obj.speed**2 * k * (1.0 - k * obj.d)
        acc = np.stack([-centripetal * np.sin(road_yaw), centripetal * np.cos(road_yaw), np.zeros_like(x)], 1)
        return ObjectStates(boxes, vel, acc)

    def object_primitives(self, t: float, index: np.ndarray) -> Primitives:
        """Shapes of objects ``index`` at ``t``; their ``object`` field is the position in ``index``."""
        states = self.object_states(t, index)
        b = states.boxes
        half = np.maximum(b[:, 3:6] / 2 - self.surface_margin, 0.01)
        obj = self.objects
        return Primitives.build(
            np.full(len(index), BOX), b[:, :3], half, b[:, 6], obj.reflectivity[index], obj.material[index],
            np.arange(len(index)),
        )  # fmt: skip


# --- scene generation ---------------------------------------------------------------------------


class _Builder:
    """Accumulates objects and static primitives while laying out the street."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.obj: dict[str, list] = {k: [] for k in ("cls", "size", "s0", "d", "speed", "yaw", "elev", "refl", "mat")}
        self.prims: list[tuple] = []

    def add_object(self, cls: str, size, s0, d, speed, yaw, elev=0.0, refl=None, mat=DIFFUSE) -> None:
        if refl is None:
            refl = {
                "car": self.rng.uniform(0.1, 0.6),
                "truck": self.rng.uniform(0.15, 0.5),
                "bus": self.rng.uniform(0.2, 0.5),
                "pedestrian": self.rng.uniform(0.1, 0.35),
                "cyclist": self.rng.uniform(0.15, 0.4),
            }[cls]
        for key, val in zip(self.obj, (CLASS_INDEX[cls], size, s0, d, speed, yaw, elev, refl, mat), strict=True):
            self.obj[key].append(val)

    def add_prim(self, shape, s, d, z_rel, half, yaw, refl, mat=DIFFUSE) -> None:
        """A static primitive at road coordinates ``(s, d)``, centre ``z_rel`` above the ground,
        ``yaw`` relative to the road."""
        self.prims.append((shape, s, d, z_rel, tuple(half), yaw, refl, mat))


def _fit_lateral(rng, band, size, yaw_sigma, yaw_max):
    """A yaw offset and a lateral position inside ``band`` (|d| range) for a box of ``size``."""
    lo, hi = band
    for _ in range(4):
        yaw = float(np.clip(rng.normal(0.0, yaw_sigma), -yaw_max, yaw_max)) if yaw_sigma > 0 else 0.0
        half_w = abs(size[0] / 2 * math.sin(yaw)) + abs(size[1] / 2 * math.cos(yaw))
        if hi - lo >= 2 * half_w + 0.1:
            centre = (lo + hi) / 2
            slack = (hi - lo) / 2 - half_w - 0.05
            return yaw, centre + rng.uniform(-slack, slack) * 0.6, half_w
        yaw_sigma = 0.0
    return 0.0, (lo + hi) / 2, size[1] / 2


def _along_half(size, yaw):
    return abs(size[0] / 2 * math.cos(yaw)) + abs(size[1] / 2 * math.sin(yaw))


def _vehicle_class(rng) -> str:
    u = rng.uniform()
    return "car" if u < 0.86 else ("truck" if u < 0.94 else "bus")


def _flow_range(ego: EgoMotion, speed: float, duration: float, reach: float) -> tuple[float, float]:
    """Initial ``s`` interval that keeps a band populated within ``reach`` of the ego over time."""
    rel = np.array([0.0, (ego.speed - speed) * duration])
    return ego.s0 + rel.min() - reach, ego.s0 + rel.max() + reach


def _fill_band(b: _Builder, s_range, sample, gap, reserve=None) -> None:
    """Sequentially places items along ``s`` in ``s_range``: ``sample(s_start)`` places one item
    whose rear is at ``s_start`` and returns its length along ``s``; ``gap()`` the spacing."""
    s = s_range[0] + gap()
    while s < s_range[1]:
        if reserve is not None and reserve[0] - 0.5 < s < reserve[1]:
            s = reserve[1] + gap()
            continue
        length = sample(s, reserve)
        s += length + gap()


def _populate_side(
    b: _Builder, rng, side: float, ego: EgoMotion, ego_reserve, duration: float, reach: float, dens: float
) -> None:
    """Lays out one side of the street (``side`` -1: right, forward traffic; +1: left, oncoming)."""
    direction = -side  # +1 on the right side
    yaw_dir = 0.0 if direction > 0 else math.pi

    # Driving lanes.
    for lane in (0, 1):
        band = (lane * LANE_WIDTH, (lane + 1) * LANE_WIDTH)
        is_ego_lane = side < 0 and lane == 0
        speed = ego.speed if is_ego_lane else direction * rng.uniform(5.0, 14.0)

        def place_vehicle(s, reserve, band=band, speed=speed):
            cls = _vehicle_class(rng)
            size = CLASSES[CLASS_INDEX[cls]].sample_size(rng)
            yaw, dd, _ = _fit_lateral(rng, band, size, 0.015, 0.04)
            half = _along_half(size, yaw)
            if reserve is not None and s + 2 * half > reserve[0] and s < reserve[1]:
                return reserve[1] - s
            b.add_object(cls, size, s + half, side * dd, speed, yaw_dir + yaw)
            return 2 * half

        _fill_band(b, _flow_range(ego, speed, duration, reach), place_vehicle,
                   lambda: 4.0 + rng.exponential(18.0 / dens), ego_reserve if is_ego_lane else None)  # fmt: skip

    # Bike lane.
    speed = direction * rng.uniform(3.0, 6.0)

    def place_cyclist(s, reserve, speed=speed):
        size = CLASSES[CLASS_INDEX["cyclist"]].sample_size(rng)
        yaw, dd, _ = _fit_lateral(rng, BIKE, size, 0.03, 0.1)
        half = _along_half(size, yaw)
        b.add_object("cyclist", size, s + half, side * dd, speed, yaw_dir + yaw)
        return 2 * half

    _fill_band(b, _flow_range(ego, speed, duration, reach), place_cyclist,
               lambda: 3.0 + rng.exponential(30.0 / dens))  # fmt: skip

    # Parking, with construction zones of barriers and cones.
    static_range = _flow_range(ego, 0.0, duration, reach)

    def place_parked(s, reserve):
        u = rng.uniform()
        if u < 0.06:  # a construction zone
            start, end = s, s + rng.uniform(10.0, 25.0)
            while s < end:
                cls = "barrier" if rng.uniform() < 0.55 else "traffic_cone"
                size = CLASSES[CLASS_INDEX[cls]].sample_size(rng)
                yaw, dd, _ = _fit_lateral(rng, PARKING, size, 0.05 if cls == "barrier" else 0.0, 0.15)
                if cls == "traffic_cone":
                    yaw = rng.uniform(-math.pi, math.pi)
                half = _along_half(size, yaw)
                b.add_object(cls, size, s + half, side * dd, 0.0, yaw_dir + yaw,
                             refl=rng.uniform(0.8, 1.5), mat=RETROREFLECTIVE)  # fmt: skip
                s += 2 * half + rng.uniform(0.3, 2.0)
            return s - start
        if u < 0.35:  # an empty slot
            return rng.uniform(3.0, 8.0) / dens
        size = CLASSES[CLASS_INDEX["car"]].sample_size(rng)
        yaw, dd, _ = _fit_lateral(rng, PARKING, size, 0.03, 0.08)
        half = _along_half(size, yaw)
        b.add_object("car", size, s + half, side * dd, 0.0, yaw_dir + yaw)
        return 2 * half

    _fill_band(b, static_range, place_parked, lambda: rng.uniform(0.6, 2.0))

    # Street furniture: signs (labelled, on poles), lamp posts, trees, bins, bushes.
    def place_furniture(s, reserve):
        u = rng.uniform()
        dd = (FURNITURE[0] + FURNITURE[1]) / 2 + rng.uniform(-0.3, 0.3)
        if u < 0.22:  # a sign facing the oncoming traffic of this side, on a pole
            size = CLASSES[CLASS_INDEX["sign"]].sample_size(rng)
            elev = rng.uniform(1.9, 2.3)
            b.add_object("sign", size, s + size[1] / 2, side * dd, 0.0, yaw_dir + math.pi,
                         elev=elev, refl=rng.uniform(1.5, 3.0), mat=RETROREFLECTIVE)  # fmt: skip
            # The pole stands just behind the plate (whose face normal points against the traffic).
            pole_s = s + size[1] / 2 + direction * (size[0] / 2 + 0.06)
            b.add_prim(CYLINDER, pole_s, side * dd, elev / 2, (0.04, 0.04, elev / 2), 0.0, 0.35)
            return size[1]
        if u < 0.4:  # lamp post
            h = rng.uniform(6.0, 9.0)
            b.add_prim(CYLINDER, s + 0.15, side * dd, h / 2, (0.12, 0.12, h / 2), 0.0, 0.35)
            return 0.3
        if u < 0.65:  # tree: trunk and canopy (vegetation)
            trunk, radius = rng.uniform(2.6, 3.4), rng.uniform(1.2, 2.0)
            top = rng.uniform(2.0, 4.0)
            r_trunk = rng.uniform(0.12, 0.25)
            b.add_prim(CYLINDER, s + radius, side * dd, trunk / 2, (r_trunk, r_trunk, trunk / 2), 0.0, 0.25)
            b.add_prim(CYLINDER, s + radius, side * dd, trunk - 0.2 + top / 2, (radius, radius, top / 2), 0.0,
                       0.3, VEGETATION)  # fmt: skip
            return 2 * radius
        if u < 0.82:  # bush
            size = (rng.uniform(1.0, 2.5), rng.uniform(0.8, 1.4), rng.uniform(0.6, 1.2))
            b.add_prim(BOX, s + size[0] / 2, side * dd, size[2] / 2, np.array(size) / 2, 0.0, 0.3, VEGETATION)
            return size[0]
        size = (0.6, 0.6, rng.uniform(0.9, 1.1))  # bin
        b.add_prim(BOX, s + 0.3, side * dd, size[2] / 2, np.array(size) / 2, rng.uniform(-0.3, 0.3),
                   rng.uniform(0.1, 0.4))  # fmt: skip
        return 0.6

    _fill_band(b, static_range, place_furniture, lambda: rng.uniform(2.0, 9.0) / dens)

    # Sidewalk: two walking bands (opposite directions) and standing pedestrians.
    for band, sign in zip(WALK, (direction, -direction), strict=True):
        speed = sign * rng.uniform(1.0, 1.6)
        walk_yaw = 0.0 if sign > 0 else math.pi

        def place_walker(s, reserve, band=band, speed=speed, walk_yaw=walk_yaw):
            size = CLASSES[CLASS_INDEX["pedestrian"]].sample_size(rng)
            yaw, dd, _ = _fit_lateral(rng, band, size, 0.2, 0.5)
            half = _along_half(size, yaw)
            b.add_object("pedestrian", size, s + half, side * dd, speed, walk_yaw + yaw)
            return 2 * half

        _fill_band(b, _flow_range(ego, speed, duration, reach), place_walker,
                   lambda: 0.5 + rng.exponential(14.0 / dens))  # fmt: skip

    def place_standing(s, reserve):
        size = CLASSES[CLASS_INDEX["pedestrian"]].sample_size(rng)
        yaw, dd, _ = _fit_lateral(rng, STANDING, size, 1.5, math.pi)
        half = _along_half(size, yaw)
        b.add_object("pedestrian", size, s + half, side * dd, 0.0, yaw)
        return 2 * half

    _fill_band(b, static_range, place_standing, lambda: 1.0 + rng.exponential(25.0 / dens))

    # Buildings (static, contiguous facades with alleys between blocks).
    def place_building(s, reserve):
        length, depth = rng.uniform(8.0, 40.0), rng.uniform(8.0, 20.0)
        height = rng.uniform(3.5, 20.0)
        dd = BUILDINGS_FROM + rng.uniform(0.0, 4.0) + depth / 2
        # Buried 1.5 m so that the sloped ground never shows a gap under the walls.
        b.add_prim(BOX, s + length / 2, side * dd, height / 2 - 1.5, (length / 2, depth / 2, height / 2 + 1.5),
                   0.0, rng.uniform(0.15, 0.5))  # fmt: skip
        return length

    _fill_band(b, static_range, place_building,
               lambda: 0.0 if rng.uniform() < 0.35 else rng.uniform(4.0, 20.0))  # fmt: skip


def build_scene(
    rng: np.random.Generator,
    duration: float,
    *,
    ego_speed: float | None = None,
    reach: float = 95.0,
    density: float = 1.0,
) -> Scene:
    """Generates a street scene.

    Args:
        rng: the random generator (all randomness of the scene comes from it).
        duration: seconds the ego drives; bands are populated so that objects surround the ego
            within ``reach`` metres (along the road) during the whole drive.
        ego_speed: m/s (default: uniform in [6, 12]).
        reach: metres of populated road ahead of and behind the ego.
        density: scales the number of objects (1 gives ~150 labelled objects within 85 m).
    """
    b = _Builder(rng)
    k = float(rng.choice([0.0, rng.uniform(-1 / 350, 1 / 350)]))
    road = Road((0.0, 0.0), float(rng.uniform(-math.pi, math.pi)), k)
    ego = EgoMotion(0.0, EGO_LATERAL, float(ego_speed if ego_speed is not None else rng.uniform(6.0, 12.0)))
    ego_reserve = (ego.s0 + EGO_EXTENT[0] - 2.0, ego.s0 + EGO_EXTENT[1] + 2.0)
    dens = max(density, 1e-3)

    for side in (-1.0, 1.0):  # right (forward traffic), left (oncoming)
        _populate_side(b, rng, side, ego, ego_reserve, duration, reach, dens)

    # Ground: gentle grade and cross slope plus long undulations, over the region the sensors see.
    grade, cross = rng.uniform(-0.03, 0.03), rng.uniform(-0.01, 0.01)
    a1, l1, p1 = rng.uniform(0.2, 0.8), rng.uniform(100.0, 250.0), rng.uniform(0, 2 * math.pi)
    a2, l2, p2 = rng.uniform(0.1, 0.4), rng.uniform(60.0, 150.0), rng.uniform(0, 2 * math.pi)
    ch, sh = math.cos(road.heading), math.sin(road.heading)

    def ground_fn(x, y):
        along, lateral = x * ch + y * sh, -x * sh + y * ch
        return (grade * along + cross * lateral + a1 * np.sin(2 * np.pi * along / l1 + p1)
                + a2 * np.sin(2 * np.pi * along / l2 + p2) * np.cos(2 * np.pi * lateral / l2))  # fmt: skip

    ego_s = np.linspace(ego.s0, ego.s0 + ego.speed * duration, 16)
    ex, ey, _ = road.pose(ego_s, ego.d)
    margin = 85.0
    ground = HeightField.from_function(
        ground_fn, (ex.min() - margin, ex.max() + margin), (ey.min() - margin, ey.max() + margin), 2.0
    )

    static = _resolve_prims(b.prims, road, ground)
    objects = _resolve_objects(b, rng, road, ground, ego)
    return Scene(road, ground, static, objects, ego)


def _resolve_prims(prims, road: Road, ground: HeightField) -> Primitives:
    """Turns placements in road coordinates into world primitives."""
    rows = []
    for shape, s, d, z_rel, half, yaw, refl, mat in prims:
        x, y, road_yaw = (float(v) for v in road.pose(s, d))
        z = float(ground.height(x, y)) + z_rel
        rows.append((shape, (x, y, z), half, road_yaw + yaw, refl, mat, -1))
    if not rows:
        return Primitives.empty()
    return Primitives.build(*zip(*rows, strict=True))


def _bev_corners(boxes: np.ndarray) -> np.ndarray:
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    sx = np.array([-1, 1, 1, -1]) * 0.5
    sy = np.array([-1, -1, 1, 1]) * 0.5
    lx, ly = sx[None] * boxes[:, 3:4], sy[None] * boxes[:, 4:5]
    return np.stack([boxes[:, 0:1] + lx * c[:, None] - ly * s[:, None],
                     boxes[:, 1:2] + lx * s[:, None] + ly * c[:, None]], axis=-1)  # fmt: skip


def bev_overlaps(boxes: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """``(K, 2)`` int64 index pairs ``i < j`` of boxes (``(M, >=7)`` world or vehicle frame) whose
    bird's-eye-view rectangles, grown by ``margin`` metres, overlap (separating-axis test)."""
    b = np.array(boxes[:, :7], dtype=np.float64)
    b[:, 3:5] += 2 * margin
    radius = np.hypot(b[:, 3], b[:, 4]) / 2
    dist = np.hypot(b[:, None, 0] - b[None, :, 0], b[:, None, 1] - b[None, :, 1])
    cand = np.argwhere(np.triu(dist < radius[:, None] + radius[None, :], 1))
    if cand.size == 0:
        return cand
    corners = _bev_corners(b)
    out = []
    for i, j in cand:
        separated = False
        for box in (i, j):
            for axis_yaw in (b[box, 6], b[box, 6] + math.pi / 2):
                ax = np.array([math.cos(axis_yaw), math.sin(axis_yaw)])
                pi, pj = corners[i] @ ax, corners[j] @ ax
                if pi.max() <= pj.min() or pj.max() <= pi.min():
                    separated = True
                    break
            if separated:
                break
        if not separated:
            out.append((i, j))
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def _resolve_objects(b: _Builder, rng, road: Road, ground: HeightField, ego: EgoMotion) -> ObjectTracks:
    o = b.obj
    m = len(o["cls"])
    ids = np.array([rng.bytes(16).hex() for _ in range(m)])
    tracks = ObjectTracks(
        ids=ids,
        class_index=np.asarray(o["cls"], dtype=np.int8),
        size=np.asarray(o["size"], dtype=np.float64).reshape(-1, 3),
        s0=np.asarray(o["s0"], dtype=np.float64),
        d=np.asarray(o["d"], dtype=np.float64),
        speed=np.asarray(o["speed"], dtype=np.float64),
        yaw_offset=np.asarray(o["yaw"], dtype=np.float64),
        elevation=np.asarray(o["elev"], dtype=np.float64),
        reflectivity=np.asarray(o["refl"], dtype=np.float64),
        material=np.asarray(o["mat"], dtype=np.int8),
    )
    # Safety net: drop any object whose footprint overlaps another's at t = 0 (bands move rigidly,
    # so none overlaps later) or the ego's.
    scene = Scene(road, ground, Primitives.empty(), tracks, ego)
    boxes = scene.object_states(0.0).boxes
    pose = scene.ego_pose(0.0)
    ego_box = np.array(
        [
            [
                *(pose[:3, :3] @ [(EGO_EXTENT[0] + EGO_EXTENT[1]) / 2, 0, 0] + pose[:3, 3]),
                EGO_EXTENT[1] - EGO_EXTENT[0],
                2 * EGO_EXTENT[2],
                1.6,
                math.atan2(pose[1, 0], pose[0, 0]),
            ]
        ]
    )
    pairs = bev_overlaps(np.concatenate([boxes, ego_box]), margin=0.05)
    drop = np.zeros(m + 1, dtype=bool)
    for i, j in pairs:
        if not (drop[i] or drop[j]):
            drop[j if j < m else i] = True
    return tracks.subset(np.nonzero(~drop[:m])[0])
