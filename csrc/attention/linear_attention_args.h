// Argument checks shared by the CPU and CUDA scattered_linear_attention wrappers. The Python
// wrapper raises ValueErrors first; these guard direct torch.ops calls. Values of offsets are checked
// here on the CPU only (reading them on CUDA would synchronize), the Python wrapper checks them there.
#pragma once
#include <ATen/ATen.h>

#include "../common/checks.h"

namespace pointformer {

inline int64_t check_linear_attention_args(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                           const at::Tensor& offsets, int64_t num_heads, double eps) {
  TORCH_CHECK(q.dim() == 2, "q must have shape (N, C), got ", q.sizes());
  PF_CHECK_FLOATING(q, "q");
  TORCH_CHECK(k.sizes() == q.sizes() && v.sizes() == q.sizes(), "k and v must have q's shape ", q.sizes(), ", got ",
              k.sizes(), " and ", v.sizes());
  TORCH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(),
              "q, k and v must have one dtype");
  TORCH_CHECK(k.device() == q.device() && v.device() == q.device() && offsets.device() == q.device(),
              "q, k, v and offsets must be on one device");
  TORCH_CHECK(offsets.dim() == 1 && offsets.size(0) >= 1, "offsets must have shape (W + 1,), got ", offsets.sizes());
  TORCH_CHECK(offsets.scalar_type() == at::kLong, "offsets must be int64, got ", offsets.scalar_type());
  TORCH_CHECK(num_heads >= 1 && q.size(1) % num_heads == 0, "num_heads (", num_heads, ") must divide C = ", q.size(1));
  TORCH_CHECK(eps > 0, "eps must be > 0, got ", eps);
  return q.size(1) / num_heads;
}

// offsets[0] == 0, offsets[W] == n, non-decreasing (CPU tensors only).
inline void check_offsets_values_cpu(const at::Tensor& offsets, int64_t n) {
  const int64_t* o = offsets.data_ptr<int64_t>();
  const int64_t windows = offsets.size(0) - 1;
  TORCH_CHECK(o[0] == 0 && o[windows] == n, "offsets must start at 0 and end at N = ", n, ", got ", o[0], " and ",
              o[windows]);
  for (int64_t w = 0; w < windows; ++w) TORCH_CHECK(o[w] <= o[w + 1], "offsets must be non-decreasing at ", w);
}

}  // namespace pointformer
