// Launcher of the CUDA scattered_window_keys kernel: raw pointers, sizes and a stream, no torch
// types, so it can also back a TensorRT plugin.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "../common/scattered_keys.h"

namespace pointformer {

// keys[i] = scattered_window_key of voxel i; coords is (n, 4) int32 (batch, z, y, x), contiguous.
cudaError_t launch_scattered_window_keys(const int32_t* coords, int64_t n, ScatteredWindowSpec spec, int64_t* keys,
                                         cudaStream_t stream);

}  // namespace pointformer
