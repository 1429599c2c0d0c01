// CUDA space-filling-curve codes; the math is csrc/common/space_filling_curves.h, as on the CPU.
#include "../common/cuda_helpers.cuh"
#include "serialization_cuda.h"

namespace pointformer {
namespace {

__global__ void serialization_codes_kernel(const int32_t* coords, int64_t n, int depth, CurveOrder order,
                                           int64_t* codes) {
  PF_GRID_STRIDE(i, n) { codes[i] = serialization_code(coords + 4 * i, depth, order); }
}

}  // namespace

cudaError_t launch_serialization_codes(const int32_t* coords, int64_t n, int depth, CurveOrder order, int64_t* codes,
                                       cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  serialization_codes_kernel<<<grid_for(n), kThreads, 0, stream>>>(coords, n, depth, order, codes);
  return cudaGetLastError();
}

}  // namespace pointformer
