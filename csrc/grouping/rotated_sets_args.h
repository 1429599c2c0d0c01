// Argument checks shared by the CPU and CUDA `dsvt_set_index` wrappers (torch-facing).
#pragma once
#include <ATen/ATen.h>

#include <limits>

#include "../common/dsvt_sets.h"
#include "window_args.h"

namespace pointformer {

inline void check_dsvt_set_index_args(const at::Tensor& sorted_voxels, const at::Tensor& window_counts,
                                      int64_t set_size) {
  TORCH_CHECK(sorted_voxels.dim() == 2 && sorted_voxels.scalar_type() == at::kLong,
              "sorted_voxels must be an int64 (K, N) tensor, got ", sorted_voxels.scalar_type(), " ",
              sorted_voxels.sizes());
  TORCH_CHECK(window_counts.dim() == 1 && window_counts.scalar_type() == at::kLong,
              "window_counts must be an int64 (W,) tensor, got ", window_counts.scalar_type(), " ",
              window_counts.sizes());
  TORCH_CHECK(sorted_voxels.device() == window_counts.device(), "sorted_voxels and window_counts must share a device");
  TORCH_CHECK(set_size >= 1, "set_size must be >= 1, got ", set_size);
}

// Checks the `dsvt_window_order` arguments and fills the spec; key_limit is the number of distinct
// sort keys (batch_size * Wz * Wy * Wx windows of wz * wy * wx cells), checked below 2^62.
inline DsvtWindowSpec make_dsvt_window_spec(const at::Tensor& coords, int64_t batch_size, at::IntArrayRef sparse_shape,
                                            at::IntArrayRef window_shape, at::IntArrayRef shift, int64_t& key_limit) {
  check_window_layout_args(coords, sparse_shape, window_shape);
  TORCH_CHECK(shift.size() == 3, "shift must have 3 entries (z, y, x)");
  TORCH_CHECK(batch_size >= 0, "batch_size must be >= 0, got ", batch_size);
  DsvtWindowSpec spec;
  spec.batch_size = batch_size;
  key_limit = batch_size;
  for (int d = 0; d < 3; ++d) {
    TORCH_CHECK(shift[d] >= 0 && shift[d] <= window_shape[d], "shift entries must be in [0, window], got ", shift,
                " for window ", window_shape);
    spec.shape[d] = sparse_shape[d];
    spec.window[d] = window_shape[d];
    spec.shift[d] = shift[d];
    spec.windows[d] = windows_along_axis(sparse_shape[d], window_shape[d]);
  }
  const int64_t factors[6] = {spec.windows[0], spec.windows[1], spec.windows[2],
                              spec.window[0],  spec.window[1],  spec.window[2]};
  constexpr int64_t kLimit = int64_t(1) << 62;
  for (const int64_t f : factors) {
    TORCH_CHECK(key_limit <= kLimit / f, "batch_size ", batch_size, " x windows of ", window_shape,
                " overflow int64 sort keys");
    key_limit *= f;
  }
  return spec;
}

}  // namespace pointformer
