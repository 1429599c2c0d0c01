// CUDA scattered_window_keys kernel; the key math is csrc/common/scattered_keys.h, as on the CPU.
#include "../common/cuda_helpers.cuh"
#include "scattered_cuda.h"

namespace pointformer {
namespace {

__global__ void scattered_window_keys_kernel(const int32_t* coords, int64_t n, ScatteredWindowSpec spec,
                                             int64_t* keys) {
  PF_GRID_STRIDE(i, n) {
    const int32_t* v = coords + 4 * i;
    keys[i] = scattered_window_key(v[0], v[1], v[2], v[3], spec);
  }
}

}  // namespace

cudaError_t launch_scattered_window_keys(const int32_t* coords, int64_t n, ScatteredWindowSpec spec, int64_t* keys,
                                         cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  scattered_window_keys_kernel<<<grid_for(n), kThreads, 0, stream>>>(coords, n, spec, keys);
  return cudaGetLastError();
}

}  // namespace pointformer
