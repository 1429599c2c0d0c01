// Launchers of the CUDA scattered linear attention (raw pointers, no torch types; see
// linear_attention_cuda.cu for the algorithm). q, k, v, out and the gradients are (N, C) row-major
// with C = heads * head_dim, rows in window order; offsets (windows + 1,) int64 device array,
// non-decreasing from 0 to N (not checked here). T is float, double, __half or __nv_bfloat16;
// accumulation is in float (double for double). head_dim must be in [1, 64] and heads <= 65535.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace pointformer {

struct SlaCudaProblem {
  const int64_t* offsets;  // device
  int64_t n, windows, heads, head_dim;
};

// Bytes of device workspace a launcher needs (chunk table, per-chunk partial states, per-window
// states): sla_max_chunks * heads * (D^2 + D) accumulators for the partials plus windows * heads *
// (D^2 + D) for the states (twice for the backward).
template <typename T>
size_t sla_workspace_bytes(int64_t n, int64_t windows, int64_t heads, int64_t head_dim, bool backward);

// out (N, C).
template <typename T>
cudaError_t launch_scattered_linear_attention(const T* q, const T* k, const T* v, const SlaCudaProblem& problem,
                                              double eps, T* out, void* workspace, cudaStream_t stream);

// grad_q, grad_k, grad_v (N, C) from grad_out (N, C); recomputes the windows' KV and s.
template <typename T>
cudaError_t launch_scattered_linear_attention_backward(const T* grad_out, const T* q, const T* k, const T* v,
                                                       const SlaCudaProblem& problem, double eps, T* grad_q, T* grad_k,
                                                       T* grad_v, void* workspace, cudaStream_t stream);

}  // namespace pointformer
