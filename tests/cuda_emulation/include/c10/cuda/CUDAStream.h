// Emulation stand-in for c10's CUDA stream header: the torch-facing *_cuda.cpp wrappers take the
// current stream and pass it to the launchers. The emulation has one implicit stream (launches
// run to completion, in order), so every stream is the null stream.
#pragma once
#include <c10/core/Device.h>
#include <cuda_runtime_api.h>

namespace c10::cuda {

class CUDAStream {
 public:
  cudaStream_t stream() const { return nullptr; }
  operator cudaStream_t() const { return nullptr; }
};

inline CUDAStream getCurrentCUDAStream(c10::DeviceIndex = -1) { return CUDAStream(); }

}  // namespace c10::cuda
