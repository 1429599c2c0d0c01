// Point -> voxel arithmetic shared by every voxelize implementation (CPU, CUDA; the pure-PyTorch
// reference in pointformer/ops/voxelize.py mirrors it operation for operation).
#pragma once
#include "macros.h"

namespace pointformer {

// A regular grid over the half-open box [range_min, range_max). Sizes are in metres, axis order
// x, y, z; `shape` is the number of cells along x, y, z (the caller derives and validates it).
template <typename T>
struct GridSpec {
  T range_min[3];
  T range_max[3];
  T voxel_size[3];
  int64_t shape[3];  // (X, Y, Z)
};

// Linear key of a voxel: ((batch * Z + z) * Y + y) * X + x. Ordering voxels by this key orders
// them lexicographically by (batch, z, y, x), the spconv coordinate order.
PF_HD int64_t voxel_key(int64_t batch, int64_t z, int64_t y, int64_t x, const int64_t shape[3]) {
  return ((batch * shape[2] + z) * shape[1] + y) * shape[0] + x;
}

// Voxel key of point `p` (x, y, z) in sample `batch`, or -1 when the point is dropped: outside the
// half-open range, NaN/inf, or (after float rounding right below range_max) past the last cell.
// The comparisons are written as !(a >= b) so that NaN fails them.
template <typename T>
PF_HD int64_t point_voxel_key(const T* p, int64_t batch, const GridSpec<T>& g) {
  int64_t cell[3];
  for (int d = 0; d < 3; ++d) {
    const T v = p[d];
    if (!(v >= g.range_min[d] && v < g.range_max[d])) return -1;
    const int64_t c = static_cast<int64_t>(floor((v - g.range_min[d]) / g.voxel_size[d]));
    if (c < 0 || c >= g.shape[d]) return -1;
    cell[d] = c;
  }
  return voxel_key(batch, cell[2], cell[1], cell[0], g.shape);
}

// Inverse of voxel_key: writes (batch, z, y, x) as int32.
PF_HD void decode_voxel_key(int64_t key, const int64_t shape[3], int32_t* out) {
  const int64_t x = key % shape[0];
  key /= shape[0];
  const int64_t y = key % shape[1];
  key /= shape[1];
  const int64_t z = key % shape[2];
  out[0] = static_cast<int32_t>(key / shape[2]);
  out[1] = static_cast<int32_t>(z);
  out[2] = static_cast<int32_t>(y);
  out[3] = static_cast<int32_t>(x);
}

}  // namespace pointformer
