// CUDA grouped softmax attention. Every kernel runs one thread block per (group, head); a block
// owns a tile of rows (one thread per row: queries in the forward and dQ kernels, key slots in the
// dK/dV kernel), keeps that row's accumulator in registers, and streams the other side's rows of
// the group through shared memory in small tiles, loop after loop until the group is covered. So
// any group size works (36 to 1024 and beyond) with one simple launch, rows are read in place
// through the index lists (no (G, S, C) copies), and all math is in float.
// Scores use the shared online-softmax helpers of softmax_attention.h, like the CPU kernel.
//
// Backward: delta_i = dO_i . O_i per (row, head), then dQ (query-major, written directly: each
// query row belongs to one group) and dK/dV (key-major, accumulated with one atomicAdd per
// (slot, channel) into float buffers, because a key row may serve several groups or slots).
// Recomputing P in both kernels costs one more score pass but needs no reduction across threads.
//
// Awaiting a GPU run: correctness (tests/ops/attention run on cuda where present), the register
// and shared-memory footprint per bucket (<= ~42 KB static), and the speed against SDPA
// (tools/benchmark.py attention --device cuda).
#include "../common/cuda_helpers.cuh"
#include "grouped_attention_cuda.h"
#include "softmax_attention.h"

namespace pointformer {
namespace {

namespace sa = attention;

// acc_t is float for every instantiated T (float, half, bfloat16). Shared memory stays under the
// 48 KB static limit: at most 2 x 64 x 65 + 2 x 16 x 64 floats (dK/dV kernel, bucket 64).
template <typename acc_t>
struct Tiles {
  static constexpr int kRows = 64;    // rows a block owns = threads per block
  static constexpr int kStream = 16;  // rows streamed per shared-memory tile
};

// Copies head columns [col0, col0 + d) of rows[0 .. count) of x into tile (row stride `stride`,
// DB columns), as acc_t; entries beyond count rows or d columns are 0 (so dot products over DB
// columns are exact). All threads of the block take part.
template <typename T, typename acc_t, int DB>
__device__ __forceinline__ void load_rows(acc_t* tile, int stride, int tile_rows, int count, const T* x,
                                          const int64_t* rows, int64_t channels, int64_t col0, int d) {
  for (int e = threadIdx.x; e < tile_rows * DB; e += blockDim.x) {
    const int j = e / DB, c = e % DB;
    acc_t value = acc_t(0);
    if (j < count && c < d) value = to_acc(x[rows[j] * channels + col0 + c]);
    tile[j * stride + c] = value;
  }
}

// Copies index[start .. start + count) to shared memory (count <= blockDim.x).
__device__ __forceinline__ void load_index(int64_t* dst, const int64_t* index, int64_t start, int count) {
  if (static_cast<int>(threadIdx.x) < count) dst[threadIdx.x] = index[start + threadIdx.x];
}

template <typename acc_t, int DB>
__device__ __forceinline__ acc_t row_dot(const acc_t* a, const acc_t* b) {
  acc_t sum = acc_t(0);
#pragma unroll
  for (int c = 0; c < DB; ++c) sum += a[c] * b[c];
  return sum;
}

template <typename T, int DB>
__global__ void __launch_bounds__(Tiles<typename AccType<T>::type>::kRows)
    grouped_attention_forward_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                                     const int64_t* __restrict__ query_index, const int64_t* __restrict__ query_offsets,
                                     const int64_t* __restrict__ key_index, const int64_t* __restrict__ key_offsets,
                                     int64_t channels, int64_t num_heads, int d, typename AccType<T>::type scale,
                                     T* __restrict__ out, typename AccType<T>::type* __restrict__ lse) {
  using acc_t = typename AccType<T>::type;
  constexpr int R = Tiles<acc_t>::kRows, K = Tiles<acc_t>::kStream;
  __shared__ acc_t own_q[R][DB + 1];  // +1: each thread reads its own row without bank conflicts
  __shared__ acc_t tile_k[K][DB];     // every thread reads the same key: broadcast
  __shared__ acc_t tile_v[K][DB];
  __shared__ int64_t q_rows[R];
  __shared__ int64_t k_rows[K];
  const int64_t g = blockIdx.x, h = blockIdx.y, col0 = h * d;
  const int t = threadIdx.x;
  const int64_t q0 = query_offsets[g], q1 = query_offsets[g + 1];
  const int64_t k0 = key_offsets[g], k1 = key_offsets[g + 1];
  for (int64_t qt = q0; qt < q1; qt += R) {  // loop bounds are uniform over the block
    const int nq = static_cast<int>(q1 - qt < R ? q1 - qt : R);
    __syncthreads();  // the previous query tile is finished with q_rows
    load_index(q_rows, query_index, qt, nq);
    __syncthreads();
    load_rows<T, acc_t, DB>(&own_q[0][0], DB + 1, R, nq, q, q_rows, channels, col0, d);
    acc_t running_max = sa::negative_infinity<acc_t>(), running_sum = acc_t(0);
    acc_t o[DB];
#pragma unroll
    for (int c = 0; c < DB; ++c) o[c] = acc_t(0);
    for (int64_t kt = k0; kt < k1; kt += K) {
      const int nk = static_cast<int>(k1 - kt < K ? k1 - kt : K);
      __syncthreads();  // the previous key tile is consumed (and own_q is loaded)
      load_index(k_rows, key_index, kt, nk);
      __syncthreads();
      load_rows<T, acc_t, DB>(&tile_k[0][0], DB, K, nk, k, k_rows, channels, col0, d);
      load_rows<T, acc_t, DB>(&tile_v[0][0], DB, K, nk, v, k_rows, channels, col0, d);
      __syncthreads();
      if (t < nq) {
        acc_t s[K];
        acc_t tile_max = sa::negative_infinity<acc_t>();
#pragma unroll
        for (int j = 0; j < K; ++j) {
          s[j] = j < nk ? scale * row_dot<acc_t, DB>(own_q[t], tile_k[j]) : sa::negative_infinity<acc_t>();
          tile_max = s[j] > tile_max ? s[j] : tile_max;
        }
        const acc_t alpha = sa::online_softmax_rescale(running_max, running_sum, tile_max);
#pragma unroll
        for (int c = 0; c < DB; ++c) o[c] *= alpha;
#pragma unroll
        for (int j = 0; j < K; ++j) {
          if (j < nk) {
            const acc_t p = sa::softmax_weight(s[j], running_max);
            running_sum += p;
#pragma unroll
            for (int c = 0; c < DB; ++c) o[c] += p * tile_v[j][c];
          }
        }
      }
    }
    if (t < nq) {
      const int64_t row = q_rows[t];
      const acc_t norm = sa::softmax_normalizer(running_sum);
#pragma unroll
      for (int c = 0; c < DB; ++c)
        if (c < d) out[row * channels + col0 + c] = from_acc<T>(o[c] * norm);
      lse[row * num_heads + h] = sa::softmax_lse(running_max, running_sum);
    }
  }
}

// delta (Nq, H): dO_i . O_i per row and head.
template <typename T>
__global__ void grouped_attention_delta_kernel(const T* __restrict__ grad_out, const T* __restrict__ out,
                                               int64_t num_queries, int64_t num_heads, int64_t d,
                                               typename AccType<T>::type* __restrict__ delta) {
  using acc_t = typename AccType<T>::type;
  PF_GRID_STRIDE(idx, num_queries * num_heads) {
    const int64_t offset = (idx / num_heads) * num_heads * d + (idx % num_heads) * d;
    delta[idx] = sa::head_dot<acc_t>(grad_out + offset, out + offset, d);
  }
}

// dQ_i = scale * sum_j dS_ij k_j, one thread per query.
template <typename T, int DB>
__global__ void __launch_bounds__(Tiles<typename AccType<T>::type>::kRows)
    grouped_attention_dq_kernel(const T* __restrict__ grad_out, const T* __restrict__ q, const T* __restrict__ k,
                                const T* __restrict__ v, const typename AccType<T>::type* __restrict__ lse,
                                const typename AccType<T>::type* __restrict__ delta,
                                const int64_t* __restrict__ query_index, const int64_t* __restrict__ query_offsets,
                                const int64_t* __restrict__ key_index, const int64_t* __restrict__ key_offsets,
                                int64_t channels, int64_t num_heads, int d, typename AccType<T>::type scale,
                                T* __restrict__ grad_q) {
  using acc_t = typename AccType<T>::type;
  constexpr int R = Tiles<acc_t>::kRows, K = Tiles<acc_t>::kStream;
  __shared__ acc_t own_q[R][DB + 1];
  __shared__ acc_t own_do[R][DB + 1];
  __shared__ acc_t tile_k[K][DB];
  __shared__ acc_t tile_v[K][DB];
  __shared__ int64_t q_rows[R];
  __shared__ int64_t k_rows[K];
  const int64_t g = blockIdx.x, h = blockIdx.y, col0 = h * d;
  const int t = threadIdx.x;
  const int64_t q0 = query_offsets[g], q1 = query_offsets[g + 1];
  const int64_t k0 = key_offsets[g], k1 = key_offsets[g + 1];
  for (int64_t qt = q0; qt < q1; qt += R) {
    const int nq = static_cast<int>(q1 - qt < R ? q1 - qt : R);
    __syncthreads();
    load_index(q_rows, query_index, qt, nq);
    __syncthreads();
    load_rows<T, acc_t, DB>(&own_q[0][0], DB + 1, R, nq, q, q_rows, channels, col0, d);
    load_rows<T, acc_t, DB>(&own_do[0][0], DB + 1, R, nq, grad_out, q_rows, channels, col0, d);
    acc_t row_lse = acc_t(0), row_delta = acc_t(0);
    if (t < nq) {
      row_lse = lse[q_rows[t] * num_heads + h];
      row_delta = delta[q_rows[t] * num_heads + h];
    }
    acc_t dq[DB];
#pragma unroll
    for (int c = 0; c < DB; ++c) dq[c] = acc_t(0);
    for (int64_t kt = k0; kt < k1; kt += K) {
      const int nk = static_cast<int>(k1 - kt < K ? k1 - kt : K);
      __syncthreads();
      load_index(k_rows, key_index, kt, nk);
      __syncthreads();
      load_rows<T, acc_t, DB>(&tile_k[0][0], DB, K, nk, k, k_rows, channels, col0, d);
      load_rows<T, acc_t, DB>(&tile_v[0][0], DB, K, nk, v, k_rows, channels, col0, d);
      __syncthreads();
      if (t < nq) {
        // Not unrolled over keys (nothing is indexed by j in registers): keeps the code, and the
        // compile time of the 9 instantiations, small.
#pragma unroll 1
        for (int j = 0; j < nk; ++j) {
          {
            const acc_t p = sa::recomputed_probability(scale * row_dot<acc_t, DB>(own_q[t], tile_k[j]), row_lse);
            const acc_t ds = sa::score_gradient(p, row_dot<acc_t, DB>(own_do[t], tile_v[j]), row_delta);
#pragma unroll
            for (int c = 0; c < DB; ++c) dq[c] += ds * tile_k[j][c];
          }
        }
      }
    }
    if (t < nq) {
      const int64_t row = q_rows[t];
#pragma unroll
      for (int c = 0; c < DB; ++c)
        if (c < d) grad_q[row * channels + col0 + c] = from_acc<T>(scale * dq[c]);
    }
  }
}

// dK_j = scale * sum_i dS_ij q_i and dV_j = sum_i p_ij dO_i, one thread per key slot.
template <typename T, int DB>
__global__ void __launch_bounds__(Tiles<typename AccType<T>::type>::kRows)
    grouped_attention_dkv_kernel(const T* __restrict__ grad_out, const T* __restrict__ q, const T* __restrict__ k,
                                 const T* __restrict__ v, const typename AccType<T>::type* __restrict__ lse,
                                 const typename AccType<T>::type* __restrict__ delta,
                                 const int64_t* __restrict__ query_index, const int64_t* __restrict__ query_offsets,
                                 const int64_t* __restrict__ key_index, const int64_t* __restrict__ key_offsets,
                                 int64_t channels, int64_t num_heads, int d, typename AccType<T>::type scale,
                                 typename AccType<T>::type* __restrict__ grad_k,
                                 typename AccType<T>::type* __restrict__ grad_v) {
  using acc_t = typename AccType<T>::type;
  constexpr int R = Tiles<acc_t>::kRows, K = Tiles<acc_t>::kStream;
  __shared__ acc_t own_k[R][DB + 1];
  __shared__ acc_t own_v[R][DB + 1];
  __shared__ acc_t tile_q[K][DB];
  __shared__ acc_t tile_do[K][DB];
  __shared__ acc_t tile_lse[K];
  __shared__ acc_t tile_delta[K];
  __shared__ int64_t k_rows[R];
  __shared__ int64_t q_rows[K];
  const int64_t g = blockIdx.x, h = blockIdx.y, col0 = h * d;
  const int t = threadIdx.x;
  const int64_t q0 = query_offsets[g], q1 = query_offsets[g + 1];
  const int64_t k0 = key_offsets[g], k1 = key_offsets[g + 1];
  for (int64_t kt = k0; kt < k1; kt += R) {
    const int nk = static_cast<int>(k1 - kt < R ? k1 - kt : R);
    __syncthreads();
    load_index(k_rows, key_index, kt, nk);
    __syncthreads();
    load_rows<T, acc_t, DB>(&own_k[0][0], DB + 1, R, nk, k, k_rows, channels, col0, d);
    load_rows<T, acc_t, DB>(&own_v[0][0], DB + 1, R, nk, v, k_rows, channels, col0, d);
    acc_t dk[DB], dv[DB];
#pragma unroll
    for (int c = 0; c < DB; ++c) dk[c] = dv[c] = acc_t(0);
    for (int64_t qt = q0; qt < q1; qt += K) {
      const int nq = static_cast<int>(q1 - qt < K ? q1 - qt : K);
      __syncthreads();
      load_index(q_rows, query_index, qt, nq);
      __syncthreads();
      load_rows<T, acc_t, DB>(&tile_q[0][0], DB, K, nq, q, q_rows, channels, col0, d);
      load_rows<T, acc_t, DB>(&tile_do[0][0], DB, K, nq, grad_out, q_rows, channels, col0, d);
      if (t < nq) {
        tile_lse[t] = lse[q_rows[t] * num_heads + h];
        tile_delta[t] = delta[q_rows[t] * num_heads + h];
      }
      __syncthreads();
      if (t < nk) {
#pragma unroll 1
        for (int i = 0; i < nq; ++i) {
          {
            const acc_t p = sa::recomputed_probability(scale * row_dot<acc_t, DB>(tile_q[i], own_k[t]), tile_lse[i]);
            const acc_t ds = sa::score_gradient(p, row_dot<acc_t, DB>(tile_do[i], own_v[t]), tile_delta[i]);
#pragma unroll
            for (int c = 0; c < DB; ++c) {
              dk[c] += ds * tile_q[i][c];
              dv[c] += p * tile_do[i][c];
            }
          }
        }
      }
    }
    if (t < nk) {
      const int64_t row = k_rows[t];
#pragma unroll
      for (int c = 0; c < DB; ++c) {
        if (c < d) {
          atomicAdd(grad_k + row * channels + col0 + c, scale * dk[c]);
          atomicAdd(grad_v + row * channels + col0 + c, dv[c]);
        }
      }
    }
  }
}

// Calls f(std::integral_constant<int, DB>) for the bucket of head_dim; false when it is too big.
template <typename F>
bool with_head_bucket(int64_t head_dim, const F& f) {
  if (head_dim <= 16) {
    f(std::integral_constant<int, 16>());
  } else if (head_dim <= 32) {
    f(std::integral_constant<int, 32>());
  } else if (head_dim <= kGroupedAttentionMaxHeadDim) {
    f(std::integral_constant<int, 64>());
  } else {
    return false;
  }
  return true;
}

bool valid_grid(int64_t num_groups, int64_t num_heads, int64_t head_dim) {
  return num_groups <= 0x7fffffffLL && num_heads <= 65535 && head_dim >= 1;
}

}  // namespace

template <typename T>
cudaError_t launch_grouped_attention_forward(const T* q, const T* k, const T* v, const int64_t* query_index,
                                             const int64_t* query_offsets, const int64_t* key_index,
                                             const int64_t* key_offsets, int64_t num_groups, int64_t num_heads,
                                             int64_t head_dim, double scale, T* out, float* lse, cudaStream_t stream) {
  using acc_t = typename AccType<T>::type;
  if (num_groups == 0) return cudaSuccess;
  if (!valid_grid(num_groups, num_heads, head_dim)) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned int>(num_groups), static_cast<unsigned int>(num_heads));
  const int64_t channels = num_heads * head_dim;
  const bool ok = with_head_bucket(head_dim, [&](auto bucket) {
    constexpr int DB = decltype(bucket)::value;
    grouped_attention_forward_kernel<T, DB><<<grid, Tiles<acc_t>::kRows, 0, stream>>>(
        q, k, v, query_index, query_offsets, key_index, key_offsets, channels, num_heads, static_cast<int>(head_dim),
        static_cast<acc_t>(scale), out, lse);
  });
  return ok ? cudaGetLastError() : cudaErrorInvalidValue;
}

template <typename T>
cudaError_t launch_grouped_attention_backward(const T* grad_out, const T* q, const T* k, const T* v, const T* out,
                                              const float* lse, const int64_t* query_index,
                                              const int64_t* query_offsets, const int64_t* key_index,
                                              const int64_t* key_offsets, int64_t num_groups, int64_t num_queries,
                                              int64_t num_heads, int64_t head_dim, double scale, float* delta,
                                              T* grad_q, float* grad_k, float* grad_v, cudaStream_t stream) {
  using acc_t = typename AccType<T>::type;
  if (num_groups == 0 || num_queries == 0) return cudaSuccess;
  if (!valid_grid(num_groups, num_heads, head_dim)) return cudaErrorInvalidValue;
  grouped_attention_delta_kernel<T><<<grid_for(num_queries * num_heads), kThreads, 0, stream>>>(
      grad_out, out, num_queries, num_heads, head_dim, delta);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  const dim3 grid(static_cast<unsigned int>(num_groups), static_cast<unsigned int>(num_heads));
  const int64_t channels = num_heads * head_dim;
  const acc_t s = static_cast<acc_t>(scale);
  const int d = static_cast<int>(head_dim);
  const bool ok = with_head_bucket(head_dim, [&](auto bucket) {
    constexpr int DB = decltype(bucket)::value;
    grouped_attention_dq_kernel<T, DB>
        <<<grid, Tiles<acc_t>::kRows, 0, stream>>>(grad_out, q, k, v, lse, delta, query_index, query_offsets, key_index,
                                                   key_offsets, channels, num_heads, d, s, grad_q);
    grouped_attention_dkv_kernel<T, DB>
        <<<grid, Tiles<acc_t>::kRows, 0, stream>>>(grad_out, q, k, v, lse, delta, query_index, query_offsets, key_index,
                                                   key_offsets, channels, num_heads, d, s, grad_k, grad_v);
  });
  return ok ? cudaGetLastError() : cudaErrorInvalidValue;
}

#define PF_INSTANTIATE(T)                                                                                             \
  template cudaError_t launch_grouped_attention_forward<T>(const T*, const T*, const T*, const int64_t*,              \
                                                           const int64_t*, const int64_t*, const int64_t*, int64_t,   \
                                                           int64_t, int64_t, double, T*, float*, cudaStream_t);       \
  template cudaError_t launch_grouped_attention_backward<T>(                                                          \
      const T*, const T*, const T*, const T*, const T*, const float*, const int64_t*, const int64_t*, const int64_t*, \
      const int64_t*, int64_t, int64_t, int64_t, int64_t, double, float*, T*, float*, float*, cudaStream_t);
PF_INSTANTIATE(float)
PF_INSTANTIATE(__half)
PF_INSTANTIATE(__nv_bfloat16)
#undef PF_INSTANTIATE

}  // namespace pointformer
