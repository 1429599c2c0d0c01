// ScatterFormer's scattered-window sort keys, shared by the CPU and CUDA kernels (the pure-PyTorch
// reference in pointformer/ops/grouping/scattered.py mirrors it operation for operation).
#pragma once
#include "macros.h"
#include "windows.h"

namespace pointformer {

// Everything a key needs; the torch-facing wrapper fills it from sparse_shape / window_shape.
struct ScatteredWindowSpec {
  int64_t shape[3];    // grid (Z, Y, X)
  int64_t window[2];   // (wy, wx)
  int64_t shift[2];    // (wy / 2, wx / 2) for shifted windows, else 0
  int64_t windows[2];  // (WY, WX) = (ceil(Y / wy) + 1, ceil(X / wx) + 1)
  int64_t max_batch;   // batches >= this would overflow int64 keys
};

// (b * WY + window y) * WX + window x of voxel (b, z, y, x), or -1 for a voxel outside the grid,
// with a negative batch, or with a batch whose keys overflow int64.
PF_HD int64_t scattered_window_key(int64_t b, int64_t z, int64_t y, int64_t x, const ScatteredWindowSpec& spec) {
  if (b < 0 || b >= spec.max_batch || z < 0 || z >= spec.shape[0] || y < 0 || y >= spec.shape[1] || x < 0 ||
      x >= spec.shape[2]) {
    return -1;
  }
  int64_t wy, wx, iy, ix;  // inside the grid: window_split's 32-bit division is exact
  window_split(y, spec.shift[0], spec.window[0], wy, iy);
  window_split(x, spec.shift[1], spec.window[1], wx, ix);
  return (b * spec.windows[0] + wy) * spec.windows[1] + wx;
}

}  // namespace pointformer
