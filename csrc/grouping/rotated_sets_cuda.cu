// CUDA `dsvt_set_index`; the sampling math is csrc/common/dsvt_sets.h, as on the CPU.
#include "../common/cuda_helpers.cuh"
#include "../common/dsvt_sets.h"
#include "rotated_sets_cuda.h"

namespace pointformer {
namespace {

__global__ void dsvt_set_index_kernel(const int64_t* sorted, int64_t num_orders, int64_t num_voxels,
                                      const int64_t* count, const int64_t* window_start, const int64_t* first_set,
                                      const int64_t* set_window, int64_t num_sets, int64_t tau, int64_t* index,
                                      bool* mask, int64_t* offsets) {
  PF_GRID_STRIDE(t, num_sets * tau) {
    const int64_t set = t / tau, slot = t - set * tau;
    const int64_t w = set_window[set];
    dsvt_fill_slot(sorted, num_voxels, num_orders, window_start[w], count[w], set - first_set[w], set, num_sets, slot,
                   tau, index, mask);
    if (slot == 0) offsets[set] = dsvt_set_offset(window_start[w], count[w], set - first_set[w], tau);
  }
}

__global__ void dsvt_first_slot_kernel(const int64_t* sorted, int64_t num_orders, int64_t num_voxels,
                                       const int64_t* count, const int64_t* window_start, const int64_t* first_set,
                                       const int64_t* voxel_window, int64_t tau, int64_t* slot_of_voxel) {
  PF_GRID_STRIDE(p, num_voxels) {
    const int64_t w = voxel_window[p];
    dsvt_fill_first_slot(sorted, num_voxels, num_orders, window_start[w], count[w], first_set[w], p - window_start[w],
                         tau, slot_of_voxel);
  }
}

// One thread per voxel; a voxel outside the grid gets key -1 in both orders (and in-window 0).
__global__ void dsvt_window_keys_kernel(const int32_t* coords, int64_t num_voxels, DsvtWindowSpec spec, int64_t* keys,
                                        int64_t* in_window) {
  PF_GRID_STRIDE(i, num_voxels) {
    const int32_t* v = coords + 4 * i;
    int64_t* iw = in_window + 3 * i;
    if (!dsvt_window_keys(v[0], v[1], v[2], v[3], spec, keys[i], keys[num_voxels + i], iw)) {
      keys[i] = keys[num_voxels + i] = -1;
      iw[0] = iw[1] = iw[2] = 0;
    }
  }
}

}  // namespace

cudaError_t launch_dsvt_window_keys(const int32_t* coords, int64_t num_voxels, const DsvtWindowSpec& spec,
                                    int64_t* keys, int64_t* in_window, cudaStream_t stream) {
  if (num_voxels == 0) return cudaSuccess;
  dsvt_window_keys_kernel<<<grid_for(num_voxels), kThreads, 0, stream>>>(coords, num_voxels, spec, keys, in_window);
  return cudaGetLastError();
}

cudaError_t launch_dsvt_set_index(const int64_t* sorted, int64_t num_orders, int64_t num_voxels, const int64_t* count,
                                  const int64_t* window_start, const int64_t* first_set, const int64_t* set_window,
                                  const int64_t* voxel_window, int64_t num_sets, int64_t tau, int64_t* index,
                                  bool* mask, int64_t* offsets, int64_t* slot_of_voxel, cudaStream_t stream) {
  if (num_sets == 0) return cudaSuccess;
  dsvt_set_index_kernel<<<grid_for(num_sets * tau), kThreads, 0, stream>>>(
      sorted, num_orders, num_voxels, count, window_start, first_set, set_window, num_sets, tau, index, mask, offsets);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  dsvt_first_slot_kernel<<<grid_for(num_voxels), kThreads, 0, stream>>>(
      sorted, num_orders, num_voxels, count, window_start, first_set, voxel_window, tau, slot_of_voxel);
  return cudaGetLastError();
}

}  // namespace pointformer
