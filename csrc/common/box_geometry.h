// Rotated-box geometry shared by the CPU and CUDA box kernels. A box is 7 numbers
// [x, y, z, dx, dy, dz, heading]: centre (metres), full extents along its own axes, and heading
// counter-clockwise from +x (radians). The pure-PyTorch reference (pointformer/ops/boxes.py)
// follows the same steps so that the three implementations agree.
#pragma once
#include "macros.h"

namespace pointformer {

template <typename T>
struct Vec2 {
  T x, y;
};

// Clipping a convex quadrilateral by four half-planes yields at most 8 vertices in exact
// arithmetic; float rounding near-degenerate edges can add a few duplicates, so leave room and
// drop anything beyond (the dropped vertices coincide with kept ones up to rounding).
constexpr int kMaxPolygon = 16;

// (b - a) x (c - a): > 0 when c lies left of the directed line a -> b.
template <typename T>
PF_HD T cross3(const Vec2<T>& a, const Vec2<T>& b, const Vec2<T>& c) {
  return (b.x - a.x) * (c.y - a.y) - (b.y - a.y) * (c.x - a.x);
}

// Bird's-eye-view corners, counter-clockwise: rear-right, front-right, front-left, rear-left.
// Coordinates are relative to `origin` so that float32 keeps its precision far from the sensor.
template <typename T>
PF_HD void bev_corners(const T* box, T origin_x, T origin_y, Vec2<T>* out) {
  const T cx = box[0] - origin_x, cy = box[1] - origin_y;
  const T hx = box[3] / T(2), hy = box[4] / T(2);
  const T c = cos(box[6]), s = sin(box[6]);
  const T lx[4] = {-hx, hx, hx, -hx};
  const T ly[4] = {-hy, -hy, hy, hy};
  for (int k = 0; k < 4; ++k) {
    out[k].x = cx + lx[k] * c - ly[k] * s;
    out[k].y = cy + lx[k] * s + ly[k] * c;
  }
}

// Sutherland-Hodgman step: keeps the part of convex polygon `in` (n vertices) left of a -> b.
template <typename T>
PF_HD int clip_polygon(const Vec2<T>* in, int n, const Vec2<T>& a, const Vec2<T>& b, Vec2<T>* out) {
  int m = 0;
  for (int i = 0; i < n; ++i) {
    const Vec2<T>& p = in[i];
    const Vec2<T>& q = in[(i + 1) % n];
    const T dp = cross3(a, b, p);
    const T dq = cross3(a, b, q);
    const bool p_in = dp >= T(0);
    const bool q_in = dq >= T(0);
    if (p_in && m < kMaxPolygon) out[m++] = p;
    if (p_in != q_in && m < kMaxPolygon) {
      const T t = dp / (dp - dq);
      out[m].x = p.x + t * (q.x - p.x);
      out[m].y = p.y + t * (q.y - p.y);
      ++m;
    }
  }
  return m;
}

template <typename T>
PF_HD T polygon_area(const Vec2<T>* poly, int n) {
  T twice = T(0);
  for (int i = 0; i < n; ++i) {
    const Vec2<T>& p = poly[i];
    const Vec2<T>& q = poly[(i + 1) % n];
    twice += p.x * q.y - q.x * p.y;
  }
  return fabs(twice) / T(2);
}

// Exact area of the bird's-eye-view intersection of two rotated boxes.
template <typename T>
PF_HD T bev_overlap_area(const T* a, const T* b) {
  // Cheap rejection: boxes whose circumscribed circles are apart cannot overlap.
  const T ddx = a[0] - b[0], ddy = a[1] - b[1];
  const T ra = sqrt(a[3] * a[3] + a[4] * a[4]) / T(2);
  const T rb = sqrt(b[3] * b[3] + b[4] * b[4]) / T(2);
  if (ddx * ddx + ddy * ddy > (ra + rb) * (ra + rb)) return T(0);
  if (!(a[3] > T(0) && a[4] > T(0) && b[3] > T(0) && b[4] > T(0))) return T(0);

  Vec2<T> clip_edges[4];
  Vec2<T> buf0[kMaxPolygon], buf1[kMaxPolygon];
  bev_corners(a, a[0], a[1], buf0);
  bev_corners(b, a[0], a[1], clip_edges);
  int n = 4;
  Vec2<T>* src = buf0;
  Vec2<T>* dst = buf1;
  for (int e = 0; e < 4 && n > 0; ++e) {
    n = clip_polygon(src, n, clip_edges[e], clip_edges[(e + 1) % 4], dst);
    Vec2<T>* tmp = src;
    src = dst;
    dst = tmp;
  }
  return n >= 3 ? polygon_area(src, n) : T(0);
}

// Intersection over union of two boxes, in bird's-eye view (is_3d = false) or in 3D. Boxes with a
// zero extent have zero volume; a pair whose union is zero has IoU 0.
template <typename T>
PF_HD T box_iou(const T* a, const T* b, bool is_3d) {
  const T inter_area = bev_overlap_area(a, b);
  T inter = inter_area, vol_a = a[3] * a[4], vol_b = b[3] * b[4];
  if (is_3d) {
    const T top = fmin(a[2] + a[5] / T(2), b[2] + b[5] / T(2));
    const T bottom = fmax(a[2] - a[5] / T(2), b[2] - b[5] / T(2));
    inter = inter_area * fmax(top - bottom, T(0));
    vol_a *= a[5];
    vol_b *= b[5];
  }
  const T uni = vol_a + vol_b - inter;
  return uni > T(0) ? inter / uni : T(0);
}

// Whether point p (x, y, z) lies in the closed box (faces included).
template <typename T>
PF_HD bool point_in_box(const T* p, const T* box) {
  const T hz = box[5] / T(2);
  if (!(fabs(p[2] - box[2]) <= hz)) return false;
  const T c = cos(box[6]), s = sin(box[6]);
  const T dx = p[0] - box[0], dy = p[1] - box[1];
  const T local_x = dx * c + dy * s;
  const T local_y = -dx * s + dy * c;
  return fabs(local_x) <= box[3] / T(2) && fabs(local_y) <= box[4] / T(2);
}

}  // namespace pointformer
