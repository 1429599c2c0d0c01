"""Ray casting of a scene by a spinning LiDAR (numba, parallel over pixels).

One ray per range-image pixel, from the sensor origin along the pixel's direction (the Waymo
pixel geometry of ``lidar.LidarSpec``). Each ray is intersected with the ground height field
(exact, cell by cell along the ray: the ground is planar on each triangle) and with the
primitives (upright boxes by the slab method in the box frame, vertical cylinders analytically);
the nearest hit wins. To keep this fast, primitives are binned per laser into azimuth sectors of
the sensor (by the angular interval their footprint covers) and sorted by their bird's-eye-view
distance, so a ray tests only its sector's primitives and stops at the first one farther than
its current hit.

Returns model: intensity from the surface reflectivity, the incidence angle (retro-reflectors
barely depend on it) and range; elongation grows at grazing incidence and on retro-reflectors;
a hit may drop out (more likely for dark, far, grazing surfaces); a second return comes from
rays through vegetation and rays grazing the edge of a shape (the rest of the beam continues to
the next surface at least ``SECOND_RETURN_GAP`` metres farther).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from pointformer.data.synthetic.lidar import NO_RETURN, LidarSpec
from pointformer.data.synthetic.scene import HeightField, Primitives, Road

SECOND_RETURN_GAP = 0.5
# Dropout of weak returns: probability ~ DARK_FAR_DROPOUT / (reflectivity * cos) * (range / max range)^2.
DARK_FAR_DROPOUT = 0.006
NUM_SECTORS = 720
# Surface codes of hit pixels.
SURFACE_NONE, SURFACE_GROUND, SURFACE_STATIC, SURFACE_OBJECT = -1, 0, 1, 2

_NONE, _GROUND = -2, -1


@dataclass(frozen=True, eq=False)
class Scan:
    """One laser's scan of one frame.

    Attributes:
        spec: the laser.
        range_image: ``(H, W, 4)`` float32 first return ``[range (m), intensity, elongation,
            is_in_no_label_zone]``; every channel is ``NO_RETURN`` (-1) where there is no return;
            the no-label-zone flag is -1 (not in a zone) on returns.
        hit_object: ``(H, W)`` int32 index of the labelled object hit (into the frame's labels),
            -1 for the background or no return.
        surface: ``(H, W)`` int8 ``SURFACE_NONE`` (-1), ``SURFACE_GROUND`` (0),
            ``SURFACE_STATIC`` (1: buildings, poles, vegetation, clutter), ``SURFACE_OBJECT`` (2).
        range_image_return2, hit_object_return2, surface_return2: the same for the second
            return (all ``NO_RETURN`` / -1 where there is none, and for single-return lasers).
    """

    spec: LidarSpec
    range_image: np.ndarray
    hit_object: np.ndarray
    surface: np.ndarray
    range_image_return2: np.ndarray
    hit_object_return2: np.ndarray
    surface_return2: np.ndarray

    def returns(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(range_image, hit_object, surface)`` of return ``index`` (0 or 1)."""
        if index == 0:
            return self.range_image, self.hit_object, self.surface
        return self.range_image_return2, self.hit_object_return2, self.surface_return2

    def points(self, returns: tuple[int, ...] = (0, 1)) -> np.ndarray:
        """``(N, 6)`` float32 ``[x, y, z, intensity, elongation, nlz]`` in the vehicle frame (the
        range image -> points conversion of ``LidarSpec.points_from_range``), return 0's valid
        pixels in row-major order, then return 1's."""
        out = []
        for r in returns:
            ri = self.returns(r)[0]
            xyz, rc = self.spec.points_from_range(ri)
            out.append(np.concatenate([xyz, ri[rc[:, 0], rc[:, 1], 1:4]], axis=1))
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 6), np.float32)

    def point_info(self, returns: tuple[int, ...] = (0, 1)) -> tuple[np.ndarray, np.ndarray]:
        """``(N,)`` int32 hit object and ``(N,)`` int8 surface of each point of ``points()``."""
        objs, surfs = [], []
        for r in returns:
            ri, obj, surf = self.returns(r)
            valid = ri[..., 0] > 0
            objs.append(obj[valid])
            surfs.append(surf[valid])
        return np.concatenate(objs), np.concatenate(surfs)


# --- numba kernels ------------------------------------------------------------------------------


@nb.njit(cache=True)
def _ground_hit(ox, oy, oz, dx, dy, dz, t0, t1, gx0, gy0, cell, heights, hmin, hmax):
    """First ``t`` in ``[t0, t1]`` where the ray meets the height field, with the triangle's
    gradient ``(dh/dx, dh/dy)``; ``t = -1`` for none."""
    ny, nx = heights.shape
    # Clip to the grid (2D slabs) and to the height band [hmin, hmax].
    xmax, ymax = gx0 + (nx - 1) * cell, gy0 + (ny - 1) * cell
    ta, tb = t0, t1
    for o, d, lo, hi in ((ox, dx, gx0, xmax), (oy, dy, gy0, ymax)):
        if abs(d) < 1e-15:
            if o < lo or o > hi:
                return -1.0, 0.0, 0.0
        else:
            u1, u2 = (lo - o) / d, (hi - o) / d
            if u1 > u2:
                u1, u2 = u2, u1
            ta, tb = max(ta, u1), min(tb, u2)
    if dz < 0.0:
        ta = max(ta, (hmax + 1e-6 - oz) / dz)
        tb = min(tb, (hmin - 1e-6 - oz) / dz)
    elif oz + ta * dz > hmax:
        return -1.0, 0.0, 0.0
    if ta >= tb:
        return -1.0, 0.0, 0.0
    inv = 1.0 / cell
    fx, fy = (ox + ta * dx - gx0) * inv, (oy + ta * dy - gy0) * inv
    i = min(max(int(math.floor(fx)), 0), nx - 2)
    j = min(max(int(math.floor(fy)), 0), ny - 2)
    step_i = 1 if dx > 0 else -1
    step_j = 1 if dy > 0 else -1
    if abs(dx) > 1e-15:
        next_x = gx0 + (i + (1 if dx > 0 else 0)) * cell
        tmax_x, tdelta_x = (next_x - ox) / dx, cell / abs(dx)
    else:
        tmax_x, tdelta_x = 1e30, 1e30
    if abs(dy) > 1e-15:
        next_y = gy0 + (j + (1 if dy > 0 else 0)) * cell
        tmax_y, tdelta_y = (next_y - oy) / dy, cell / abs(dy)
    else:
        tmax_y, tdelta_y = 1e30, 1e30
    t_cur = ta
    while True:
        t_next = min(tmax_x, tmax_y, tb)
        if t_next > t_cur:
            x0, y0 = gx0 + i * cell, gy0 + j * cell
            h00, h10 = heights[j, i], heights[j, i + 1]
            h01, h11 = heights[j + 1, i], heights[j + 1, i + 1]
            u0, v0 = (ox - x0) * inv, (oy - y0) * inv
            du, dv = dx * inv, dy * inv
            # Split [t_cur, t_next] where the ray crosses the cell's diagonal u + v = 1.
            t_split = t_next
            if abs(du + dv) > 1e-15:
                td = (1.0 - u0 - v0) / (du + dv)
                if t_cur < td < t_next:
                    t_split = td
            sa = t_cur
            for part in range(2):
                sb = t_split if part == 0 else t_next
                if sb > sa:
                    tm = 0.5 * (sa + sb)
                    if (u0 + tm * du) + (v0 + tm * dv) <= 1.0:
                        gx, gy = (h10 - h00) * inv, (h01 - h00) * inv
                        base = h00 - gx * x0 - gy * y0
                    else:
                        gx, gy = (h11 - h01) * inv, (h11 - h10) * inv
                        base = h11 - gx * (x0 + cell) - gy * (y0 + cell)
                    fa = oz + sa * dz - (base + gx * (ox + sa * dx) + gy * (oy + sa * dy))
                    fb = oz + sb * dz - (base + gx * (ox + sb * dx) + gy * (oy + sb * dy))
                    if fa <= 0.0:
                        # A ray starting under the ground (the rest of a beam that grazed an
                        # object's bottom edge) has no ground return of its own.
                        return (-1.0 if sa == ta else sa), gx, gy
                    if fb <= 0.0:
                        return sa + (sb - sa) * fa / (fa - fb), gx, gy
                sa = sb
        if t_next >= tb:
            return -1.0, 0.0, 0.0
        if tmax_x < tmax_y:
            i += step_i
            t_cur = tmax_x
            tmax_x += tdelta_x
        else:
            j += step_j
            t_cur = tmax_y
            tmax_y += tdelta_y
        if i < 0 or i > nx - 2 or j < 0 or j > ny - 2:
            return -1.0, 0.0, 0.0


@nb.njit(cache=True)
def _hit_box(ox, oy, oz, dx, dy, dz, cx, cy, cz, hx, hy, hz, c, s, t_min):
    """Slab test in the box frame. Returns ``(t, |cos incidence|, edge distance)``; ``t = -1``
    for a miss. A ray starting inside the box hits its inner face (the exit point)."""
    qx, qy, qz = ox - cx, oy - cy, oz - cz
    p0, p1, p2 = c * qx + s * qy, -s * qx + c * qy, qz
    d0, d1, d2 = c * dx + s * dy, -s * dx + c * dy, dz
    tnear, tfar = -1e30, 1e30
    anear, afar = -1, -1
    for k in range(3):
        p = p0 if k == 0 else (p1 if k == 1 else p2)
        d = d0 if k == 0 else (d1 if k == 1 else d2)
        h = hx if k == 0 else (hy if k == 1 else hz)
        if abs(d) < 1e-15:
            if p < -h or p > h:
                return -1.0, 0.0, 0.0
        else:
            t1, t2 = (-h - p) / d, (h - p) / d
            if t1 > t2:
                t1, t2 = t2, t1
            if t1 > tnear:
                tnear, anear = t1, k
            if t2 < tfar:
                tfar, afar = t2, k
    if tnear > tfar or tfar < t_min:
        return -1.0, 0.0, 0.0
    t, axis = (tnear, anear) if tnear >= t_min else (tfar, afar)
    q0, q1, q2 = p0 + t * d0, p1 + t * d1, p2 + t * d2
    e0, e1, e2 = hx - abs(q0), hy - abs(q1), hz - abs(q2)
    if axis == 0:
        return t, abs(d0), min(e1, e2)
    if axis == 1:
        return t, abs(d1), min(e0, e2)
    return t, abs(d2), min(e0, e1)


@nb.njit(cache=True)
def _hit_cylinder(ox, oy, oz, dx, dy, dz, cx, cy, cz, r, hz, t_min):
    """Vertical finite cylinder (side and caps). Returns ``(t, |cos incidence|, edge distance)``."""
    qx, qy = ox - cx, oy - cy
    zlo, zhi = cz - hz, cz + hz
    best, cosi, edge = 1e30, 0.0, 0.0
    a = dx * dx + dy * dy
    if a > 1e-15:
        b = qx * dx + qy * dy
        cc = qx * qx + qy * qy - r * r
        disc = b * b - a * cc
        if disc >= 0.0:
            sq = math.sqrt(disc)
            perp = abs(qx * dy - qy * dx) / math.sqrt(a)
            for t in ((-b - sq) / a, (-b + sq) / a):
                if t >= t_min and t < best:
                    z = oz + t * dz
                    if zlo <= z <= zhi:
                        nx, ny = (qx + t * dx) / r, (qy + t * dy) / r
                        best, cosi = t, abs(nx * dx + ny * dy)
                        edge = min(r - perp, zhi - z)
                        break
    if abs(dz) > 1e-15:
        for zc in (zhi, zlo):
            t = (zc - oz) / dz
            if t_min <= t < best:
                x, y = qx + t * dx, qy + t * dy
                rr = x * x + y * y
                if rr <= r * r:
                    best, cosi, edge = t, abs(dz), r - math.sqrt(rr)
    if best >= 1e30:
        return -1.0, 0.0, 0.0
    return best, cosi, edge


@nb.njit(cache=True)
def _trace(ox, oy, oz, dx, dy, dz, t_min, t_max, exclude, gx0, gy0, cell, heights, hmin, hmax,
           shape, center, half, cos_yaw, sin_yaw, sec_start, sec_items, min_dist, nsec):  # fmt: skip
    """Nearest hit in ``[t_min, t_max)``: ``(t, what, |cos incidence|, edge)`` with ``what`` the
    primitive index, ``_GROUND`` or ``_NONE``."""
    best, what, cosi, edge = t_max, _NONE, 0.0, 1e30
    tg, gx, gy = _ground_hit(ox, oy, oz, dx, dy, dz, t_min, t_max, gx0, gy0, cell, heights, hmin, hmax)
    if tg >= 0.0:
        best, what = tg, _GROUND
        cosi = abs(-gx * dx - gy * dy + dz) / math.sqrt(gx * gx + gy * gy + 1.0)
    sector = int((math.atan2(dy, dx) + math.pi) * (nsec / (2.0 * math.pi)))
    sector = min(max(sector, 0), nsec - 1)
    for q in range(sec_start[sector], sec_start[sector + 1]):
        p = sec_items[q]
        if min_dist[p] > best:
            break
        if p == exclude:
            continue
        if shape[p] == 0:
            t, ci, ed = _hit_box(ox, oy, oz, dx, dy, dz, center[p, 0], center[p, 1], center[p, 2],
                                 half[p, 0], half[p, 1], half[p, 2], cos_yaw[p], sin_yaw[p], t_min)  # fmt: skip
        else:
            t, ci, ed = _hit_cylinder(ox, oy, oz, dx, dy, dz, center[p, 0], center[p, 1], center[p, 2],
                                      half[p, 0], half[p, 2], t_min)  # fmt: skip
        if t >= t_min and t < best:
            best, what, cosi, edge = t, p, ci, ed
    return best, what, cosi, edge


@nb.njit(cache=True)
def _build_sectors(sx, sy, shape, center, half, cos_yaw, sin_yaw, reach, nsec):
    """Bins primitives into azimuth sectors around the sensor at ``(sx, sy)``, each sector's list
    sorted by bird's-eye-view distance. Returns ``(sec_start (nsec+1,), sec_items, min_dist (P,))``."""
    n = shape.shape[0]
    min_dist = np.empty(n)
    lo_idx = np.zeros(n, dtype=np.int64)
    hi_idx = np.full(n, -1, dtype=np.int64)
    width = 2.0 * math.pi / nsec
    margin = 1e-6
    for p in range(n):
        vx, vy = center[p, 0] - sx, center[p, 1] - sy
        dist = math.sqrt(vx * vx + vy * vy)
        if shape[p] == 0:
            hx, hy = half[p, 0], half[p, 1]
            radius = math.sqrt(hx * hx + hy * hy)
            lx = cos_yaw[p] * (-vx) + sin_yaw[p] * (-vy)
            ly = -sin_yaw[p] * (-vx) + cos_yaw[p] * (-vy)
            inside = abs(lx) <= hx and abs(ly) <= hy
        else:
            radius = half[p, 0]
            inside = dist <= radius
        md = max(dist - radius, 0.0)
        min_dist[p] = md
        if md > reach:
            continue
        if inside:
            lo_idx[p], hi_idx[p] = 0, nsec - 1
            min_dist[p] = 0.0
            continue
        ac = math.atan2(vy, vx)
        if shape[p] == 0:
            dlo, dhi = 1e30, -1e30
            for sgx in (-1.0, 1.0):
                for sgy in (-1.0, 1.0):
                    cx = vx + sgx * hx * cos_yaw[p] - sgy * hy * sin_yaw[p]
                    cy = vy + sgx * hx * sin_yaw[p] + sgy * hy * cos_yaw[p]
                    da = math.atan2(cy, cx) - ac
                    da = (da + math.pi) % (2.0 * math.pi) - math.pi
                    dlo, dhi = min(dlo, da), max(dhi, da)
        else:
            dhi = math.asin(min(radius / dist, 1.0))
            dlo = -dhi
        a_lo, a_hi = ac + dlo - margin, ac + dhi + margin
        i_lo = int(math.floor((a_lo + math.pi) / width))
        i_hi = int(math.floor((a_hi + math.pi) / width))
        if i_hi - i_lo + 1 >= nsec:
            i_lo, i_hi = 0, nsec - 1
        lo_idx[p], hi_idx[p] = i_lo, i_hi
    counts = np.zeros(nsec + 1, dtype=np.int64)
    for p in range(n):
        for k in range(lo_idx[p], hi_idx[p] + 1):
            counts[k % nsec + 1] += 1
    sec_start = np.cumsum(counts)
    fill = sec_start[:-1].copy()
    items = np.empty(sec_start[-1], dtype=np.int64)
    for p in np.argsort(min_dist):
        for k in range(lo_idx[p], hi_idx[p] + 1):
            s = k % nsec
            items[fill[s]] = p
            fill[s] += 1
    return sec_start, items, min_dist


@nb.njit(cache=True)
def _ground_reflectivity(x, y, road_x, road_y, road_h, road_k):
    """Reflectivity of the ground at world ``(x, y)``: asphalt with lane markings, concrete
    sidewalks, and dirt beyond the buildings' line."""
    px, py = x - road_x, y - road_y
    if abs(road_k) < 1e-12:
        s = px * math.cos(road_h) + py * math.sin(road_h)
        d = -px * math.sin(road_h) + py * math.cos(road_h)
    else:
        cx, cy = -math.sin(road_h) / road_k, math.cos(road_h) / road_k
        v0x, v0y, vx, vy = -cx, -cy, px - cx, py - cy
        s = math.atan2(v0x * vy - v0y * vx, v0x * vx + v0y * vy) / road_k
        d = 1.0 / road_k - math.copysign(1.0, road_k) * math.sqrt(vx * vx + vy * vy)
    ad = abs(d)
    if ad < 11.0:
        if ad < 0.12 or abs(ad - 7.0) < 0.08 or (abs(ad - 3.5) < 0.08 and (s % 12.0) < 4.0):
            return 0.55
        return 0.1
    if ad < 17.5:
        return 0.25
    return 0.18


@nb.njit(parallel=True, cache=True)
def _cast_scan(origin, dirs, fov, noise, min_range, max_range, range_noise, dropout, intensity_scale,
               intensity_max, two_returns, gx0, gy0, cell, heights, hmin, hmax, road,
               shape, center, half, cos_yaw, sin_yaw, refl, material, obj,
               sec_start, sec_items, min_dist, nsec, out, out_obj, out_surf):  # fmt: skip
    n = dirs.shape[0]
    ox, oy, oz = origin[0], origin[1], origin[2]
    for i in nb.prange(n):
        for r in range(2):
            for c in range(4):
                out[r, i, c] = -1.0
            out_obj[r, i] = -1
            out_surf[r, i] = -1
        if not fov[i]:
            continue
        dx, dy, dz = dirs[i, 0], dirs[i, 1], dirs[i, 2]
        t_start, exclude = 1e-4, -3
        for ret in range(2 if two_returns else 1):
            t, what, cosi, edge = _trace(ox, oy, oz, dx, dy, dz, t_start, max_range, exclude, gx0, gy0, cell,
                                         heights, hmin, hmax, shape, center, half, cos_yaw, sin_yaw, sec_start,
                                         sec_items, min_dist, nsec)  # fmt: skip
            if what == _NONE or t < min_range:
                break
            if what == _GROUND:
                rho = _ground_reflectivity(ox + t * dx, oy + t * dy, road[0], road[1], road[2], road[3])
                mat, hit_obj, surf = 0, -1, 0
            else:
                rho, mat, hit_obj = refl[what], material[what], obj[what]
                surf = 2 if hit_obj >= 0 else 1
            u_drop, u_second = noise[i, 1 + 3 * ret], noise[i, 2 + 3 * ret]
            cos_eff = max(cosi, 0.05)
            power = rho * (0.6 + 0.4 * cos_eff if mat == 2 else cos_eff)
            frac = t / max_range
            p_drop = dropout + (1.0 - dropout) * min(DARK_FAR_DROPOUT / power * frac * frac, 1.0)
            if u_drop < p_drop:
                break
            rng_val = t + range_noise * noise[i, 3 * ret]
            if rng_val < min_range:
                break
            intensity = power / (1.0 + t / 30.0) * (0.5 if ret == 1 else 1.0)
            intensity *= math.exp(0.1 * (u_second - 0.5)) * intensity_scale
            if intensity_max > 0.0:
                intensity = min(intensity, intensity_max)
            elong = 0.02 + 0.5 * (1.0 - cos_eff) ** 2 + (0.25 if mat == 2 else 0.0) + 0.02 * u_drop
            out[ret, i, 0] = rng_val
            out[ret, i, 1] = intensity
            out[ret, i, 2] = elong
            out[ret, i, 3] = -1.0
            out_obj[ret, i] = hit_obj
            out_surf[ret, i] = surf
            # A second return from the rest of the beam: through foliage, or past an edge.
            if ret == 0:
                edge_width = 0.02 + 0.003 * t
                if not ((mat == 1 and u_second < 0.45) or (what >= 0 and edge < edge_width and u_second < 0.8)):
                    break
                t_start, exclude = t + SECOND_RETURN_GAP, what
    return out


def cast_scan(
    spec: LidarSpec,
    vehicle_pose: np.ndarray,
    ground: HeightField,
    road: Road,
    prims: Primitives,
    rng: np.random.Generator,
) -> Scan:
    """Casts every pixel of ``spec`` from its sensor at ``vehicle_pose @ spec.extrinsic``.

    Args:
        spec: the laser.
        vehicle_pose: ``(4, 4)`` float64 vehicle -> world.
        ground, road: the ground height field and the road (for the ground's reflectivity).
        prims: shapes in the world frame; ``prims.object`` indexes the frame's labels.
        rng: the source of the noise (range, dropout, intensity, second returns).
    """
    h, w = spec.shape
    sensor = np.asarray(vehicle_pose, dtype=np.float64) @ spec.extrinsic
    origin = np.ascontiguousarray(sensor[:3, 3])
    dirs = np.ascontiguousarray((spec.directions() @ sensor[:3, :3].T).reshape(-1, 3))
    fov = np.ascontiguousarray(np.broadcast_to(spec.column_in_fov()[None, :], (h, w)).reshape(-1))
    noise = np.empty((h * w, 6))
    noise[:, 0::3] = rng.standard_normal((h * w, 2))
    noise[:, 1::3] = rng.random((h * w, 2))
    noise[:, 2::3] = rng.random((h * w, 2))
    reach = spec.max_range + 1.0
    sec_start, sec_items, min_dist = _build_sectors(
        origin[0], origin[1], prims.shape, prims.center, prims.half, np.cos(prims.yaw), np.sin(prims.yaw), reach,
        NUM_SECTORS,
    )  # fmt: skip
    heights = ground.heights
    out = np.empty((2, h * w, 4), dtype=np.float32)
    out_obj = np.empty((2, h * w), dtype=np.int32)
    out_surf = np.empty((2, h * w), dtype=np.int8)
    road_params = np.array([road.origin[0], road.origin[1], road.heading, road.curvature])
    _cast_scan(
        origin, dirs, fov, noise, spec.min_range, spec.max_range, spec.range_noise, spec.dropout,
        spec.intensity_scale, -1.0 if spec.intensity_max is None else spec.intensity_max, spec.num_returns == 2,
        ground.origin[0], ground.origin[1], ground.cell, heights, float(heights.min()), float(heights.max()),
        road_params, prims.shape, prims.center, prims.half, np.cos(prims.yaw), np.sin(prims.yaw),
        prims.reflectivity, prims.material, prims.object, sec_start, sec_items, min_dist, NUM_SECTORS,
        out, out_obj, out_surf,
    )  # fmt: skip
    if NO_RETURN != -1.0:  # the kernel fills -1
        out[out == -1.0] = NO_RETURN
    return Scan(
        spec,
        out[0].reshape(h, w, 4),
        out_obj[0].reshape(h, w),
        out_surf[0].reshape(h, w),
        out[1].reshape(h, w, 4),
        out_obj[1].reshape(h, w),
        out_surf[1].reshape(h, w),
    )


def cast_rays(
    origin: np.ndarray,
    directions: np.ndarray,
    ground: HeightField,
    prims: Primitives,
    t_max: float = 1e4,
    t_min: float = 1e-4,
) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free nearest hits of arbitrary rays (for tests and tools).

    Args:
        origin: ``(3,)`` world ray origin (m), shared by all rays.
        directions: ``(N, 3)`` unit directions.
    Returns:
        ``(N,)`` float64 distance ``t`` to the hit (-1 for none) and ``(N,)`` int64 what was hit:
        the primitive index, -1 for the ground, -2 for nothing.
    """
    origin = np.asarray(origin, dtype=np.float64)
    d = np.ascontiguousarray(np.asarray(directions, dtype=np.float64).reshape(-1, 3))
    cy, sy = np.cos(prims.yaw), np.sin(prims.yaw)
    sec = _build_sectors(origin[0], origin[1], prims.shape, prims.center, prims.half, cy, sy, t_max, NUM_SECTORS)
    return _cast_rays(origin, d, t_min, t_max, ground.origin[0], ground.origin[1], ground.cell, ground.heights,
                      float(ground.heights.min()), float(ground.heights.max()), prims.shape, prims.center,
                      prims.half, cy, sy, *sec, NUM_SECTORS)  # fmt: skip


@nb.njit(parallel=True, cache=True)
def _cast_rays(origin, dirs, t_min, t_max, gx0, gy0, cell, heights, hmin, hmax, shape, center, half, cos_yaw,
               sin_yaw, sec_start, sec_items, min_dist, nsec):  # fmt: skip
    n = dirs.shape[0]
    ts = np.empty(n)
    whats = np.empty(n, dtype=np.int64)
    for i in nb.prange(n):
        t, what, _, _ = _trace(origin[0], origin[1], origin[2], dirs[i, 0], dirs[i, 1], dirs[i, 2], t_min, t_max,
                               -3, gx0, gy0, cell, heights, hmin, hmax, shape, center, half, cos_yaw, sin_yaw,
                               sec_start, sec_items, min_dist, nsec)  # fmt: skip
        ts[i] = t if what != _NONE else -1.0
        whats[i] = what
    return ts, whats
