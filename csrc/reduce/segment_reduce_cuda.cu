// CUDA segment reductions over CSR-grouped rows. One thread per (segment, channel): neighbouring
// threads read neighbouring channels of the same row (coalesced), and the result is deterministic
// because each output is reduced by one thread in input row order.
#include "../common/cuda_helpers.cuh"
#include "segment_reduce_cuda.h"

namespace pointformer {
namespace {

template <typename T>
__global__ void segment_reduce_kernel(const T* values, int64_t channels, const int64_t* rows, const int64_t* offsets,
                                      int64_t num_segments, int reduce, T* out) {
  using acc_t = typename AccType<T>::type;
  PF_GRID_STRIDE(idx, num_segments * channels) {
    const int64_t s = idx / channels, c = idx % channels;
    const int64_t r0 = offsets[s], r1 = offsets[s + 1];
    if (reduce == 2) {
      if (r0 == r1) {
        out[idx] = from_acc<T>(acc_t(0));
        continue;
      }
      acc_t best = to_acc(values[rows[r0] * channels + c]);
      for (int64_t r = r0 + 1; r < r1; ++r) {
        const acc_t v = to_acc(values[rows[r] * channels + c]);
        best = v > best ? v : best;
      }
      out[idx] = from_acc<T>(best);
    } else {
      acc_t sum = acc_t(0);
      for (int64_t r = r0; r < r1; ++r) sum += to_acc(values[rows[r] * channels + c]);
      if (reduce == 1 && r1 > r0) sum /= acc_t(r1 - r0);
      out[idx] = from_acc<T>(sum);
    }
  }
}

template <typename T>
__global__ void segment_sum_mean_backward_kernel(const T* grad_out, int64_t channels, int64_t num_segments,
                                                 const int64_t* segment, const int64_t* counts, int64_t num_values,
                                                 bool mean, T* grad_in) {
  using acc_t = typename AccType<T>::type;
  PF_GRID_STRIDE(idx, num_values * channels) {
    const int64_t i = idx / channels, c = idx % channels;
    const int64_t s = segment[i];
    if (s < 0 || s >= num_segments) continue;
    acc_t g = to_acc(grad_out[s * channels + c]);
    if (mean) g /= acc_t(counts[s]);
    grad_in[idx] = from_acc<T>(g);
  }
}

// Rows of a segment are in input order in the CSR, so the first match is the first arg-max.
template <typename T>
__global__ void segment_max_backward_kernel(const T* grad_out, int64_t channels, int64_t num_segments,
                                            const int64_t* rows, const int64_t* offsets, const T* values, const T* out,
                                            T* grad_in) {
  PF_GRID_STRIDE(idx, num_segments * channels) {
    const int64_t s = idx / channels, c = idx % channels;
    const T best = out[idx];
    for (int64_t r = offsets[s]; r < offsets[s + 1]; ++r) {
      const int64_t row = rows[r];
      if (to_acc(values[row * channels + c]) == to_acc(best)) {
        grad_in[row * channels + c] = grad_out[idx];
        break;
      }
    }
  }
}

}  // namespace

template <typename T>
cudaError_t launch_segment_reduce(const T* values, int64_t channels, const int64_t* rows, const int64_t* offsets,
                                  int64_t num_segments, int reduce, T* out, cudaStream_t stream) {
  const int64_t total = num_segments * channels;
  if (total == 0) return cudaSuccess;
  segment_reduce_kernel<T>
      <<<grid_for(total), kThreads, 0, stream>>>(values, channels, rows, offsets, num_segments, reduce, out);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_segment_reduce_backward(const T* grad_out, int64_t channels, int64_t num_segments,
                                           const int64_t* segment, const int64_t* counts, int64_t num_values,
                                           int reduce, const int64_t* rows, const int64_t* offsets, const T* values,
                                           const T* out, T* grad_in, cudaStream_t stream) {
  if (reduce == 2) {
    const int64_t total = num_segments * channels;
    if (total == 0) return cudaSuccess;
    segment_max_backward_kernel<T><<<grid_for(total), kThreads, 0, stream>>>(grad_out, channels, num_segments, rows,
                                                                             offsets, values, out, grad_in);
  } else {
    const int64_t total = num_values * channels;
    if (total == 0) return cudaSuccess;
    segment_sum_mean_backward_kernel<T><<<grid_for(total), kThreads, 0, stream>>>(
        grad_out, channels, num_segments, segment, counts, num_values, reduce == 1, grad_in);
  }
  return cudaGetLastError();
}

#define PF_INSTANTIATE(T)                                                                                            \
  template cudaError_t launch_segment_reduce<T>(const T*, int64_t, const int64_t*, const int64_t*, int64_t, int, T*, \
                                                cudaStream_t);                                                       \
  template cudaError_t launch_segment_reduce_backward<T>(const T*, int64_t, int64_t, const int64_t*, const int64_t*, \
                                                         int64_t, int, const int64_t*, const int64_t*, const T*,     \
                                                         const T*, T*, cudaStream_t);
PF_INSTANTIATE(float)
PF_INSTANTIATE(double)
PF_INSTANTIATE(__half)
PF_INSTANTIATE(__nv_bfloat16)
#undef PF_INSTANTIATE

}  // namespace pointformer
