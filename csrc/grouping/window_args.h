// Argument checks shared by the window-based grouping ops (flattened, rotated sets, scattered).
#pragma once
#include <ATen/ATen.h>

#include <limits>

namespace pointformer {

// coords int32 (N, 4) as (batch, z, y, x); sparse_shape and window_shape 3 entries (z, y, x), each
// in [1, 2^31 - 1] so that 32-bit window division (csrc/common/windows.h) is exact.
inline void check_window_layout_args(const at::Tensor& coords, at::IntArrayRef sparse_shape,
                                     at::IntArrayRef window_shape) {
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
}

}  // namespace pointformer
