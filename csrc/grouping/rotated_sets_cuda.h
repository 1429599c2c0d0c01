// Launcher of the CUDA `dsvt_set_index` kernel: raw pointers, sizes and a stream, no torch types.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "../common/dsvt_sets.h"

namespace pointformer {

// One thread per voxel of coords (num_voxels, 4) int32: writes keys (2, num_voxels), the y-major and
// x-major sort keys (-1 for a voxel outside the grid or batch), and in_window (num_voxels, 3).
cudaError_t launch_dsvt_window_keys(const int32_t* coords, int64_t num_voxels, const DsvtWindowSpec& spec,
                                    int64_t* keys, int64_t* in_window, cudaStream_t stream);

// One thread per slot of the num_sets * tau slots. sorted: (num_orders, num_voxels) voxel lists,
// window by window; count, window_start, first_set: (num_windows,) voxels, first list position and
// first set of each window; set_window: (num_sets,); voxel_window: (num_voxels,) window of each list
// position. Writes index and mask (num_orders, num_sets, tau), offsets[0..num_sets) (the caller sets
// offsets[num_sets]) and slot_of_voxel (num_orders, num_voxels), the latter one thread per position.
cudaError_t launch_dsvt_set_index(const int64_t* sorted, int64_t num_orders, int64_t num_voxels, const int64_t* count,
                                  const int64_t* window_start, const int64_t* first_set, const int64_t* set_window,
                                  const int64_t* voxel_window, int64_t num_sets, int64_t tau, int64_t* index,
                                  bool* mask, int64_t* offsets, int64_t* slot_of_voxel, cudaStream_t stream);

}  // namespace pointformer
