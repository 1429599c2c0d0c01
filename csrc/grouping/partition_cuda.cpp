// Torch-facing CUDA partition_from_sorted: per-sample tables with torch ops (one synchronization
// for the number of groups), then the kernels of partition_cuda.cu.
#include "partition_cuda.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../common/cuda_check.h"
#include "partition_args.h"

namespace pointformer {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> partition_from_sorted_cuda(
    const at::Tensor& permutation_in, const at::Tensor& sample_in, int64_t batch_size, int64_t group_size) {
  check_partition_args(permutation_in, sample_in, batch_size, group_size);
  const c10::cuda::CUDAGuard guard(permutation_in.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor permutation = permutation_in.contiguous();
  const at::Tensor sample = sample_in.contiguous();
  const int64_t n = permutation.size(0);
  TORCH_CHECK(n == 0 || (sample.min().item<int64_t>() >= 0 && sample.max().item<int64_t>() < batch_size),
              "sample ids must lie in [0, batch_size)");

  const at::Tensor counts = at::bincount(sample, {}, batch_size);
  const at::Tensor groups = at::div(counts + (group_size - 1), group_size, "floor");
  const at::Tensor first_group = groups.cumsum(0) - groups;
  const at::Tensor sample_start = counts.cumsum(0) - counts;
  const int64_t num_groups = groups.sum().item<int64_t>();
  const at::Tensor group_sample = at::repeat_interleave(at::arange(batch_size, permutation.options()), groups,
                                                        /*dim=*/0, /*output_size=*/num_groups);
  const at::Tensor group_in_sample =
      at::arange(num_groups, permutation.options()) - first_group.index_select(0, group_sample);
  at::Tensor offsets = at::cat({sample_start.index_select(0, group_sample) + group_in_sample * group_size,
                                at::full({1}, n, permutation.options())});

  at::Tensor group_index = at::empty({num_groups, group_size}, permutation.options());
  at::Tensor key_mask = at::empty({num_groups, group_size}, permutation.options().dtype(at::kBool));
  at::Tensor slot_of_voxel = at::empty({n}, permutation.options());
  PF_CUDA_CHECK(launch_partition_slots(permutation.data_ptr<int64_t>(), group_sample.data_ptr<int64_t>(),
                                       counts.data_ptr<int64_t>(), sample_start.data_ptr<int64_t>(),
                                       first_group.data_ptr<int64_t>(), num_groups, group_size,
                                       group_index.data_ptr<int64_t>(), key_mask.data_ptr<bool>(), stream));
  PF_CUDA_CHECK(launch_partition_voxel_slots(permutation.data_ptr<int64_t>(), sample.data_ptr<int64_t>(),
                                             sample_start.data_ptr<int64_t>(), first_group.data_ptr<int64_t>(), n,
                                             group_size, slot_of_voxel.data_ptr<int64_t>(), stream));
  return {offsets, group_sample, group_index, key_mask, slot_of_voxel};
}

}  // namespace

TORCH_LIBRARY_IMPL(pointformer, CUDA, m) { m.impl("partition_from_sorted", &partition_from_sorted_cuda); }

}  // namespace pointformer
