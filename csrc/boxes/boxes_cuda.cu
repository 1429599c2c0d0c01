// CUDA box kernels. The geometry is csrc/common/box_geometry.h, shared with the CPU kernels;
// NMS is the usual two-step scheme: a parallel pairwise suppression bitmask, then one block that
// walks the boxes in priority order.
#include "../common/box_geometry.h"
#include "../common/cuda_helpers.cuh"
#include "boxes_cuda.h"

namespace pointformer {
namespace {

constexpr int kNmsBlock = 64;
constexpr int kBoxFields = 7;

template <typename T>
__global__ void boxes_iou_kernel(const T* a, int64_t na, int64_t stride_a, const T* b, int64_t nb, int64_t stride_b,
                                 bool is_3d, T* iou) {
  PF_GRID_STRIDE(idx, na * nb) {
    const int64_t i = idx / nb, j = idx % nb;
    iou[idx] = box_iou(a + i * stride_a, b + j * stride_b, is_3d);
  }
}

template <typename T>
__global__ void points_in_boxes_kernel(const T* points, int64_t n, int64_t stride_p, const T* boxes, int64_t m,
                                       int64_t stride_b, bool* mask) {
  PF_GRID_STRIDE(idx, n * m) {
    const int64_t i = idx / m, j = idx % m;
    mask[idx] = point_in_box(points + i * stride_p, boxes + j * stride_b);
  }
}

template <typename T>
__device__ __forceinline__ bool suppresses(const T* a, const T* b, int mode, T threshold) {
  if (mode == 0) return box_iou(a, b, false) > threshold;
  const T dx = a[0] - b[0], dy = a[1] - b[1];
  return dx * dx + dy * dy <= threshold * threshold;
}

// Block (row_block, col_block): thread t compares box row_block*64 + t with the 64 boxes of
// col_block, staged in shared memory.
template <typename T>
__global__ void nms_mask_kernel(const T* boxes, int64_t n, int64_t stride, int mode, T threshold, uint64_t* mask) {
  const int64_t row_block = blockIdx.y, col_block = blockIdx.x;
  const int64_t words = nms_mask_words(n);
  if (col_block < row_block) return;  // only j > i matters
  const int64_t col_start = col_block * kNmsBlock;
  const int cols = static_cast<int>(n - col_start < kNmsBlock ? n - col_start : kNmsBlock);
  __shared__ T col_boxes[kNmsBlock * kBoxFields];
  const int fields = mode == 0 ? kBoxFields : 2;
  if (threadIdx.x < cols) {
    for (int f = 0; f < fields; ++f)
      col_boxes[threadIdx.x * kBoxFields + f] = boxes[(col_start + threadIdx.x) * stride + f];
  }
  __syncthreads();
  const int64_t i = row_block * kNmsBlock + threadIdx.x;
  if (i >= n) return;
  const T* box_i = boxes + i * stride;
  T own[kBoxFields];
  for (int f = 0; f < fields; ++f) own[f] = box_i[f];
  uint64_t bits = 0;
  const int first = col_block == row_block ? static_cast<int>(threadIdx.x) + 1 : 0;
  for (int j = first; j < cols; ++j) {
    if (suppresses(own, col_boxes + j * kBoxFields, mode, threshold)) bits |= uint64_t(1) << j;
  }
  mask[i * words + col_block] = bits;
}

// Rows of mask below the diagonal block are never written by nms_mask_kernel; the caller zeroes
// the mask first. Bit i of `removed` cannot change while box i is examined (rows only mark j > i),
// so all threads agree on whether i survives.
__global__ void nms_keep_kernel(const uint64_t* mask, int64_t n, bool* keep) {
  extern __shared__ uint64_t removed[];
  const int64_t words = nms_mask_words(n);
  for (int64_t w = threadIdx.x; w < words; w += blockDim.x) removed[w] = 0;
  __syncthreads();
  for (int64_t i = 0; i < n; ++i) {
    const bool alive = !((removed[i / 64] >> (i % 64)) & 1);
    if (threadIdx.x == 0) keep[i] = alive;
    if (alive) {
      for (int64_t w = threadIdx.x; w < words; w += blockDim.x) removed[w] |= mask[i * words + w];
    }
    __syncthreads();
  }
}

}  // namespace

template <typename T>
cudaError_t launch_boxes_iou(const T* a, int64_t na, int64_t stride_a, const T* b, int64_t nb, int64_t stride_b,
                             bool is_3d, T* iou, cudaStream_t stream) {
  if (na * nb == 0) return cudaSuccess;
  boxes_iou_kernel<T><<<grid_for(na * nb), kThreads, 0, stream>>>(a, na, stride_a, b, nb, stride_b, is_3d, iou);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_points_in_boxes(const T* points, int64_t n, int64_t stride_p, const T* boxes, int64_t m,
                                   int64_t stride_b, bool* mask, cudaStream_t stream) {
  if (n * m == 0) return cudaSuccess;
  points_in_boxes_kernel<T><<<grid_for(n * m), kThreads, 0, stream>>>(points, n, stride_p, boxes, m, stride_b, mask);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_nms_mask(const T* boxes, int64_t n, int64_t stride, int mode, T threshold, uint64_t* mask,
                            cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const unsigned int blocks = static_cast<unsigned int>(nms_mask_words(n));
  nms_mask_kernel<T><<<dim3(blocks, blocks), kNmsBlock, 0, stream>>>(boxes, n, stride, mode, threshold, mask);
  return cudaGetLastError();
}

cudaError_t launch_nms_keep(const uint64_t* mask, int64_t n, bool* keep, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const size_t shared = static_cast<size_t>(nms_mask_words(n)) * sizeof(uint64_t);
  nms_keep_kernel<<<1, 256, shared, stream>>>(mask, n, keep);
  return cudaGetLastError();
}

#define PF_INSTANTIATE(T)                                                                                       \
  template cudaError_t launch_boxes_iou<T>(const T*, int64_t, int64_t, const T*, int64_t, int64_t, bool, T*,    \
                                           cudaStream_t);                                                       \
  template cudaError_t launch_points_in_boxes<T>(const T*, int64_t, int64_t, const T*, int64_t, int64_t, bool*, \
                                                 cudaStream_t);                                                 \
  template cudaError_t launch_nms_mask<T>(const T*, int64_t, int64_t, int, T, uint64_t*, cudaStream_t);
PF_INSTANTIATE(float)
PF_INSTANTIATE(double)
#undef PF_INSTANTIATE

}  // namespace pointformer
