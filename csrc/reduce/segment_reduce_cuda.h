// Launchers of the CUDA segment reductions (raw pointers, no torch types). Rows arrive grouped
// by segment in CSR form: rows[offsets[s] .. offsets[s + 1]) are segment s's rows, in input order.
// reduce: 0 sum, 1 mean, 2 max (the values of pointformer::Reduce).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace pointformer {

// out (S, C); arg (S, C) arg-max row (-1 for an empty segment), only written for max.
template <typename T>
cudaError_t launch_segment_reduce(const T* values, int64_t channels, const int64_t* rows, const int64_t* offsets,
                                  int64_t num_segments, int reduce, T* out, int64_t* arg, cudaStream_t stream);

// grad_in (N, C), zero-filled by the caller. sum/mean read segment (N,) and counts (S,); max
// reads arg (S, C).
template <typename T>
cudaError_t launch_segment_reduce_backward(const T* grad_out, int64_t channels, int64_t num_segments,
                                           const int64_t* segment, const int64_t* aux, int64_t num_values, int reduce,
                                           T* grad_in, cudaStream_t stream);

}  // namespace pointformer
