// CPU voxelization: per-point voxel keys in parallel, a stable radix sort of (key, point) pairs,
// then one pass over the runs of equal keys. Sorted keys give coords in (batch, z, y, x) order,
// and stability keeps each voxel's points in input order, which is what the caps act on.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "../common/sort_cpu.h"
#include "voxelize_args.h"

namespace pointformer {
namespace {

template <typename T>
void point_keys(const at::Tensor& points, const int64_t* batch, const GridSpec<T>& grid, int64_t batch_size,
                int64_t* keys) {
  const T* p = points.data_ptr<T>();
  const int64_t stride = points.size(1);
  at::parallel_for(0, points.size(0), 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = batch ? batch[i] : 0;
      keys[i] = (b >= 0 && b < batch_size) ? point_voxel_key(p + i * stride, b, grid) : -1;
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> voxelize_cpu(const at::Tensor& points_in,
                                                            const c10::optional<at::Tensor>& batch_index,
                                                            int64_t batch_size, at::ArrayRef<double> voxel_size,
                                                            at::ArrayRef<double> range_min,
                                                            at::ArrayRef<double> range_max, at::IntArrayRef grid_shape,
                                                            int64_t max_points_per_voxel, int64_t max_voxels) {
  check_voxelize_args(points_in, batch_index, batch_size, voxel_size, range_min, range_max, grid_shape,
                      max_points_per_voxel, max_voxels);
  const at::Tensor points = points_in.contiguous();
  const at::Tensor batch = batch_index.has_value() ? batch_index->contiguous() : at::Tensor();
  const int64_t n = points.size(0);

  std::vector<int64_t> keys(n);
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "voxelize_cpu", [&] {
    const auto grid = make_grid_spec<scalar_t>(voxel_size, range_min, range_max, grid_shape);
    point_keys<scalar_t>(points, batch.defined() ? batch.data_ptr<int64_t>() : nullptr, grid, batch_size, keys.data());
  });
  const int64_t sample_cells = grid_shape[0] * grid_shape[1] * grid_shape[2];

  // Keep the valid points only, in input order, then sort them by key.
  std::vector<int64_t> sorted_keys, sorted_points;
  sorted_keys.reserve(n);
  sorted_points.reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    if (keys[i] >= 0) {
      sorted_keys.push_back(keys[i]);
      sorted_points.push_back(i);
    }
  }
  radix_sort_pairs(sorted_keys, sorted_points, batch_size * sample_cells);

  const std::vector<int64_t> run_start = run_starts(sorted_keys);  // each voxel's run, then the end
  const int64_t num_voxels = static_cast<int64_t>(run_start.size()) - 1;

  // max_voxels caps each sample: its voxels whose first point comes earliest in the input are
  // kept (the first-come rule of hard voxelization). A sample's voxels are contiguous here.
  std::vector<uint8_t> kept(num_voxels, 1);
  if (max_voxels > 0) {
    int64_t s0 = 0;
    while (s0 < num_voxels) {
      const int64_t sample = sorted_keys[run_start[s0]] / sample_cells;
      int64_t s1 = s0;
      while (s1 < num_voxels && sorted_keys[run_start[s1]] / sample_cells == sample) ++s1;
      if (s1 - s0 > max_voxels) {
        std::vector<std::pair<int64_t, int64_t>> first(s1 - s0);  // (first point, voxel)
        for (int64_t v = s0; v < s1; ++v) first[v - s0] = {sorted_points[run_start[v]], v};
        std::nth_element(first.begin(), first.begin() + max_voxels, first.end());
        for (int64_t j = max_voxels; j < s1 - s0; ++j) kept[first[j].second] = 0;
      }
      s0 = s1;
    }
  }
  std::vector<int64_t> new_id(num_voxels);
  int64_t num_kept = 0;
  for (int64_t v = 0; v < num_voxels; ++v) new_id[v] = kept[v] ? num_kept++ : -1;

  at::Tensor point_to_voxel = at::full({n}, -1, points.options().dtype(at::kLong));
  at::Tensor coords = at::empty({num_kept, 4}, points.options().dtype(at::kInt));
  at::Tensor num_points = at::empty({num_kept}, points.options().dtype(at::kInt));
  int64_t* p2v = point_to_voxel.data_ptr<int64_t>();
  int32_t* c = coords.data_ptr<int32_t>();
  int32_t* np = num_points.data_ptr<int32_t>();
  int64_t shape_xyz[3] = {grid_shape[2], grid_shape[1], grid_shape[0]};
  at::parallel_for(0, num_voxels, 1024, [&](int64_t begin, int64_t end) {
    for (int64_t v = begin; v < end; ++v) {
      const int64_t id = new_id[v];
      if (id < 0) continue;
      const int64_t start = run_start[v], len = run_start[v + 1] - start;
      const int64_t count = max_points_per_voxel > 0 ? std::min(len, max_points_per_voxel) : len;
      decode_voxel_key(sorted_keys[start], shape_xyz, c + 4 * id);
      np[id] = static_cast<int32_t>(count);
      for (int64_t r = 0; r < count; ++r) p2v[sorted_points[start + r]] = id;
    }
  });
  return {point_to_voxel, coords, num_points};
}

}  // namespace

TORCH_LIBRARY_IMPL(pointformer, CPU, m) { m.impl("voxelize", &voxelize_cpu); }

}  // namespace pointformer
