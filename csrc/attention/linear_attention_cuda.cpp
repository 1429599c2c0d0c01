// Torch-facing CUDA scattered linear attention: checks, workspace allocation, and the launchers of
// linear_attention_cuda.cu. The values of offsets are not read here (that would synchronize);
// the Python wrapper validates them.
#include "linear_attention_cuda.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../common/cuda_check.h"
#include "../common/cuda_types.h"
#include "linear_attention_args.h"

namespace pointformer {
namespace {

SlaCudaProblem problem_of(const at::Tensor& q, const at::Tensor& offsets, int64_t num_heads, int64_t head_dim) {
  TORCH_CHECK(q.is_cuda(), "q must be a CUDA tensor");
  TORCH_CHECK(head_dim <= 64, "the CUDA scattered_linear_attention supports head dims up to 64, got ", head_dim);
  TORCH_CHECK(num_heads <= 65535, "the CUDA scattered_linear_attention supports up to 65535 heads, got ", num_heads);
  return SlaCudaProblem{offsets.data_ptr<int64_t>(), q.size(0), offsets.size(0) - 1, num_heads, head_dim};
}

at::Tensor scattered_linear_attention_cuda(const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
                                           const at::Tensor& offsets_in, int64_t num_heads, double eps) {
  const int64_t d = check_linear_attention_args(q_in, k_in, v_in, offsets_in, num_heads, eps);
  const c10::cuda::CUDAGuard guard(q_in.device());
  const at::Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
  const at::Tensor offsets = offsets_in.contiguous();
  const SlaCudaProblem p = problem_of(q, offsets, num_heads, d);
  at::Tensor out = at::empty_like(q);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "scattered_linear_attention_cuda", [&] {
    using T = typename CudaType<scalar_t>::type;
    const size_t bytes = sla_workspace_bytes<T>(p.n, p.windows, p.heads, p.head_dim, false);
    at::Tensor workspace = at::empty({static_cast<int64_t>(bytes)}, q.options().dtype(at::kByte));
    PF_CUDA_CHECK(launch_scattered_linear_attention<T>(cuda_ptr<scalar_t>(q), cuda_ptr<scalar_t>(k),
                                                       cuda_ptr<scalar_t>(v), p, eps, cuda_mut_ptr<scalar_t>(out),
                                                       workspace.data_ptr(), c10::cuda::getCurrentCUDAStream()));
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> scattered_linear_attention_backward_cuda(
    const at::Tensor& grad_out_in, const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
    const at::Tensor& offsets_in, int64_t num_heads, double eps) {
  const int64_t d = check_linear_attention_args(q_in, k_in, v_in, offsets_in, num_heads, eps);
  TORCH_CHECK(grad_out_in.sizes() == q_in.sizes() && grad_out_in.scalar_type() == q_in.scalar_type() &&
                  grad_out_in.device() == q_in.device(),
              "grad_out must match q's shape, dtype and device");
  const c10::cuda::CUDAGuard guard(q_in.device());
  const at::Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
  const at::Tensor dy = grad_out_in.contiguous(), offsets = offsets_in.contiguous();
  const SlaCudaProblem p = problem_of(q, offsets, num_heads, d);
  at::Tensor dq = at::empty_like(q), dk = at::empty_like(q), dv = at::empty_like(q);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, q.scalar_type(), "scattered_linear_attention_bwd_cuda", [&] {
        using T = typename CudaType<scalar_t>::type;
        const size_t bytes = sla_workspace_bytes<T>(p.n, p.windows, p.heads, p.head_dim, true);
        at::Tensor workspace = at::empty({static_cast<int64_t>(bytes)}, q.options().dtype(at::kByte));
        PF_CUDA_CHECK(launch_scattered_linear_attention_backward<T>(
            cuda_ptr<scalar_t>(dy), cuda_ptr<scalar_t>(q), cuda_ptr<scalar_t>(k), cuda_ptr<scalar_t>(v), p, eps,
            cuda_mut_ptr<scalar_t>(dq), cuda_mut_ptr<scalar_t>(dk), cuda_mut_ptr<scalar_t>(dv), workspace.data_ptr(),
            c10::cuda::getCurrentCUDAStream()));
      });
  return {dq, dk, dv};
}

}  // namespace

TORCH_LIBRARY_IMPL(pointformer, CUDA, m) {
  m.impl("scattered_linear_attention", &scattered_linear_attention_cuda);
  m.impl("scattered_linear_attention_backward", &scattered_linear_attention_backward_cuda);
}

}  // namespace pointformer
