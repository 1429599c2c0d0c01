// Validation and grid set-up shared by the CPU and CUDA voxelize wrappers (torch-facing).
#pragma once
#include <ATen/ATen.h>

#include <limits>

#include "../common/checks.h"
#include "../common/voxel_grid.h"

namespace pointformer {

inline void check_voxelize_args(const at::Tensor& points, const c10::optional<at::Tensor>& batch_index,
                                int64_t batch_size, at::ArrayRef<double> voxel_size, at::ArrayRef<double> range_min,
                                at::ArrayRef<double> range_max, at::IntArrayRef grid_shape,
                                int64_t max_points_per_voxel, int64_t max_voxels) {
  PF_CHECK_ROWS(points, 3, "points");
  TORCH_CHECK(points.scalar_type() == at::kFloat || points.scalar_type() == at::kDouble,
              "points must be float32 or float64, got ", points.scalar_type());
  TORCH_CHECK(voxel_size.size() == 3 && range_min.size() == 3 && range_max.size() == 3 && grid_shape.size() == 3,
              "voxel_size, range_min, range_max and grid_shape must have 3 entries each");
  TORCH_CHECK(batch_size >= 1, "batch_size must be >= 1, got ", batch_size);
  if (batch_index.has_value()) {
    TORCH_CHECK(batch_index->dim() == 1 && batch_index->size(0) == points.size(0),
                "batch_index must have shape (N,) matching points, got ", batch_index->sizes());
    TORCH_CHECK(batch_index->scalar_type() == at::kLong, "batch_index must be int64");
    TORCH_CHECK(batch_index->device() == points.device(), "batch_index must be on the points' device");
  }
  TORCH_CHECK(max_points_per_voxel == -1 || max_points_per_voxel > 0, "max_points_per_voxel must be -1 or > 0");
  TORCH_CHECK(max_voxels == -1 || max_voxels > 0, "max_voxels must be -1 or > 0");
  int64_t cells = batch_size;
  for (int d = 0; d < 3; ++d) {
    TORCH_CHECK(grid_shape[d] >= 1 && grid_shape[d] <= std::numeric_limits<int32_t>::max(),
                "grid_shape entries must be in [1, 2^31 - 1] for int32 coordinates, got ", grid_shape);
    TORCH_CHECK(cells <= std::numeric_limits<int64_t>::max() / 2 / grid_shape[d],
                "batch_size * grid volume overflows int64 voxel keys: grid ", grid_shape, ", batch ", batch_size);
    cells *= grid_shape[d];
  }
}

// grid_shape arrives as (Z, Y, X), the spconv order; GridSpec holds x, y, z.
template <typename T>
GridSpec<T> make_grid_spec(at::ArrayRef<double> voxel_size, at::ArrayRef<double> range_min,
                           at::ArrayRef<double> range_max, at::IntArrayRef grid_shape) {
  GridSpec<T> g;
  for (int d = 0; d < 3; ++d) {
    g.voxel_size[d] = static_cast<T>(voxel_size[d]);
    g.range_min[d] = static_cast<T>(range_min[d]);
    g.range_max[d] = static_cast<T>(range_max[d]);
    g.shape[d] = grid_shape[2 - d];
  }
  return g;
}

}  // namespace pointformer
