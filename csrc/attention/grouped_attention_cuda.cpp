// Torch-facing CUDA grouped_attention: checks, output allocation, and the launchers of
// grouped_attention_cuda.cu. No data-dependent checks (they would synchronize): indices must be in
// range and offsets non-decreasing, as the public Python functions produce them.
#include "grouped_attention_cuda.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cmath>

#include "../common/cuda_check.h"
#include "../common/cuda_types.h"
#include "grouped_attention_args.h"

namespace pointformer {
namespace {

// float, half and bfloat16 only (the launchers are instantiated for those): f(scalar_t tag).
template <typename F>
void dispatch_attention_type(at::ScalarType type, const F& f) {
  switch (type) {
    case at::kFloat:
      f(float());
      break;
    case at::kHalf:
      f(at::Half());
      break;
    case at::kBFloat16:
      f(at::BFloat16());
      break;
    default:
      TORCH_CHECK(false, "grouped_attention on CUDA takes float32, float16 or bfloat16, got ", type);
  }
}

void check_cuda_inputs(const at::Tensor& q, int64_t num_heads) {
  TORCH_CHECK(q.scalar_type() == at::kFloat || q.scalar_type() == at::kHalf || q.scalar_type() == at::kBFloat16,
              "grouped_attention on CUDA takes float32, float16 or bfloat16, got ", q.scalar_type());
  TORCH_CHECK(q.size(1) / num_heads <= kGroupedAttentionMaxHeadDim,
              "grouped_attention on CUDA supports head_dim <= ", kGroupedAttentionMaxHeadDim, ", got ",
              q.size(1) / num_heads);
}

std::tuple<at::Tensor, at::Tensor> grouped_attention_cuda(const at::Tensor& q_in, const at::Tensor& k_in,
                                                          const at::Tensor& v_in, const at::Tensor& qi_in,
                                                          const at::Tensor& qo_in, const at::Tensor& ki_in,
                                                          const at::Tensor& ko_in, int64_t num_heads, double scale) {
  check_grouped_attention_args(q_in, k_in, v_in, qi_in, qo_in, ki_in, ko_in, num_heads);
  check_cuda_inputs(q_in, num_heads);
  const c10::cuda::CUDAGuard guard(q_in.device());
  const at::Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
  const at::Tensor qi = qi_in.contiguous(), qo = qo_in.contiguous(), ki = ki_in.contiguous(), ko = ko_in.contiguous();
  at::Tensor out = at::zeros_like(q);
  at::Tensor lse = at::full({q.size(0), num_heads}, -INFINITY, q.options().dtype(at::kFloat));
  const int64_t num_groups = qo.size(0) - 1;
  if (q.size(0) == 0 || q.size(1) == 0 || num_groups == 0) return {out, lse};
  dispatch_attention_type(q.scalar_type(), [&](auto tag) {
    using scalar_t = decltype(tag);
    using T = typename CudaType<scalar_t>::type;
    PF_CUDA_CHECK(launch_grouped_attention_forward<T>(
        reinterpret_cast<const T*>(q.data_ptr<scalar_t>()), reinterpret_cast<const T*>(k.data_ptr<scalar_t>()),
        reinterpret_cast<const T*>(v.data_ptr<scalar_t>()), qi.data_ptr<int64_t>(), qo.data_ptr<int64_t>(),
        ki.data_ptr<int64_t>(), ko.data_ptr<int64_t>(), num_groups, num_heads, q.size(1) / num_heads, scale,
        reinterpret_cast<T*>(out.data_ptr<scalar_t>()), lse.data_ptr<float>(), c10::cuda::getCurrentCUDAStream()));
  });
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> grouped_attention_backward_cuda(
    const at::Tensor& grad_out_in, const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
    const at::Tensor& out_in, const at::Tensor& lse_in, const at::Tensor& qi_in, const at::Tensor& qo_in,
    const at::Tensor& ki_in, const at::Tensor& ko_in, int64_t num_heads, double scale) {
  check_grouped_attention_args(q_in, k_in, v_in, qi_in, qo_in, ki_in, ko_in, num_heads);
  check_grouped_attention_backward_args(grad_out_in, q_in, out_in, lse_in, num_heads);
  check_cuda_inputs(q_in, num_heads);
  const c10::cuda::CUDAGuard guard(q_in.device());
  const at::Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
  const at::Tensor grad_out = grad_out_in.contiguous(), out = out_in.contiguous(), lse = lse_in.contiguous();
  const at::Tensor qi = qi_in.contiguous(), qo = qo_in.contiguous(), ki = ki_in.contiguous(), ko = ko_in.contiguous();
  at::Tensor grad_q = at::zeros_like(q);
  // dK and dV accumulate with atomicAdd in float32, cast to the input dtype at the end.
  at::Tensor grad_k = at::zeros(k.sizes(), k.options().dtype(at::kFloat));
  at::Tensor grad_v = at::zeros(v.sizes(), v.options().dtype(at::kFloat));
  const int64_t num_groups = qo.size(0) - 1;
  if (q.size(0) > 0 && q.size(1) > 0 && num_groups > 0) {
    at::Tensor delta = at::empty({q.size(0), num_heads}, q.options().dtype(at::kFloat));
    dispatch_attention_type(q.scalar_type(), [&](auto tag) {
      using scalar_t = decltype(tag);
      using T = typename CudaType<scalar_t>::type;
      PF_CUDA_CHECK(launch_grouped_attention_backward<T>(
          reinterpret_cast<const T*>(grad_out.data_ptr<scalar_t>()), reinterpret_cast<const T*>(q.data_ptr<scalar_t>()),
          reinterpret_cast<const T*>(k.data_ptr<scalar_t>()), reinterpret_cast<const T*>(v.data_ptr<scalar_t>()),
          reinterpret_cast<const T*>(out.data_ptr<scalar_t>()), lse.data_ptr<float>(), qi.data_ptr<int64_t>(),
          qo.data_ptr<int64_t>(), ki.data_ptr<int64_t>(), ko.data_ptr<int64_t>(), num_groups, q.size(0), num_heads,
          q.size(1) / num_heads, scale, delta.data_ptr<float>(), reinterpret_cast<T*>(grad_q.data_ptr<scalar_t>()),
          grad_k.data_ptr<float>(), grad_v.data_ptr<float>(), c10::cuda::getCurrentCUDAStream()));
    });
  }
  return {grad_q, grad_k.to(k.scalar_type()), grad_v.to(v.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(pointformer, CUDA, m) {
  m.impl("grouped_attention", &grouped_attention_cuda);
  m.impl("grouped_attention_backward", &grouped_attention_backward_cuda);
}

}  // namespace pointformer
