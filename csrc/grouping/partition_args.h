// Argument checks shared by the CPU and CUDA partition_from_sorted wrappers.
#pragma once
#include <ATen/ATen.h>

namespace pointformer {

inline void check_partition_args(const at::Tensor& permutation, const at::Tensor& sample, int64_t batch_size,
                                 int64_t group_size) {
  TORCH_CHECK(permutation.dim() == 1 && permutation.scalar_type() == at::kLong,
              "permutation must be an int64 tensor of shape (N,)");
  TORCH_CHECK(sample.sizes() == permutation.sizes() && sample.scalar_type() == at::kLong,
              "sample_of_voxel must be an int64 tensor of shape (N,) like permutation");
  TORCH_CHECK(sample.device() == permutation.device(), "permutation and sample_of_voxel must share a device");
  TORCH_CHECK(batch_size >= 1, "batch_size must be >= 1, got ", batch_size);
  TORCH_CHECK(group_size >= 1, "group_size must be >= 1, got ", group_size);
}

}  // namespace pointformer
