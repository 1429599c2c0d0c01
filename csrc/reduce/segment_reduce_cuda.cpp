// Torch-facing CUDA segment_reduce: builds the CSR grouping with torch's stable sort, then runs
// the kernels of segment_reduce_cuda.cu.
#include "segment_reduce_cuda.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <torch/library.h>

#include "../common/cuda_check.h"
#include "segment_reduce_args.h"

namespace pointformer {
namespace {

// ATen's half types and CUDA's have the same layout.
template <typename T>
struct CudaType {
  using type = T;
};
template <>
struct CudaType<at::Half> {
  using type = __half;
};
template <>
struct CudaType<at::BFloat16> {
  using type = __nv_bfloat16;
};

std::tuple<at::Tensor, at::Tensor> segment_reduce_cuda(const at::Tensor& values_in, const at::Tensor& segment_in,
                                                       int64_t num_segments, c10::string_view reduce_name) {
  check_segment_args(values_in, segment_in, num_segments);
  const Reduce reduce = parse_reduce(reduce_name);
  const c10::cuda::CUDAGuard guard(values_in.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor values = values_in.contiguous();
  const at::Tensor segment = segment_in.contiguous();
  const int64_t channels = values.size(1);

  // Rows outside [0, S) get key S and sort last, beyond offsets[S].
  const at::Tensor valid = (segment >= 0).logical_and(segment < num_segments);
  const at::Tensor keys = at::where(valid, segment, at::full_like(segment, num_segments));
  const auto [sorted_keys, rows] = at::sort(keys, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  const at::Tensor counts = at::bincount(sorted_keys, {}, num_segments + 1).narrow(0, 0, num_segments);
  const at::Tensor offsets = at::cat({at::zeros({1}, counts.options()), counts.cumsum(0)});

  at::Tensor out = at::empty({num_segments, channels}, values.options());
  at::Tensor aux = reduce == Reduce::kMax ? at::empty({num_segments, channels}, counts.options()) : counts.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, values.scalar_type(), "segment_reduce_cuda", [&] {
    using T = typename CudaType<scalar_t>::type;
    PF_CUDA_CHECK(launch_segment_reduce<T>(reinterpret_cast<const T*>(values.data_ptr<scalar_t>()), channels,
                                           rows.data_ptr<int64_t>(), offsets.data_ptr<int64_t>(), num_segments,
                                           static_cast<int>(reduce), reinterpret_cast<T*>(out.data_ptr<scalar_t>()),
                                           reduce == Reduce::kMax ? aux.data_ptr<int64_t>() : nullptr, stream));
  });
  return {out, aux};
}

at::Tensor segment_reduce_backward_cuda(const at::Tensor& grad_out_in, const at::Tensor& segment_in,
                                        const at::Tensor& aux_in, int64_t num_values, c10::string_view reduce_name) {
  const Reduce reduce = parse_reduce(reduce_name);
  const c10::cuda::CUDAGuard guard(grad_out_in.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor grad_out = grad_out_in.contiguous();
  const at::Tensor segment = segment_in.contiguous();
  const at::Tensor aux = aux_in.contiguous();
  TORCH_CHECK(segment.size(0) == num_values, "segment must have num_values entries");
  at::Tensor grad_in = at::zeros({num_values, grad_out.size(1)}, grad_out.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_out.scalar_type(), "segment_reduce_bwd_cuda", [&] {
    using T = typename CudaType<scalar_t>::type;
    PF_CUDA_CHECK(launch_segment_reduce_backward<T>(reinterpret_cast<const T*>(grad_out.data_ptr<scalar_t>()),
                                                    grad_out.size(1), grad_out.size(0), segment.data_ptr<int64_t>(),
                                                    aux.data_ptr<int64_t>(), num_values, static_cast<int>(reduce),
                                                    reinterpret_cast<T*>(grad_in.data_ptr<scalar_t>()), stream));
  });
  return grad_in;
}

}  // namespace

TORCH_LIBRARY_IMPL(pointformer, CUDA, m) {
  m.impl("segment_reduce", &segment_reduce_cuda);
  m.impl("segment_reduce_backward", &segment_reduce_backward_cuda);
}

}  // namespace pointformer
