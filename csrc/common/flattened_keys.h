// FlatFormer's flattened-window sort keys, shared by the CPU and CUDA kernels (the pure-PyTorch
// reference in pointformer/ops/grouping/flattened.py mirrors it operation for operation; the
// formula, the batch-major composite and the proof of its exactness are in that module's
// docstring).
#pragma once
#include "macros.h"
#include "windows.h"

namespace pointformer {

// Everything a key needs; the torch-facing wrapper fills it from sparse_shape / window_shape.
struct FlatWindowSpec {
  int64_t shape[3];     // grid (Z, Y, X)
  int64_t window[2];    // (wy, wx)
  int64_t shift[2];     // (sy, sx): (wy / 2, wx / 2) for shifted windows, else 0
  int64_t windows[2];   // (m1, n1) = (ceil(Y / wy) + 1, ceil(X / wx) + 1)
  int64_t sample_span;  // P * Z with P = 8 * n1 * m1 * wx * wy: a sample's keys span [b, b + 1) * span
  int64_t max_batch;    // batches >= this would overflow int64 keys
  bool y_axis;          // sort axis "y" (else "x")
};

// (-1)^v for v >= 0.
PF_HD int64_t serpentine_sign(int64_t v) { return (v & 1) ? -1 : 1; }

// FlatFormer's key of cell (y, x) inside its sample, in [0, P). With all sizes doubled
// (N1, M1, N2, M2 = 2 n1, 2 m1, 2 wx, 2 wy) and s = serpentine_sign:
//   "x": (N1 y1 + s(y1) x1) N2 M2 + s(y1) (M2 x2 + s(x2) y2)
//   "y": (M1 x1 + s(x1) y1) M2 N2 + s(x1) (N2 y2 + s(y2) x2)
PF_HD int64_t flattened_window_key_in_sample(int64_t y, int64_t x, const FlatWindowSpec& spec) {
  const int64_t wy = spec.window[0], wx = spec.window[1];
  int64_t y1, y2, x1, x2;  // called inside the grid only: window_split's 32-bit division is exact
  window_split(y, spec.shift[0], wy, y1, y2);
  window_split(x, spec.shift[1], wx, x1, x2);
  const int64_t n1 = 2 * spec.windows[1], m1 = 2 * spec.windows[0], n2 = 2 * wx, m2 = 2 * wy;
  if (spec.y_axis) {
    const int64_t s1 = serpentine_sign(x1), s2 = serpentine_sign(y2);
    return (m1 * x1 + s1 * y1) * m2 * n2 + s1 * (n2 * y2 + s2 * x2);
  }
  const int64_t s1 = serpentine_sign(y1), s2 = serpentine_sign(x2);
  return (n1 * y1 + s1 * x1) * n2 * m2 + s1 * (m2 * x2 + s2 * y2);
}

// Batch-major key of voxel (b, z, y, x): (b * P + v) * Z + z = b * span + v * Z + z, or -1 for a
// voxel outside the grid, with a negative batch, or with a batch whose keys overflow int64.
PF_HD int64_t flattened_window_key(int64_t b, int64_t z, int64_t y, int64_t x, const FlatWindowSpec& spec) {
  if (b < 0 || b >= spec.max_batch || z < 0 || z >= spec.shape[0] || y < 0 || y >= spec.shape[1] || x < 0 ||
      x >= spec.shape[2]) {
    return -1;
  }
  return b * spec.sample_span + flattened_window_key_in_sample(y, x, spec) * spec.shape[0] + z;
}

}  // namespace pointformer
