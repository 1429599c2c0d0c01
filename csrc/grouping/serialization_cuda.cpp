// Torch-facing CUDA space-filling-curve codes: the kernel of serialization_cuda.cu on the
// current stream. Same codes as the CPU kernel.
#include "serialization_cuda.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../common/cuda_check.h"
#include "serialization_args.h"

namespace pointformer {
namespace {

at::Tensor serialization_codes_cuda(const at::Tensor& coords_in, int64_t depth, c10::string_view order_name) {
  check_serialization_args(coords_in, depth);
  const CurveOrder order = parse_curve_order(std::string_view(order_name.data(), order_name.size()));
  const c10::cuda::CUDAGuard guard(coords_in.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor coords = coords_in.contiguous();
  at::Tensor codes = at::empty({coords.size(0)}, coords.options().dtype(at::kLong));
  PF_CUDA_CHECK(launch_serialization_codes(coords.data_ptr<int32_t>(), coords.size(0), static_cast<int>(depth), order,
                                           codes.data_ptr<int64_t>(), stream));
  return codes;
}

}  // namespace

TORCH_LIBRARY_IMPL(pointformer, CUDA, m) { m.impl("serialization_codes", &serialization_codes_cuda); }

}  // namespace pointformer
