// Validation and key set-up shared by the CPU and CUDA scattered_window_keys wrappers (torch-facing),
// and the checks of sort_window_keys.
#pragma once
#include <ATen/ATen.h>

#include <limits>

#include "../common/scattered_keys.h"
#include "window_args.h"

namespace pointformer {

inline ScatteredWindowSpec make_scattered_window_spec(const at::Tensor& coords, at::IntArrayRef sparse_shape,
                                                      at::IntArrayRef window_shape, bool shift) {
  check_window_layout_args(coords, sparse_shape, window_shape);
  ScatteredWindowSpec spec;
  for (int d = 0; d < 3; ++d) spec.shape[d] = sparse_shape[d];
  for (int d = 0; d < 2; ++d) {
    spec.window[d] = window_shape[d + 1];
    spec.shift[d] = shift ? window_shape[d + 1] / 2 : 0;
    spec.windows[d] = windows_along_axis(sparse_shape[d + 1], window_shape[d + 1]);
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
