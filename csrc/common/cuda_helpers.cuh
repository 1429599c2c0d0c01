// Small helpers for .cu files: launch geometry and accumulation types. No torch headers.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace pointformer {

constexpr int kThreads = 256;

inline unsigned int grid_for(int64_t n, int threads = kThreads) {
  // Grid-stride loops cover the rest; cap keeps the grid inside limits for huge n.
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned int>(blocks < 1 ? 1 : (blocks > 65535 * 16 ? 65535 * 16 : blocks));
}

#define PF_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(blockDim.x) * gridDim.x)

// Reductions accumulate half and bfloat16 in float, like ATen's opmath types.
template <typename T>
struct AccType {
  using type = T;
};
template <>
struct AccType<__half> {
  using type = float;
};
template <>
struct AccType<__nv_bfloat16> {
  using type = float;
};

template <typename T>
__device__ __forceinline__ typename AccType<T>::type to_acc(T v) {
  return static_cast<typename AccType<T>::type>(v);
}
template <typename T>
__device__ __forceinline__ T from_acc(typename AccType<T>::type v) {
  return static_cast<T>(v);
}

}  // namespace pointformer
