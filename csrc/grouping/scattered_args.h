// Validation and key set-up shared by the CPU and CUDA scattered_window_keys wrappers (torch-facing),
// and the checks of sort_window_keys.
#pragma once
#include <ATen/ATen.h>

#include <limits>

#include "../common/scattered_keys.h"

namespace pointformer {

inline ScatteredWindowSpec make_scattered_window_spec(const at::Tensor& coords, at::IntArrayRef sparse_shape,
                                                      at::IntArrayRef window_shape, bool shift) {
  TORCH_CHECK(coords.dim() == 2 && coords.size(1) == 4 && coords.scalar_type() == at::kInt,
              "coords must be an int32 tensor of shape (N, 4) as (batch, z, y, x), got ", coords.scalar_type(), " ",
              coords.sizes());
  TORCH_CHECK(sparse_shape.size() == 3 && window_shape.size() == 3,
              "sparse_shape and window_shape must have 3 entries (z, y, x)");
  constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
  for (int d = 0; d < 3; ++d) {
    TORCH_CHECK(sparse_shape[d] >= 1 && sparse_shape[d] <= kInt32Max,
                "sparse_shape entries must be in [1, 2^31 - 1], got ", sparse_shape);
    TORCH_CHECK(window_shape[d] >= 1 && window_shape[d] <= kInt32Max,
                "window_shape entries must be in [1, 2^31 - 1], got ", window_shape);
  }
  ScatteredWindowSpec spec;
  for (int d = 0; d < 3; ++d) spec.shape[d] = sparse_shape[d];
  for (int d = 0; d < 2; ++d) {
    spec.window[d] = window_shape[d + 1];
    spec.shift[d] = shift ? window_shape[d + 1] / 2 : 0;
    spec.windows[d] = (sparse_shape[d + 1] + window_shape[d + 1] - 1) / window_shape[d + 1] + 1;
  }
  // WY, WX <= 2^31, so WY * WX fits int64.
  spec.max_batch = std::numeric_limits<int64_t>::max() / (spec.windows[0] * spec.windows[1]);
  return spec;
}

inline void check_sort_window_keys(const at::Tensor& keys, int64_t num_keys) {
  TORCH_CHECK(keys.dim() == 1 && keys.scalar_type() == at::kLong, "keys must be a (N,) int64 tensor, got ",
              keys.scalar_type(), " ", keys.sizes());
  TORCH_CHECK(num_keys >= 0, "num_keys must be >= 0, got ", num_keys);
}

}  // namespace pointformer
