// CUDA voxelization kernels; the point -> key math is csrc/common/voxel_grid.h, as on the CPU.
#include "../common/cuda_helpers.cuh"
#include "voxelize_cuda.h"

namespace pointformer {
namespace {

struct Shape3 {
  int64_t xyz[3];
};

template <typename T>
__global__ void point_voxel_keys_kernel(const T* points, int64_t n, int64_t stride, const int64_t* batch,
                                        int64_t batch_size, GridSpec<T> grid, int64_t invalid_key, int64_t* keys) {
  PF_GRID_STRIDE(i, n) {
    const int64_t b = batch ? batch[i] : 0;
    const int64_t key = (b >= 0 && b < batch_size) ? point_voxel_key(points + i * stride, b, grid) : -1;
    keys[i] = key < 0 ? invalid_key : key;
  }
}

__global__ void mark_voxel_heads_kernel(const int64_t* sorted_keys, int64_t n, int64_t invalid_key, int64_t* is_head) {
  PF_GRID_STRIDE(i, n) {
    const int64_t k = sorted_keys[i];
    is_head[i] = (k != invalid_key && (i == 0 || sorted_keys[i - 1] != k)) ? 1 : 0;
  }
}

__global__ void voxel_run_starts_kernel(const int64_t* is_head, const int64_t* voxel_scan, int64_t n,
                                        int64_t* run_start) {
  PF_GRID_STRIDE(i, n) {
    if (is_head[i]) run_start[voxel_scan[i] - 1] = i;
  }
}

__global__ void write_voxels_kernel(const int64_t* sorted_keys, const int64_t* sorted_points, const int64_t* voxel_scan,
                                    const int64_t* run_start, const int64_t* new_id, int64_t num_valid,
                                    int64_t max_points, Shape3 shape, int32_t* coords, int32_t* num_points,
                                    int64_t* point_to_voxel) {
  PF_GRID_STRIDE(i, num_valid) {
    const int64_t v = voxel_scan[i] - 1;
    const int64_t id = new_id[v];
    if (id < 0) continue;
    const int64_t rank = i - run_start[v];
    if (max_points < 0 || rank < max_points) point_to_voxel[sorted_points[i]] = id;
    if (rank == 0) {
      const int64_t len = run_start[v + 1] - run_start[v];
      decode_voxel_key(sorted_keys[i], shape.xyz, coords + 4 * id);
      num_points[id] = static_cast<int32_t>(max_points < 0 || len < max_points ? len : max_points);
    }
  }
}

}  // namespace

template <typename T>
cudaError_t launch_point_voxel_keys(const T* points, int64_t n, int64_t stride, const int64_t* batch,
                                    int64_t batch_size, GridSpec<T> grid, int64_t invalid_key, int64_t* keys,
                                    cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  point_voxel_keys_kernel<T>
      <<<grid_for(n), kThreads, 0, stream>>>(points, n, stride, batch, batch_size, grid, invalid_key, keys);
  return cudaGetLastError();
}

template cudaError_t launch_point_voxel_keys<float>(const float*, int64_t, int64_t, const int64_t*, int64_t,
                                                    GridSpec<float>, int64_t, int64_t*, cudaStream_t);
template cudaError_t launch_point_voxel_keys<double>(const double*, int64_t, int64_t, const int64_t*, int64_t,
                                                     GridSpec<double>, int64_t, int64_t*, cudaStream_t);

cudaError_t launch_mark_voxel_heads(const int64_t* sorted_keys, int64_t n, int64_t invalid_key, int64_t* is_head,
                                    cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  mark_voxel_heads_kernel<<<grid_for(n), kThreads, 0, stream>>>(sorted_keys, n, invalid_key, is_head);
  return cudaGetLastError();
}

cudaError_t launch_voxel_run_starts(const int64_t* is_head, const int64_t* voxel_scan, int64_t n, int64_t* run_start,
                                    cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  voxel_run_starts_kernel<<<grid_for(n), kThreads, 0, stream>>>(is_head, voxel_scan, n, run_start);
  return cudaGetLastError();
}

cudaError_t launch_write_voxels(const int64_t* sorted_keys, const int64_t* sorted_points, const int64_t* voxel_scan,
                                const int64_t* run_start, const int64_t* new_id, int64_t num_valid, int64_t max_points,
                                const int64_t shape_xyz[3], int32_t* coords, int32_t* num_points,
                                int64_t* point_to_voxel, cudaStream_t stream) {
  if (num_valid == 0) return cudaSuccess;
  Shape3 shape{{shape_xyz[0], shape_xyz[1], shape_xyz[2]}};
  write_voxels_kernel<<<grid_for(num_valid), kThreads, 0, stream>>>(sorted_keys, sorted_points, voxel_scan, run_start,
                                                                    new_id, num_valid, max_points, shape, coords,
                                                                    num_points, point_to_voxel);
  return cudaGetLastError();
}

}  // namespace pointformer
