// Launchers of the CUDA segment reductions (raw pointers, no torch types). Rows arrive grouped
// by segment in CSR form: rows[offsets[s] .. offsets[s + 1]) are segment s's rows, in input order.
// reduce: 0 sum, 1 mean, 2 max (the values of pointformer::Reduce).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace pointformer {

// out (S, C): the reduction of each segment's rows; empty segments give 0.
template <typename T>
cudaError_t launch_segment_reduce(const T* values, int64_t channels, const int64_t* rows, const int64_t* offsets,
                                  int64_t num_segments, int reduce, T* out, cudaStream_t stream);

// grad_in (N, C), zero-filled by the caller. Sum and mean: every row of segment s gets
// grad_out[s] (divided by counts[s] for mean). Max (rows/offsets in CSR form, values and out from
// the forward): the first row of each segment equal to out[s, c] gets grad_out[s, c].
template <typename T>
cudaError_t launch_segment_reduce_backward(const T* grad_out, int64_t channels, int64_t num_segments,
                                           const int64_t* segment, const int64_t* counts, int64_t num_values,
                                           int reduce, const int64_t* rows, const int64_t* offsets, const T* values,
                                           const T* out, T* grad_in, cudaStream_t stream);

}  // namespace pointformer
