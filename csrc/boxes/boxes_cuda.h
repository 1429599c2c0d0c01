// Launchers of the CUDA box kernels (raw pointers, no torch types). Boxes are row-major with
// `stride` numbers per row, the first 7 being [x, y, z, dx, dy, dz, heading].
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "../common/macros.h"

namespace pointformer {

template <typename T>
cudaError_t launch_boxes_iou(const T* a, int64_t na, int64_t stride_a, const T* b, int64_t nb, int64_t stride_b,
                             bool is_3d, T* iou, cudaStream_t stream);

template <typename T>
cudaError_t launch_points_in_boxes(const T* points, int64_t n, int64_t stride_p, const T* boxes, int64_t m,
                                   int64_t stride_b, bool* mask, cudaStream_t stream);

// Number of 64-bit words per row of the suppression mask for n boxes.
PF_HD int64_t nms_mask_words(int64_t n) { return (n + 63) / 64; }

// mask (n, nms_mask_words(n)): bit j of row i set when box i (earlier in priority order)
// suppresses box j > i. mode 0: rotated BEV IoU > threshold; mode 1: centre distance <= threshold.
template <typename T>
cudaError_t launch_nms_mask(const T* boxes, int64_t n, int64_t stride, int mode, T threshold, uint64_t* mask,
                            cudaStream_t stream);

// Greedy pass over the mask in one block: keep[i] = box i survives.
cudaError_t launch_nms_keep(const uint64_t* mask, int64_t n, bool* keep, cudaStream_t stream);

}  // namespace pointformer
