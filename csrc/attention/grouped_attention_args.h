// Argument checks shared by the CPU and CUDA grouped_attention wrappers.
#pragma once
#include <ATen/ATen.h>

#include "../common/checks.h"

namespace pointformer {

// The log-sum-exp (and the backward's delta) are kept in float32, or float64 for float64 inputs.
inline at::ScalarType attention_acc_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

inline void check_index_pair(const at::Tensor& index, const at::Tensor& offsets, const at::Tensor& like,
                             const char* index_name, const char* offsets_name) {
  TORCH_CHECK(index.dim() == 1 && index.scalar_type() == at::kLong, index_name, " must be an int64 tensor (L,), got ",
              index.scalar_type(), " ", index.sizes());
  TORCH_CHECK(offsets.dim() == 1 && offsets.scalar_type() == at::kLong && offsets.size(0) >= 1, offsets_name,
              " must be an int64 tensor (G + 1,), got ", offsets.scalar_type(), " ", offsets.sizes());
  TORCH_CHECK(index.device() == like.device() && offsets.device() == like.device(), index_name, " and ", offsets_name,
              " must be on q's device");
}

// Shapes, dtypes and devices (no data-dependent checks: those would synchronize a GPU).
inline void check_grouped_attention_args(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                         const at::Tensor& query_index, const at::Tensor& query_offsets,
                                         const at::Tensor& key_index, const at::Tensor& key_offsets,
                                         int64_t num_heads) {
  TORCH_CHECK(q.dim() == 2, "q must have shape (Nq, C), got ", q.sizes());
  PF_CHECK_FLOATING(q, "q");
  TORCH_CHECK(k.dim() == 2 && k.size(1) == q.size(1), "k must have shape (Nk, ", q.size(1), "), got ", k.sizes());
  TORCH_CHECK(v.sizes() == k.sizes(), "v must have k's shape ", k.sizes(), ", got ", v.sizes());
  TORCH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(),
              "q, k and v must share a dtype");
  TORCH_CHECK(k.device() == q.device() && v.device() == q.device(), "q, k and v must share a device");
  TORCH_CHECK(num_heads >= 1 && q.size(1) % num_heads == 0, "num_heads must divide C = ", q.size(1), ", got ",
              num_heads);
  check_index_pair(query_index, query_offsets, q, "query_index", "query_offsets");
  check_index_pair(key_index, key_offsets, q, "key_index", "key_offsets");
  TORCH_CHECK(query_offsets.size(0) == key_offsets.size(0),
              "query_offsets and key_offsets must both have G + 1 entries, got ", query_offsets.size(0), " and ",
              key_offsets.size(0));
}

inline void check_grouped_attention_backward_args(const at::Tensor& grad_out, const at::Tensor& q,
                                                  const at::Tensor& out, const at::Tensor& lse, int64_t num_heads) {
  TORCH_CHECK(grad_out.sizes() == q.sizes() && out.sizes() == q.sizes(), "grad_out and out must have q's shape ",
              q.sizes());
  TORCH_CHECK(grad_out.scalar_type() == q.scalar_type() && out.scalar_type() == q.scalar_type(),
              "grad_out and out must have q's dtype");
  TORCH_CHECK(lse.dim() == 2 && lse.size(0) == q.size(0) && lse.size(1) == num_heads, "lse must have shape (",
              q.size(0), ", ", num_heads, "), got ", lse.sizes());
  TORCH_CHECK(lse.scalar_type() == attention_acc_type(q.scalar_type()), "lse must be ",
              attention_acc_type(q.scalar_type()), ", got ", lse.scalar_type());
  TORCH_CHECK(grad_out.device() == q.device() && out.device() == q.device() && lse.device() == q.device(),
              "grad_out, out and lse must be on q's device");
}

}  // namespace pointformer
