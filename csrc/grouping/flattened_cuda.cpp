// Torch-facing CUDA flattened_window_keys: the kernel from flattened_cuda.cu on the current stream.
#include "flattened_cuda.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../common/cuda_check.h"
#include "flattened_args.h"

namespace pointformer {
namespace {

at::Tensor flattened_window_keys_cuda(const at::Tensor& coords_in, at::IntArrayRef sparse_shape,
                                      at::IntArrayRef window_shape, c10::string_view axis, bool shift) {
  const FlatWindowSpec spec = make_flat_window_spec(coords_in, sparse_shape, window_shape, axis, shift);
  const c10::cuda::CUDAGuard guard(coords_in.device());
  const at::Tensor coords = coords_in.contiguous();
  at::Tensor keys = at::empty({coords.size(0)}, coords.options().dtype(at::kLong));
  PF_CUDA_CHECK(launch_flattened_window_keys(coords.data_ptr<int32_t>(), coords.size(0), spec, keys.data_ptr<int64_t>(),
                                             c10::cuda::getCurrentCUDAStream()));
  return keys;
}

}  // namespace

TORCH_LIBRARY_IMPL(pointformer, CUDA, m) { m.impl("flattened_window_keys", &flattened_window_keys_cuda); }

}  // namespace pointformer
