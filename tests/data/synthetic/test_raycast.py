"""Ray casting against analytic cases and an independent brute-force implementation."""

import math
import time

import numpy as np
import pytest

from pointformer.data.synthetic.lidar import waymo_lidars
from pointformer.data.synthetic.raycast import SURFACE_OBJECT, cast_rays, cast_scan
from pointformer.data.synthetic.scene import BOX, CYLINDER, HeightField, Primitives, Road


def _flat(z=-100.0, half=200.0):
    """A ground far below (out of the way) unless ``z`` says otherwise."""
    return HeightField.from_function(lambda x, y: np.full(np.broadcast(x, y).shape, z), (-half, half),
                                     (-half, half), 10.0)  # fmt: skip


def _boxes(centers, halves, yaws):
    n = len(centers)
    return Primitives.build([BOX] * n, centers, halves, yaws, [0.3] * n, [0] * n, list(range(n)))


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_box_analytic_cases():
    prims = _boxes([(10.0, 0.0, 0.0)], [(1.0, 2.0, 1.5)], [0.0])
    origin = np.zeros(3)
    dirs = _unit([[1, 0, 0], [-1, 0, 0], [1, 0.15, 0], [1, 0.3, 0], [0, 0, 1]])
    t, what = cast_rays(origin, dirs, _flat(), prims, t_max=100.0)
    assert t[0] == pytest.approx(9.0)  # the near face at x = 9
    assert what[0] == 0
    assert t[1] == -1.0 and what[1] == -2  # behind: miss
    assert t[2] == pytest.approx(9.0 * math.hypot(1, 0.15))  # y = 1.35 at x = 9: still the face
    assert t[3] == -1.0  # y = 2.7 at x = 9 and 3.3 at x = 11: passes beside the box
    assert t[4] == -1.0
    # A rotated box (45 deg): the corner nearest to the origin is at x = 10 - sqrt(2).
    prims = _boxes([(10.0, 0.0, 0.0)], [(1.0, 1.0, 1.0)], [math.pi / 4])
    t, _ = cast_rays(origin, _unit([[1, 0, 0]]), _flat(), prims, t_max=100.0)
    assert t[0] == pytest.approx(10 - math.sqrt(2))
    # Starting inside: the ray hits the inner face (the exit point).
    prims = _boxes([(0.5, 0.0, 0.0)], [(2.0, 2.0, 2.0)], [0.3])
    t, what = cast_rays(origin, _unit([[0, 0, 1]]), _flat(), prims, t_max=100.0)
    assert t[0] == pytest.approx(2.0) and what[0] == 0


def _brute_force_first_hit(origin, d, centers, halves, yaws, t_max, step=1e-3):
    """Samples the ray: the first sample inside any box (independent of the slab method)."""
    ts = np.arange(0.0, t_max, step)
    p = origin[None] + ts[:, None] * d[None]
    best = np.inf
    for c, h, yaw in zip(centers, halves, yaws, strict=True):
        along = max(float((c - origin) @ d), 0.0)
        if np.linalg.norm(origin + along * d - c) > np.linalg.norm(h):
            continue  # the ray misses the bounding sphere
        q = p - c
        lx = q[:, 0] * math.cos(yaw) + q[:, 1] * math.sin(yaw)
        ly = -q[:, 0] * math.sin(yaw) + q[:, 1] * math.cos(yaw)
        inside = (np.abs(lx) <= h[0]) & (np.abs(ly) <= h[1]) & (np.abs(q[:, 2]) <= h[2])
        if inside.any():
            best = min(best, ts[np.argmax(inside)])
    return best


def test_boxes_against_brute_force():
    rng = np.random.default_rng(1)
    n = 40
    centers = np.column_stack([rng.uniform(-15, 15, n), rng.uniform(-15, 15, n), rng.uniform(-1, 1, n)])
    centers[np.hypot(centers[:, 0], centers[:, 1]) < 4] += 6.0  # keep the origin outside
    halves = rng.uniform(0.2, 2.0, (n, 3))
    yaws = rng.uniform(-math.pi, math.pi, n)
    prims = _boxes(centers, halves, yaws)
    origin = np.array([0.0, 0.0, 0.3])
    dirs = _unit(np.column_stack([rng.normal(size=(200, 2)), rng.normal(scale=0.15, size=200)]))
    t, what = cast_rays(origin, dirs, _flat(), prims, t_max=40.0)
    hits = 0
    for i in range(len(dirs)):
        ref = _brute_force_first_hit(origin, dirs[i], centers, halves, yaws, 40.0)
        if np.isinf(ref):
            assert t[i] == -1.0
        else:
            hits += 1
            assert ref - 1e-3 <= t[i] <= ref + 1e-9, (i, t[i], ref)
    assert hits > 40  # the sample exercises hits as well as misses


def test_cylinder():
    prims = Primitives.build([CYLINDER], [(5.0, 0.0, 0.0)], [(0.5, 0.5, 1.0)], [0.0], [0.3], [0], [-1])
    origin = np.zeros(3)
    t, what = cast_rays(origin, _unit([[1, 0, 0], [1, 0.09, 0], [1, 0.11, 0], [1, 0, 0.5]]), _flat(), prims)
    assert t[0] == pytest.approx(4.5) and what[0] == 0
    # Offset 0.45 at the axis (x = 5): the side hit solves |p - c| = r.
    d = _unit([1, 0.09, 0])
    b = -5.0 * d[0]
    disc = b * b - (25.0 - 0.25)
    assert t[1] == pytest.approx(-b - math.sqrt(disc))
    assert t[2] == -1.0  # passes beside (perpendicular offset 0.547 > 0.5)
    assert t[3] == -1.0  # passes above the top (z = 2.2 at x = 4.5)


@pytest.mark.parametrize("origin", [(3.0, -7.0, 4.0), (-20.0, 15.0, 2.5)])
def test_ground_sloped_plane(origin):
    a, b, c = 0.04, -0.025, 0.7
    ground = HeightField.from_function(lambda x, y: a * x + b * y + c, (-100, 100), (-100, 100), 4.0)
    rng = np.random.default_rng(2)
    dirs = _unit(np.column_stack([rng.normal(size=(500, 2)), -rng.uniform(0.05, 1.0, 500)]))
    o = np.array(origin)
    t, what = cast_rays(o, dirs, ground, Primitives.empty(), t_max=150.0)
    # The analytic intersection with the plane z = a x + b y + c.
    t_ref = (a * o[0] + b * o[1] + c - o[2]) / (dirs[:, 2] - a * dirs[:, 0] - b * dirs[:, 1])
    p = o + t_ref[:, None] * dirs
    inside = (np.abs(p[:, :2]) < 100).all(1) & (t_ref < 150)
    assert inside.sum() > 300
    np.testing.assert_allclose(t[inside], t_ref[inside], rtol=1e-9, atol=1e-9)
    assert np.all(what[inside] == -1)


def test_ground_height_field_is_consistent():
    rng = np.random.default_rng(3)
    ground = HeightField((-60.0, -60.0), 3.0, rng.uniform(-1.0, 1.0, (41, 41)))
    o = np.array([1.0, 2.0, 3.0])
    dirs = _unit(np.column_stack([rng.normal(size=(2000, 2)), -rng.uniform(0.05, 0.8, 2000)]))
    t, what = cast_rays(o, dirs, ground, Primitives.empty(), t_max=80.0)
    hit = t > 0
    assert hit.sum() > 1500
    p = o + t[hit, None] * dirs[hit]
    np.testing.assert_allclose(p[:, 2], ground.height(p[:, 0], p[:, 1]), atol=1e-9)
    # Nothing was skipped: the ray is above the ground just before its hit.
    q = o + (t[hit, None] - 1e-3) * dirs[hit]
    assert np.all(q[:, 2] > ground.height(q[:, 0], q[:, 1]) - 1e-9)


def test_occlusion_by_wall():
    """An object behind a wall gets fewer points than the same object in the open."""
    top = waymo_lidars()[0]
    ground = _flat(0.0)
    road = Road((0.0, 0.0), 0.0, 0.0)
    car = ((20.0, 3.0, 0.8), (2.3, 0.95, 0.8), 0.0, 0.3, 0, 0)
    wall = ((12.0, 1.0, 1.0), (0.1, 1.5, 1.0), 0.0, 0.3, 0, -1)
    counts = []
    for parts in ([car], [car, wall]):
        prims = Primitives.build([BOX] * len(parts), *zip(*parts, strict=True))
        scan = cast_scan(top, np.eye(4), ground, road, prims, np.random.default_rng(0))
        counts.append(int(((scan.hit_object == 0) & (scan.surface == SURFACE_OBJECT)).sum()))
    assert counts[0] > 100
    assert counts[1] < 0.7 * counts[0]


def test_top_scan_timing(capsys):
    from pointformer.data.synthetic.sequence import generate_sequence

    seq = generate_sequence(0, 1)
    scene = seq.scene
    prims = Primitives.cat([scene.static, scene.object_primitives(0.0, np.arange(len(scene.objects)))])
    top = waymo_lidars()[0]
    pose = scene.ego_pose(0.0)
    cast_scan(top, pose, scene.ground, scene.road, prims, np.random.default_rng(0))  # compile / warm up
    times = []
    for _ in range(3):
        start = time.perf_counter()
        cast_scan(top, pose, scene.ground, scene.road, prims, np.random.default_rng(0))
        times.append(time.perf_counter() - start)
    with capsys.disabled():
        print(f"\nTOP scan 64x2650, {len(scene.objects)} objects + {len(scene.static)} static shapes: "
              f"median {1e3 * sorted(times)[1]:.0f} ms")  # fmt: skip
