// Torch-facing CUDA segment_reduce: builds the CSR grouping with torch's stable sort, then runs
// the kernels of segment_reduce_cuda.cu.
#include "segment_reduce_cuda.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../common/cuda_check.h"
#include "../common/cuda_types.h"
#include "segment_reduce_args.h"

namespace pointformer {
namespace {

struct Csr {
  at::Tensor rows;     // (N',) row indices grouped by segment, input order inside a segment
  at::Tensor offsets;  // (S + 1,)
  at::Tensor counts;   // (S,)
};

// Groups rows by segment with torch's stable sort; rows outside [0, S) get key S and sort last.
Csr build_csr(const at::Tensor& segment, int64_t num_segments) {
  const at::Tensor valid = (segment >= 0).logical_and(segment < num_segments);
  const at::Tensor keys = at::where(valid, segment, at::full_like(segment, num_segments));
  const auto [sorted_keys, rows] = at::sort(keys, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  const at::Tensor counts = at::bincount(sorted_keys, {}, num_segments + 1).narrow(0, 0, num_segments).contiguous();
  const at::Tensor offsets = at::cat({at::zeros({1}, counts.options()), counts.cumsum(0)});
  return {rows, offsets, counts};
}

std::tuple<at::Tensor, at::Tensor> segment_reduce_cuda(const at::Tensor& values_in, const at::Tensor& segment_in,
                                                       int64_t num_segments, c10::string_view reduce_name) {
  check_segment_args(values_in, segment_in, num_segments);
  const Reduce reduce = parse_reduce(reduce_name);
  const c10::cuda::CUDAGuard guard(values_in.device());
  const at::Tensor values = values_in.contiguous();
  const Csr csr = build_csr(segment_in.contiguous(), num_segments);
  at::Tensor out = at::empty({num_segments, values.size(1)}, values.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, values.scalar_type(), "segment_reduce_cuda", [&] {
    using T = typename CudaType<scalar_t>::type;
    PF_CUDA_CHECK(launch_segment_reduce<T>(reinterpret_cast<const T*>(values.data_ptr<scalar_t>()), values.size(1),
                                           csr.rows.data_ptr<int64_t>(), csr.offsets.data_ptr<int64_t>(), num_segments,
                                           static_cast<int>(reduce), reinterpret_cast<T*>(out.data_ptr<scalar_t>()),
                                           c10::cuda::getCurrentCUDAStream()));
  });
  return {out, csr.counts};
}

at::Tensor segment_reduce_backward_cuda(const at::Tensor& grad_out_in, const at::Tensor& segment_in,
                                        const at::Tensor& counts_in, const at::Tensor& values_in,
                                        const at::Tensor& out_in, c10::string_view reduce_name) {
  const Reduce reduce = parse_reduce(reduce_name);
  const c10::cuda::CUDAGuard guard(grad_out_in.device());
  const at::Tensor grad_out = grad_out_in.contiguous();
  const at::Tensor segment = segment_in.contiguous();
  const at::Tensor counts = counts_in.contiguous();
  const int64_t num_segments = grad_out.size(0), n = segment.size(0);
  at::Tensor grad_in = at::zeros({n, grad_out.size(1)}, grad_out.options());
  Csr csr;
  at::Tensor values, out;
  if (reduce == Reduce::kMax) {
    TORCH_CHECK(values_in.size(0) == n && out_in.sizes() == grad_out.sizes(),
                "segment_reduce_backward for max needs the forward's values and output");
    csr = build_csr(segment, num_segments);
    values = values_in.contiguous().to(grad_out.scalar_type());
    out = out_in.contiguous().to(grad_out.scalar_type());
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_out.scalar_type(), "segment_reduce_bwd_cuda", [&] {
    using T = typename CudaType<scalar_t>::type;
    const bool is_max = reduce == Reduce::kMax;
    PF_CUDA_CHECK(launch_segment_reduce_backward<T>(
        reinterpret_cast<const T*>(grad_out.data_ptr<scalar_t>()), grad_out.size(1), num_segments,
        segment.data_ptr<int64_t>(), counts.data_ptr<int64_t>(), n, static_cast<int>(reduce),
        is_max ? csr.rows.data_ptr<int64_t>() : nullptr, is_max ? csr.offsets.data_ptr<int64_t>() : nullptr,
        is_max ? reinterpret_cast<const T*>(values.data_ptr<scalar_t>()) : nullptr,
        is_max ? reinterpret_cast<const T*>(out.data_ptr<scalar_t>()) : nullptr,
        reinterpret_cast<T*>(grad_in.data_ptr<scalar_t>()), c10::cuda::getCurrentCUDAStream()));
  });
  return grad_in;
}

}  // namespace

TORCH_LIBRARY_IMPL(pointformer, CUDA, m) {
  m.impl("segment_reduce", &segment_reduce_cuda);
  m.impl("segment_reduce_backward", &segment_reduce_backward_cuda);
}

}  // namespace pointformer
