// Argument checks shared by the CPU and CUDA `dsvt_set_index` wrappers (torch-facing).
#pragma once
#include <ATen/ATen.h>

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

}  // namespace pointformer
