// Validation and key set-up shared by the CPU and CUDA flattened_window_keys wrappers (torch-facing).
#pragma once
#include <ATen/ATen.h>

#include <limits>
#include <string>

#include "../common/flattened_keys.h"
#include "window_args.h"

namespace pointformer {

inline FlatWindowSpec make_flat_window_spec(const at::Tensor& coords, at::IntArrayRef sparse_shape,
                                            at::IntArrayRef window_shape, c10::string_view axis, bool shift) {
  check_window_layout_args(coords, sparse_shape, window_shape);
  TORCH_CHECK(window_shape[0] == 1, "window_shape[0] (wz) must be 1, got ", window_shape);
  TORCH_CHECK(axis == "x" || axis == "y", "axis must be 'x' or 'y', got '", std::string(axis), "'");
  FlatWindowSpec spec;
  for (int d = 0; d < 3; ++d) spec.shape[d] = sparse_shape[d];
  for (int d = 0; d < 2; ++d) {
    spec.window[d] = window_shape[d + 1];
    spec.shift[d] = shift ? window_shape[d + 1] / 2 : 0;
    spec.windows[d] = windows_along_axis(sparse_shape[d + 1], window_shape[d + 1]);
  }
  spec.y_axis = axis == "y";
  // span = 8 * n1 * m1 * wx * wy * Z, checked factor by factor against int64 overflow.
  const int64_t factors[6] = {spec.windows[0], spec.windows[1], spec.window[0], spec.window[1], spec.shape[0], 8};
  int64_t span = 1;
  for (const int64_t f : factors) {
    TORCH_CHECK(span <= std::numeric_limits<int64_t>::max() / f, "sparse_shape ", sparse_shape, " with window ",
                window_shape, " overflows int64 sort keys");
    span *= f;
  }
  spec.sample_span = span;
  spec.max_batch = std::numeric_limits<int64_t>::max() / span;
  return spec;
}

}  // namespace pointformer
