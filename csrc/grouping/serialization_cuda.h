// Launcher of the CUDA space-filling-curve codes: raw pointers, sizes and a stream, no torch
// types, so it can also back a TensorRT plugin.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "../common/space_filling_curves.h"

namespace pointformer {

// codes[i] = serialization_code(coords + 4 * i, depth, order) for n int32 (batch, z, y, x) rows.
cudaError_t launch_serialization_codes(const int32_t* coords, int64_t n, int depth, CurveOrder order, int64_t* codes,
                                       cudaStream_t stream);

}  // namespace pointformer
