// Turns a launcher's cudaError_t into a torch error (torch-facing CUDA wrappers only).
#pragma once
#include <c10/util/Exception.h>
#include <cuda_runtime_api.h>

#define PF_CUDA_CHECK(expr)                                                                        \
  do {                                                                                             \
    const cudaError_t pf_err = (expr);                                                             \
    TORCH_CHECK(pf_err == cudaSuccess, "CUDA error in ", #expr, ": ", cudaGetErrorString(pf_err)); \
  } while (0)
