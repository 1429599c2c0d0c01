// CUDA scattered linear attention (ScatterFormer's SLA), chunk-wise, with long windows split
// across thread blocks and a deterministic two-pass reduction instead of atomics.
//
// Chunks: window w is cut into ceil(len_w / R) chunks of R rows (R = sla_chunk_rows(D): 64, or 32
// for D > 32). A chunk table (chunk_offsets (W + 1): first chunk of each window, an exclusive scan;
// chunk_window: window of each chunk) is built on the device from offsets, so the host never reads
// them; grids are sized by the host-side bound sla_max_chunks and surplus blocks exit at once.
//
// Forward (grid: chunks x heads, 256 threads, tiles in shared memory with rows padded to DB + 1
// accumulators against bank conflicts):
//   1. state_partial: each (chunk, head) block writes its chunk's partial KV = phi(k)^T v and
//      s = sum phi(k) (D^2 + D accumulators) to its own slot;
//   2. reduce: one block per (window, head) sums its chunks' partials in chunk order (fixed order:
//      bitwise-deterministic, unlike atomics) into the window state;
//   3. output: each (chunk, head) block loads its window's KV and s and writes
//      y = phi(q) KV / (phi(q) . s + eps) for its rows; the normalizer is fused in.
// Backward: steps 1-2 again (KV and s are recomputed, not saved: see linear_attention_cpu.cpp),
// then query: per (chunk, head) block, dq and the chunk's partial dKV = sum phi(q) (x) dnum and
// ds = sum dden phi(q); reduce; key: per (chunk, head) block, dk and dv from dKV and ds.
//
// Templated on the element type (float, double, __half, __nv_bfloat16; accumulation in float,
// double for double) and on the head-dim bucket DB (16, 32, 64; runtime D <= DB, the padding
// columns are zero). Awaiting a GPU run: correctness (tests/ops/attention run on CUDA where a GPU
// is present), and tuning: the thread mapping of the D x D products (no tensor cores yet),
// R per bucket, and the partial buffer (max_chunks * H * (D^2 + D) floats, ~53 MB at 100k voxels,
// D = 32, H = 4), which a version writing single-chunk windows straight to their state could shrink.
#include "../common/cuda_helpers.cuh"
#include "linear_attention.h"
#include "linear_attention_cuda.h"

namespace pointformer {
namespace {

constexpr int kSlaThreads = 256;
constexpr int kScanThreads = 1024;
constexpr size_t kDefaultSmem = 48 * 1024;

inline size_t align_up(size_t bytes) { return (bytes + 255) / 256 * 256; }

// Byte offsets of the workspace's parts.
struct SlaLayout {
  int64_t rows, max_chunks, state_size;
  size_t chunk_offsets, chunk_window, partial, state, grad_state, bytes;
};

template <typename acc_t>
SlaLayout sla_layout(int64_t n, int64_t windows, int64_t heads, int64_t head_dim, bool backward) {
  SlaLayout l{};
  l.rows = sla_chunk_rows(head_dim);
  l.max_chunks = sla_max_chunks(n, windows, l.rows);
  l.state_size = sla_state_size(head_dim);
  size_t at = 0;
  l.chunk_offsets = at;
  at += align_up(sizeof(int64_t) * (windows + 1));
  l.chunk_window = at;
  at += align_up(sizeof(int64_t) * l.max_chunks);
  l.partial = at;
  at += align_up(sizeof(acc_t) * l.max_chunks * heads * l.state_size);
  l.state = at;
  at += align_up(sizeof(acc_t) * windows * heads * l.state_size);
  l.grad_state = at;
  if (backward) at += align_up(sizeof(acc_t) * windows * heads * l.state_size);
  l.bytes = at;
  return l;
}

// --- chunk table ----------------------------------------------------------------------------------

// chunk_offsets[w] = sum_{w' < w} ceil(len_w' / rows), w in [0, windows]. One block: each thread
// scans a contiguous range of windows, thread 0 scans the per-thread sums.
__global__ void __launch_bounds__(kScanThreads)
    sla_chunk_offsets_kernel(const int64_t* offsets, int64_t windows, int64_t rows, int64_t* chunk_offsets) {
  __shared__ int64_t sums[kScanThreads];
  const int64_t per = (windows + kScanThreads - 1) / kScanThreads;
  const int64_t w0 = min(windows, int64_t(threadIdx.x) * per), w1 = min(windows, w0 + per);
  int64_t sum = 0;
  for (int64_t w = w0; w < w1; ++w) sum += sla_num_chunks(offsets[w + 1] - offsets[w], rows);
  sums[threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    int64_t run = 0;
    for (int t = 0; t < kScanThreads; ++t) {
      const int64_t s = sums[t];
      sums[t] = run;
      run += s;
    }
    chunk_offsets[0] = 0;
  }
  __syncthreads();
  int64_t run = sums[threadIdx.x];
  for (int64_t w = w0; w < w1; ++w) {
    run += sla_num_chunks(offsets[w + 1] - offsets[w], rows);
    chunk_offsets[w + 1] = run;
  }
}

__global__ void sla_chunk_window_kernel(const int64_t* chunk_offsets, int64_t windows, int64_t* chunk_window) {
  PF_GRID_STRIDE(w, windows) {
    for (int64_t c = chunk_offsets[w]; c < chunk_offsets[w + 1]; ++c) chunk_window[c] = w;
  }
}

struct ChunkTable {
  const int64_t* offsets;        // (W + 1,) rows
  const int64_t* chunk_offsets;  // (W + 1,) chunks
  const int64_t* chunk_window;   // (chunks,)
  int64_t windows, heads, channels, head_dim, state_size;
};

// Rows [row0, row0 + rows) and window of this block's chunk; rows == 0 for a surplus block (the
// grid is sized by an upper bound). Every thread computes the same, so the exit is block-uniform.
struct Chunk {
  int64_t window, row0;
  int rows;
};

template <int R>
__device__ __forceinline__ Chunk locate_chunk(const ChunkTable& t, int64_t chunk) {
  Chunk c{0, 0, 0};
  if (chunk >= t.chunk_offsets[t.windows]) return c;
  c.window = t.chunk_window[chunk];
  c.row0 = t.offsets[c.window] + (chunk - t.chunk_offsets[c.window]) * R;
  const int64_t left = t.offsets[c.window + 1] - c.row0;
  c.rows = static_cast<int>(left < R ? left : R);
  return c;
}

// --- shared-memory tiles ---------------------------------------------------------------------------

// tile[r][a] (row stride DB + 1) = x[row0 + r, col + a] (phi of it when kPhi); zero past the chunk's
// rows and past the head dim.
template <typename T, typename acc_t, int DB, int R, bool kPhi>
__device__ __forceinline__ void load_tile(acc_t* tile, const T* x, const Chunk& c, int64_t channels, int64_t col,
                                          int d) {
  for (int idx = threadIdx.x; idx < R * DB; idx += blockDim.x) {
    const int r = idx / DB, a = idx % DB;
    acc_t value = acc_t(0);
    if (r < c.rows && a < d) {
      value = to_acc(x[(c.row0 + r) * channels + col + a]);
      if (kPhi) value = sla_phi(value);
    }
    tile[r * (DB + 1) + a] = value;
  }
}

// m[a][j] (row stride DB + 1) and s[a] from a (D^2 + D) state, zero-padded to DB.
template <typename acc_t, int DB>
__device__ __forceinline__ void load_state(acc_t* m, acc_t* s, const acc_t* state, int d) {
  for (int idx = threadIdx.x; idx < DB * DB; idx += blockDim.x) {
    const int a = idx / DB, j = idx % DB;
    m[a * (DB + 1) + j] = a < d && j < d ? state[a * d + j] : acc_t(0);
  }
  for (int a = threadIdx.x; a < DB; a += blockDim.x) s[a] = a < d ? state[d * d + a] : acc_t(0);
}

// out[a * d + j] = sum_r x[r][a] y[r][j], out[d * d + a] = sum_r weight[r] x[r][a] (weight 1 when
// null): a chunk's partial state. Zero rows past the chunk add nothing.
template <typename acc_t, int DB, int R>
__device__ __forceinline__ void store_outer_partial(acc_t* out, const acc_t* x, const acc_t* y, const acc_t* weight,
                                                    int d) {
  for (int idx = threadIdx.x; idx < d * d; idx += blockDim.x) {
    const int a = idx / d, j = idx % d;
    acc_t sum = acc_t(0);
#pragma unroll 8
    for (int r = 0; r < R; ++r) sum += x[r * (DB + 1) + a] * y[r * (DB + 1) + j];
    out[idx] = sum;
  }
  for (int a = threadIdx.x; a < d; a += blockDim.x) {
    acc_t sum = acc_t(0);
    for (int r = 0; r < R; ++r) sum += (weight ? weight[r] : acc_t(1)) * x[r * (DB + 1) + a];
    out[d * d + a] = sum;
  }
}

template <typename acc_t>
__device__ __forceinline__ acc_t* shared_buffer() {
  extern __shared__ __align__(16) unsigned char sla_smem[];
  return reinterpret_cast<acc_t*>(sla_smem);
}

// --- kernels ---------------------------------------------------------------------------------------------

// Partial (KV, s) of each (chunk, head): blockIdx.x chunk, blockIdx.y head.
template <typename T, int DB, int R>
__global__ void __launch_bounds__(kSlaThreads)
    sla_state_partial_kernel(const T* k, const T* v, ChunkTable t, typename AccType<T>::type* partial) {
  using acc_t = typename AccType<T>::type;
  const Chunk c = locate_chunk<R>(t, blockIdx.x);
  if (c.rows == 0) return;
  const int d = static_cast<int>(t.head_dim);
  const int64_t h = blockIdx.y, col = h * d;
  acc_t* phi_k = shared_buffer<acc_t>();
  acc_t* vt = phi_k + R * (DB + 1);
  load_tile<T, acc_t, DB, R, true>(phi_k, k, c, t.channels, col, d);
  load_tile<T, acc_t, DB, R, false>(vt, v, c, t.channels, col, d);
  __syncthreads();
  store_outer_partial<acc_t, DB, R>(partial + (int64_t(blockIdx.x) * t.heads + h) * t.state_size, phi_k, vt, nullptr,
                                    d);
}

// state[w, h] = sum of the partials of window w's chunks, in chunk order.
template <typename acc_t>
__global__ void sla_reduce_kernel(const acc_t* partial, const int64_t* chunk_offsets, int64_t windows, int64_t heads,
                                  int64_t state_size, acc_t* state) {
  for (int64_t wh = blockIdx.x; wh < windows * heads; wh += gridDim.x) {
    const int64_t w = wh / heads, h = wh % heads;
    const int64_t c0 = chunk_offsets[w], c1 = chunk_offsets[w + 1];
    for (int64_t e = threadIdx.x; e < state_size; e += blockDim.x) {
      acc_t sum = acc_t(0);
      for (int64_t c = c0; c < c1; ++c) sum += partial[(c * heads + h) * state_size + e];
      state[wh * state_size + e] = sum;
    }
  }
}

// y for the rows of each (chunk, head).
template <typename T, int DB, int R>
__global__ void __launch_bounds__(kSlaThreads) sla_output_kernel(const T* q, const typename AccType<T>::type* state,
                                                                 ChunkTable t, typename AccType<T>::type eps, T* out) {
  using acc_t = typename AccType<T>::type;
  const Chunk c = locate_chunk<R>(t, blockIdx.x);
  if (c.rows == 0) return;
  const int d = static_cast<int>(t.head_dim);
  const int64_t h = blockIdx.y, col = h * d;
  acc_t* phi_q = shared_buffer<acc_t>();
  acc_t* kv = phi_q + R * (DB + 1);
  acc_t* s = kv + DB * (DB + 1);
  acc_t* den = s + DB;
  load_tile<T, acc_t, DB, R, true>(phi_q, q, c, t.channels, col, d);
  load_state<acc_t, DB>(kv, s, state + (c.window * t.heads + h) * t.state_size, d);
  __syncthreads();
  for (int r = threadIdx.x; r < R; r += blockDim.x) {
    acc_t dot = acc_t(0);
    for (int a = 0; a < DB; ++a) dot += phi_q[r * (DB + 1) + a] * s[a];
    den[r] = sla_denominator(dot, eps);
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < c.rows * DB; idx += blockDim.x) {
    const int r = idx / DB, j = idx % DB;
    if (j >= d) continue;
    acc_t num = acc_t(0);
#pragma unroll 8
    for (int a = 0; a < DB; ++a) num += phi_q[r * (DB + 1) + a] * kv[a * (DB + 1) + j];
    out[(c.row0 + r) * t.channels + col + j] = from_acc<T>(num / den[r]);
  }
}

// Backward, query side: dq of each (chunk, head)'s rows and the chunk's partial (dKV, ds).
template <typename T, int DB, int R>
__global__ void __launch_bounds__(kSlaThreads)
    sla_backward_query_kernel(const T* grad_out, const T* q, const typename AccType<T>::type* state, ChunkTable t,
                              typename AccType<T>::type eps, T* grad_q, typename AccType<T>::type* partial) {
  using acc_t = typename AccType<T>::type;
  const Chunk c = locate_chunk<R>(t, blockIdx.x);
  if (c.rows == 0) return;
  const int d = static_cast<int>(t.head_dim);
  const int64_t h = blockIdx.y, col = h * d;
  acc_t* phi_q = shared_buffer<acc_t>();
  acc_t* g = phi_q + R * (DB + 1);  // dy, then dnum = dy / den
  acc_t* y = g + R * (DB + 1);
  acc_t* kv = y + R * (DB + 1);
  acc_t* s = kv + DB * (DB + 1);
  acc_t* den = s + DB;
  acc_t* dden = den + R;
  load_tile<T, acc_t, DB, R, true>(phi_q, q, c, t.channels, col, d);
  load_tile<T, acc_t, DB, R, false>(g, grad_out, c, t.channels, col, d);
  load_state<acc_t, DB>(kv, s, state + (c.window * t.heads + h) * t.state_size, d);
  __syncthreads();
  for (int r = threadIdx.x; r < R; r += blockDim.x) {
    acc_t dot = acc_t(0);
    for (int a = 0; a < DB; ++a) dot += phi_q[r * (DB + 1) + a] * s[a];
    den[r] = sla_denominator(dot, eps);
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < R * DB; idx += blockDim.x) {
    const int r = idx / DB, j = idx % DB;
    acc_t num = acc_t(0);
#pragma unroll 8
    for (int a = 0; a < DB; ++a) num += phi_q[r * (DB + 1) + a] * kv[a * (DB + 1) + j];
    y[r * (DB + 1) + j] = num / den[r];
  }
  __syncthreads();
  for (int r = threadIdx.x; r < R; r += blockDim.x) {
    acc_t dot = acc_t(0);
    for (int j = 0; j < DB; ++j) dot += g[r * (DB + 1) + j] * y[r * (DB + 1) + j];
    dden[r] = sla_grad_denominator(dot, den[r]);
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < R * DB; idx += blockDim.x) {
    const int r = idx / DB, j = idx % DB;
    g[r * (DB + 1) + j] /= den[r];
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < c.rows * DB; idx += blockDim.x) {
    const int r = idx / DB, a = idx % DB;
    if (a >= d) continue;
    acc_t sum = dden[r] * s[a];
#pragma unroll 8
    for (int j = 0; j < DB; ++j) sum += kv[a * (DB + 1) + j] * g[r * (DB + 1) + j];
    grad_q[(c.row0 + r) * t.channels + col + a] = from_acc<T>(sla_phi_grad(phi_q[r * (DB + 1) + a], sum));
  }
  // Rows past the chunk have phi_q = 0, so they add nothing to the partial.
  store_outer_partial<acc_t, DB, R>(partial + (int64_t(blockIdx.x) * t.heads + h) * t.state_size, phi_q, g, dden, d);
}

// Backward, key side: dk and dv of each (chunk, head)'s rows from its window's (dKV, ds).
template <typename T, int DB, int R>
__global__ void __launch_bounds__(kSlaThreads)
    sla_backward_key_kernel(const T* k, const T* v, const typename AccType<T>::type* grad_state, ChunkTable t,
                            T* grad_k, T* grad_v) {
  using acc_t = typename AccType<T>::type;
  const Chunk c = locate_chunk<R>(t, blockIdx.x);
  if (c.rows == 0) return;
  const int d = static_cast<int>(t.head_dim);
  const int64_t h = blockIdx.y, col = h * d;
  acc_t* phi_k = shared_buffer<acc_t>();
  acc_t* vt = phi_k + R * (DB + 1);
  acc_t* dkv = vt + R * (DB + 1);
  acc_t* ds = dkv + DB * (DB + 1);
  load_tile<T, acc_t, DB, R, true>(phi_k, k, c, t.channels, col, d);
  load_tile<T, acc_t, DB, R, false>(vt, v, c, t.channels, col, d);
  load_state<acc_t, DB>(dkv, ds, grad_state + (c.window * t.heads + h) * t.state_size, d);
  __syncthreads();
  for (int idx = threadIdx.x; idx < c.rows * DB; idx += blockDim.x) {
    const int r = idx / DB, a = idx % DB;
    if (a >= d) continue;
    acc_t dphi_k = ds[a], dv = acc_t(0);
#pragma unroll 8
    for (int j = 0; j < DB; ++j) {
      dphi_k += dkv[a * (DB + 1) + j] * vt[r * (DB + 1) + j];
      dv += phi_k[r * (DB + 1) + j] * dkv[j * (DB + 1) + a];
    }
    const int64_t at = (c.row0 + r) * t.channels + col + a;
    grad_k[at] = from_acc<T>(sla_phi_grad(phi_k[r * (DB + 1) + a], dphi_k));
    grad_v[at] = from_acc<T>(dv);
  }
}

// --- launch helpers --------------------------------------------------------------------------------

// Dynamic shared memory over the 48 KiB default needs an opt-in per kernel (double with DB = 64).
template <typename Kernel>
cudaError_t allow_smem(Kernel* kernel, size_t bytes) {
  if (bytes <= kDefaultSmem) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
}

// Builds the chunk table in the workspace and returns it.
template <typename acc_t>
cudaError_t build_chunk_table(const SlaCudaProblem& p, const SlaLayout& l, unsigned char* ws, cudaStream_t stream,
                              ChunkTable* table) {
  auto* chunk_offsets = reinterpret_cast<int64_t*>(ws + l.chunk_offsets);
  auto* chunk_window = reinterpret_cast<int64_t*>(ws + l.chunk_window);
  sla_chunk_offsets_kernel<<<1, kScanThreads, 0, stream>>>(p.offsets, p.windows, l.rows, chunk_offsets);
  sla_chunk_window_kernel<<<grid_for(p.windows), kThreads, 0, stream>>>(chunk_offsets, p.windows, chunk_window);
  *table = ChunkTable{p.offsets, chunk_offsets,        chunk_window, p.windows,
                      p.heads,   p.heads * p.head_dim, p.head_dim,   l.state_size};
  return cudaGetLastError();
}

template <typename acc_t>
cudaError_t reduce_states(const acc_t* partial, const ChunkTable& t, acc_t* state, cudaStream_t stream) {
  const int64_t blocks = t.windows * t.heads;
  if (blocks == 0) return cudaSuccess;
  sla_reduce_kernel<acc_t><<<grid_for(blocks, 1), kSlaThreads, 0, stream>>>(partial, t.chunk_offsets, t.windows,
                                                                            t.heads, t.state_size, state);
  return cudaGetLastError();
}

template <typename acc_t, int DB, int R>
struct SmemBytes {
  static constexpr size_t tile = sizeof(acc_t) * R * (DB + 1);
  static constexpr size_t square = sizeof(acc_t) * DB * (DB + 1);
  static constexpr size_t partial = 2 * tile;
  static constexpr size_t output = tile + square + sizeof(acc_t) * (DB + R);
  static constexpr size_t query = 3 * tile + square + sizeof(acc_t) * (DB + 2 * R);
  static constexpr size_t key = 2 * tile + square + sizeof(acc_t) * DB;
};

// Forward or backward for one head-dim bucket.
template <typename T, int DB>
cudaError_t run_bucket(const T* grad_out, const T* q, const T* k, const T* v, const SlaCudaProblem& p, double eps,
                       T* out_or_grad_q, T* grad_k, T* grad_v, void* workspace, cudaStream_t stream, bool backward) {
  using acc_t = typename AccType<T>::type;
  constexpr int R = DB > 32 ? 32 : 64;
  using Smem = SmemBytes<acc_t, DB, R>;
  const SlaLayout l = sla_layout<acc_t>(p.n, p.windows, p.heads, p.head_dim, backward);
  if (l.rows != R) return cudaErrorInvalidValue;  // sla_chunk_rows and the bucket disagree
  auto* ws = static_cast<unsigned char*>(workspace);
  auto* partial = reinterpret_cast<acc_t*>(ws + l.partial);
  auto* state = reinterpret_cast<acc_t*>(ws + l.state);
  ChunkTable t{};
  cudaError_t err = build_chunk_table<acc_t>(p, l, ws, stream, &t);
  if (err != cudaSuccess) return err;
  const dim3 grid(static_cast<unsigned int>(l.max_chunks), static_cast<unsigned int>(p.heads));
  const acc_t eps_acc = static_cast<acc_t>(eps);

  if ((err = allow_smem(sla_state_partial_kernel<T, DB, R>, Smem::partial)) != cudaSuccess) return err;
  sla_state_partial_kernel<T, DB, R><<<grid, kSlaThreads, Smem::partial, stream>>>(k, v, t, partial);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;
  if ((err = reduce_states<acc_t>(partial, t, state, stream)) != cudaSuccess) return err;
  if (!backward) {
    if ((err = allow_smem(sla_output_kernel<T, DB, R>, Smem::output)) != cudaSuccess) return err;
    sla_output_kernel<T, DB, R><<<grid, kSlaThreads, Smem::output, stream>>>(q, state, t, eps_acc, out_or_grad_q);
    return cudaGetLastError();
  }
  auto* grad_state = reinterpret_cast<acc_t*>(ws + l.grad_state);
  // The partial buffer is reused: the reduce above read it before this launch (same stream).
  if ((err = allow_smem(sla_backward_query_kernel<T, DB, R>, Smem::query)) != cudaSuccess) return err;
  sla_backward_query_kernel<T, DB, R>
      <<<grid, kSlaThreads, Smem::query, stream>>>(grad_out, q, state, t, eps_acc, out_or_grad_q, partial);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;
  if ((err = reduce_states<acc_t>(partial, t, grad_state, stream)) != cudaSuccess) return err;
  if ((err = allow_smem(sla_backward_key_kernel<T, DB, R>, Smem::key)) != cudaSuccess) return err;
  sla_backward_key_kernel<T, DB, R><<<grid, kSlaThreads, Smem::key, stream>>>(k, v, grad_state, t, grad_k, grad_v);
  return cudaGetLastError();
}

template <typename T>
cudaError_t run(const T* grad_out, const T* q, const T* k, const T* v, const SlaCudaProblem& p, double eps, T* out,
                T* grad_k, T* grad_v, void* workspace, cudaStream_t stream, bool backward) {
  if (p.head_dim < 1 || p.head_dim > 64 || p.heads < 1 || p.heads > 65535 || p.windows < 0 || p.n < 0)
    return cudaErrorInvalidValue;
  const int64_t max_chunks = sla_max_chunks(p.n, p.windows, sla_chunk_rows(p.head_dim));
  if (max_chunks > 0x7fffffff) return cudaErrorInvalidValue;
  if (p.n == 0 || max_chunks == 0) return cudaSuccess;  // no rows: nothing to write
  if (p.head_dim <= 16)
    return run_bucket<T, 16>(grad_out, q, k, v, p, eps, out, grad_k, grad_v, workspace, stream, backward);
  if (p.head_dim <= 32)
    return run_bucket<T, 32>(grad_out, q, k, v, p, eps, out, grad_k, grad_v, workspace, stream, backward);
  return run_bucket<T, 64>(grad_out, q, k, v, p, eps, out, grad_k, grad_v, workspace, stream, backward);
}

}  // namespace

template <typename T>
size_t sla_workspace_bytes(int64_t n, int64_t windows, int64_t heads, int64_t head_dim, bool backward) {
  return sla_layout<typename AccType<T>::type>(n, windows, heads, head_dim, backward).bytes;
}

template <typename T>
cudaError_t launch_scattered_linear_attention(const T* q, const T* k, const T* v, const SlaCudaProblem& problem,
                                              double eps, T* out, void* workspace, cudaStream_t stream) {
  return run<T>(nullptr, q, k, v, problem, eps, out, nullptr, nullptr, workspace, stream, false);
}

template <typename T>
cudaError_t launch_scattered_linear_attention_backward(const T* grad_out, const T* q, const T* k, const T* v,
                                                       const SlaCudaProblem& problem, double eps, T* grad_q, T* grad_k,
                                                       T* grad_v, void* workspace, cudaStream_t stream) {
  return run<T>(grad_out, q, k, v, problem, eps, grad_q, grad_k, grad_v, workspace, stream, true);
}

#define PF_INSTANTIATE(T)                                                                                        \
  template size_t sla_workspace_bytes<T>(int64_t, int64_t, int64_t, int64_t, bool);                              \
  template cudaError_t launch_scattered_linear_attention<T>(const T*, const T*, const T*, const SlaCudaProblem&, \
                                                            double, T*, void*, cudaStream_t);                    \
  template cudaError_t launch_scattered_linear_attention_backward<T>(                                            \
      const T*, const T*, const T*, const T*, const SlaCudaProblem&, double, T*, T*, T*, void*, cudaStream_t);
PF_INSTANTIATE(float)
PF_INSTANTIATE(double)
PF_INSTANTIATE(__half)
PF_INSTANTIATE(__nv_bfloat16)
#undef PF_INSTANTIATE

}  // namespace pointformer
