// Torch-facing CUDA scattered_window_keys (the kernel from scattered_cuda.cu on the current stream)
// and sort_window_keys (torch's stable sort and the runs of equal keys).
#include "scattered_cuda.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../common/cuda_check.h"
#include "scattered_args.h"

namespace pointformer {
namespace {

at::Tensor scattered_window_keys_cuda(const at::Tensor& coords_in, at::IntArrayRef sparse_shape,
                                      at::IntArrayRef window_shape, bool shift) {
  const ScatteredWindowSpec spec = make_scattered_window_spec(coords_in, sparse_shape, window_shape, shift);
  const c10::cuda::CUDAGuard guard(coords_in.device());
  const at::Tensor coords = coords_in.contiguous();
  at::Tensor keys = at::empty({coords.size(0)}, coords.options().dtype(at::kLong));
  PF_CUDA_CHECK(launch_scattered_window_keys(coords.data_ptr<int32_t>(), coords.size(0), spec, keys.data_ptr<int64_t>(),
                                             c10::cuda::getCurrentCUDAStream()));
  return keys;
}

// Keys are not range-checked here (that would synchronize): the caller validates them.
std::tuple<at::Tensor, at::Tensor, at::Tensor> sort_window_keys_cuda(const at::Tensor& keys, int64_t num_keys) {
  check_sort_window_keys(keys, num_keys);
  const c10::cuda::CUDAGuard guard(keys.device());
  const auto [sorted, permutation] = at::sort(keys, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  const auto [run_keys, inverse, counts] = at::unique_consecutive(sorted, /*return_inverse=*/false,
                                                                  /*return_counts=*/true);
  at::Tensor offsets = at::cat({counts.new_zeros({1}), at::cumsum(counts, 0)});
  return {permutation, offsets, run_keys};
}

}  // namespace

TORCH_LIBRARY_IMPL(pointformer, CUDA, m) {
  m.impl("scattered_window_keys", &scattered_window_keys_cuda);
  m.impl("sort_window_keys", &sort_window_keys_cuda);
}

}  // namespace pointformer
