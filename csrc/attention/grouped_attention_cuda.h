// Launchers of the CUDA grouped softmax attention (raw pointers, no torch types). q (Nq, C), k and
// v (Nk, C) with C = num_heads * head_dim, row-major; group g's queries are rows
// query_index[query_offsets[g] .. query_offsets[g + 1]) of q, its keys and values rows
// key_index[key_offsets[g] .. key_offsets[g + 1]) of k and v (see csrc/registration.cpp).
// T is float, __half or __nv_bfloat16; all math and lse, delta, grad_k, grad_v are float.
// Indices must be in range and offsets non-decreasing: the launchers do not check them.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace pointformer {

// The kernels keep a head in registers in buckets of 16, 32 and 64 channels.
constexpr int64_t kGroupedAttentionMaxHeadDim = 64;

// out (Nq, C) and lse (Nq, num_heads) must be pre-filled by the caller with 0 and -inf: only rows
// that are queries of some group are written.
template <typename T>
cudaError_t launch_grouped_attention_forward(const T* q, const T* k, const T* v, const int64_t* query_index,
                                             const int64_t* query_offsets, const int64_t* key_index,
                                             const int64_t* key_offsets, int64_t num_groups, int64_t num_heads,
                                             int64_t head_dim, double scale, T* out, float* lse, cudaStream_t stream);

// delta (Nq, num_heads) is a workspace; grad_q (Nq, C) must be zero-filled (only query rows are
// written); grad_k and grad_v (Nk, C) are zero-filled accumulation buffers (atomicAdd).
template <typename T>
cudaError_t launch_grouped_attention_backward(const T* grad_out, const T* q, const T* k, const T* v, const T* out,
                                              const float* lse, const int64_t* query_index,
                                              const int64_t* query_offsets, const int64_t* key_index,
                                              const int64_t* key_offsets, int64_t num_groups, int64_t num_queries,
                                              int64_t num_heads, int64_t head_dim, double scale, float* delta,
                                              T* grad_q, float* grad_k, float* grad_v, cudaStream_t stream);

}  // namespace pointformer
