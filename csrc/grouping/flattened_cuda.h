// Launcher of the CUDA flattened_window_keys kernel: raw pointers, sizes and a stream, no torch
// types, so it can also back a TensorRT plugin.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "../common/flattened_keys.h"

namespace pointformer {

// keys[i] = flattened_window_key of voxel i; coords is (n, 4) int32 (batch, z, y, x), contiguous.
cudaError_t launch_flattened_window_keys(const int32_t* coords, int64_t n, FlatWindowSpec spec, int64_t* keys,
                                         cudaStream_t stream);

}  // namespace pointformer
