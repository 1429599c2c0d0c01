// Torch-facing CUDA `dsvt_set_index`: per-window prefix sums with torch, one synchronization for
// the number of sets (and the argument checks), then the kernels of rotated_sets_cuda.cu.
#include "rotated_sets_cuda.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../common/cuda_check.h"
#include "rotated_sets_args.h"

namespace pointformer {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> dsvt_set_index_cuda(const at::Tensor& sorted_in,
                                                                                           const at::Tensor& counts_in,
                                                                                           int64_t set_size) {
  check_dsvt_set_index_args(sorted_in, counts_in, set_size);
  const c10::cuda::CUDAGuard guard(sorted_in.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor sorted = sorted_in.contiguous();
  const at::Tensor counts = counts_in.contiguous();
  const int64_t num_orders = sorted.size(0), num_voxels = sorted.size(1), num_windows = counts.size(0);
  const int64_t tau = set_size;
  const auto opts = sorted.options();

  const at::Tensor sets_per_window = at::div(counts + (tau - 1), tau, "floor");
  const at::Tensor set_end = sets_per_window.cumsum(0);
  const at::Tensor voxel_end = counts.cumsum(0);
  // One synchronization: number of sets, total voxels, smallest window.
  const at::Tensor sizes = num_windows > 0 ? at::stack({set_end[-1], voxel_end[-1], counts.min()}).cpu()
                                           : at::tensor({int64_t(0), int64_t(0), int64_t(1)});
  const int64_t num_sets = sizes[0].item<int64_t>();
  TORCH_CHECK(sizes[2].item<int64_t>() >= 1, "window_counts must be >= 1");
  TORCH_CHECK(sizes[1].item<int64_t>() == num_voxels, "window_counts add up to ", sizes[1].item<int64_t>(),
              ", sorted_voxels has ", num_voxels, " voxels");

  const at::Tensor first_set = set_end - sets_per_window;
  const at::Tensor window_start = voxel_end - counts;
  const at::Tensor set_window =
      at::repeat_interleave(at::arange(num_windows, opts), sets_per_window, /*dim=*/0, /*output_size=*/num_sets);
  const at::Tensor voxel_window =
      at::repeat_interleave(at::arange(num_windows, opts), counts, /*dim=*/0, /*output_size=*/num_voxels);
  at::Tensor index = at::empty({num_orders, num_sets, tau}, opts);
  at::Tensor mask = at::empty({num_orders, num_sets, tau}, opts.dtype(at::kBool));
  at::Tensor offsets = at::empty({num_sets + 1}, opts);
  offsets.narrow(0, num_sets, 1).fill_(num_voxels);
  at::Tensor slot_of_voxel = at::empty({num_orders, num_voxels}, opts);
  PF_CUDA_CHECK(launch_dsvt_set_index(sorted.data_ptr<int64_t>(), num_orders, num_voxels, counts.data_ptr<int64_t>(),
                                      window_start.data_ptr<int64_t>(), first_set.data_ptr<int64_t>(),
                                      set_window.data_ptr<int64_t>(), voxel_window.data_ptr<int64_t>(), num_sets, tau,
                                      index.data_ptr<int64_t>(), mask.data_ptr<bool>(), offsets.data_ptr<int64_t>(),
                                      slot_of_voxel.data_ptr<int64_t>(), stream));
  return {index, mask, set_window, offsets, slot_of_voxel};
}

// Keys of both orders in one kernel, then a stable torch sort of the (2, N) keys and the window
// counts from the sorted y-major keys. Voxels outside the grid are not checked here (their key -1
// sorts first); the CPU kernel rejects them.
std::tuple<at::Tensor, at::Tensor, at::Tensor> dsvt_window_order_cuda(const at::Tensor& coords_in, int64_t batch_size,
                                                                      at::IntArrayRef sparse_shape,
                                                                      at::IntArrayRef window_shape,
                                                                      at::IntArrayRef shift) {
  int64_t key_limit = 0;
  const DsvtWindowSpec spec =
      make_dsvt_window_spec(coords_in, batch_size, sparse_shape, window_shape, shift, key_limit);
  const c10::cuda::CUDAGuard guard(coords_in.device());
  const at::Tensor coords = coords_in.contiguous();
  const int64_t n = coords.size(0);
  const auto opts = coords.options().dtype(at::kLong);
  at::Tensor keys = at::empty({2, n}, opts);
  at::Tensor in_window = at::empty({n, 3}, opts);
  PF_CUDA_CHECK(launch_dsvt_window_keys(coords.data_ptr<int32_t>(), n, spec, keys.data_ptr<int64_t>(),
                                        in_window.data_ptr<int64_t>(), c10::cuda::getCurrentCUDAStream()));
  const auto [sorted_keys, order] = at::sort(keys, /*stable=*/std::optional<bool>(true), /*dim=*/1);
  const int64_t volume = spec.window[0] * spec.window[1] * spec.window[2];
  const at::Tensor window_counts =
      std::get<2>(at::unique_consecutive(at::div(sorted_keys[0], volume, "floor"), false, true));
  return {order, window_counts, in_window};
}

}  // namespace

TORCH_LIBRARY_IMPL(pointformer, CUDA, m) {
  m.impl("dsvt_set_index", &dsvt_set_index_cuda);
  m.impl("dsvt_window_order", &dsvt_window_order_cuda);
}

}  // namespace pointformer
