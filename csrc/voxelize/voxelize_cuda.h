// Launchers of the CUDA voxelize kernels: raw pointers, sizes and a stream, no torch types, so
// they can also back a TensorRT plugin. The wrapper (voxelize_cuda.cpp) sorts and scans between
// the steps. Keys of dropped points are `invalid_key`, which sorts after every real key.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "../common/voxel_grid.h"

namespace pointformer {

// keys[i] = voxel key of point i (invalid_key when dropped).
template <typename T>
cudaError_t launch_point_voxel_keys(const T* points, int64_t n, int64_t stride, const int64_t* batch,
                                    int64_t batch_size, GridSpec<T> grid, int64_t invalid_key, int64_t* keys,
                                    cudaStream_t stream);

// is_head[i] = 1 where sorted position i starts a new voxel (valid keys only).
cudaError_t launch_mark_voxel_heads(const int64_t* sorted_keys, int64_t n, int64_t invalid_key, int64_t* is_head,
                                    cudaStream_t stream);

// run_start[v] = first sorted position of voxel v, from the inclusive scan of is_head.
cudaError_t launch_voxel_run_starts(const int64_t* is_head, const int64_t* voxel_scan, int64_t n, int64_t* run_start,
                                    cudaStream_t stream);

// Writes coords / num_points of kept voxels (new_id >= 0) and point_to_voxel for the first
// max_points (-1: all) points of each kept voxel. run_start has num_voxels + 1 entries.
cudaError_t launch_write_voxels(const int64_t* sorted_keys, const int64_t* sorted_points, const int64_t* voxel_scan,
                                const int64_t* run_start, const int64_t* new_id, int64_t num_valid, int64_t max_points,
                                const int64_t shape_xyz[3], int32_t* coords, int32_t* num_points,
                                int64_t* point_to_voxel, cudaStream_t stream);

}  // namespace pointformer
