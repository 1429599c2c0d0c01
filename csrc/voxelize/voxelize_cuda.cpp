// Torch-facing CUDA voxelize: kernels from voxelize_cuda.cu, with torch's stable sort and scans
// between them. Same outputs, in the same order, as the CPU kernel.
#include "voxelize_cuda.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../common/cuda_check.h"
#include "voxelize_args.h"

namespace pointformer {
namespace {

// Per-sample max_voxels cap, first-come: within each sample keep the voxels whose first point
// has the smallest input index. Returns the new id of every voxel (-1 when dropped).
at::Tensor cap_voxels_per_sample(const at::Tensor& voxel_sample, const at::Tensor& first_point, int64_t num_points,
                                 int64_t batch_size, int64_t max_voxels) {
  const int64_t m = voxel_sample.size(0);
  const at::Tensor order = at::argsort(voxel_sample * num_points + first_point);
  // voxel_sample is non-decreasing (voxels are key-sorted), so a sample's first voxel is found by
  // searchsorted; order keeps samples contiguous in the same places.
  const at::Tensor samples = at::arange(batch_size, voxel_sample.options());
  const at::Tensor sample_start = at::searchsorted(voxel_sample, samples);
  const at::Tensor rank =
      at::arange(m, voxel_sample.options()) - sample_start.index_select(0, voxel_sample.index_select(0, order));
  at::Tensor kept = at::empty({m}, voxel_sample.options().dtype(at::kBool));
  kept.index_put_({order}, rank < max_voxels);
  const at::Tensor kept_long = kept.to(at::kLong);
  return at::where(kept, kept_long.cumsum(0) - 1, at::full_like(kept_long, -1));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> voxelize_cuda(const at::Tensor& points_in,
                                                             const c10::optional<at::Tensor>& batch_index,
                                                             int64_t batch_size, at::ArrayRef<double> voxel_size,
                                                             at::ArrayRef<double> range_min,
                                                             at::ArrayRef<double> range_max, at::IntArrayRef grid_shape,
                                                             int64_t max_points_per_voxel, int64_t max_voxels) {
  check_voxelize_args(points_in, batch_index, batch_size, voxel_size, range_min, range_max, grid_shape,
                      max_points_per_voxel, max_voxels);
  const c10::cuda::CUDAGuard guard(points_in.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor points = points_in.contiguous();
  const at::Tensor batch = batch_index.has_value() ? batch_index->contiguous() : at::Tensor();
  const int64_t n = points.size(0);
  const auto long_opts = points.options().dtype(at::kLong);
  const int64_t sample_cells = grid_shape[0] * grid_shape[1] * grid_shape[2];
  const int64_t invalid_key = batch_size * sample_cells;

  at::Tensor keys = at::empty({n}, long_opts);
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "voxelize_cuda", [&] {
    const auto grid = make_grid_spec<scalar_t>(voxel_size, range_min, range_max, grid_shape);
    PF_CUDA_CHECK(launch_point_voxel_keys<scalar_t>(points.data_ptr<scalar_t>(), n, points.size(1),
                                                    batch.defined() ? batch.data_ptr<int64_t>() : nullptr, batch_size,
                                                    grid, invalid_key, keys.data_ptr<int64_t>(), stream));
  });
  // Stable, so each voxel's points stay in input order (the per-voxel cap keeps the first ones).
  const auto [sorted_keys, sorted_points] = at::sort(keys, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  at::Tensor is_head = at::empty({n}, long_opts);
  PF_CUDA_CHECK(
      launch_mark_voxel_heads(sorted_keys.data_ptr<int64_t>(), n, invalid_key, is_head.data_ptr<int64_t>(), stream));
  const at::Tensor voxel_scan = is_head.cumsum(0);
  // One synchronization for both sizes.
  const at::Tensor sizes =
      at::stack({(keys != invalid_key).sum(), n > 0 ? voxel_scan[-1] : at::zeros({}, long_opts)}).cpu();
  const int64_t num_valid = sizes[0].item<int64_t>(), num_voxels = sizes[1].item<int64_t>();

  at::Tensor run_start = at::empty({num_voxels + 1}, long_opts);
  PF_CUDA_CHECK(launch_voxel_run_starts(is_head.data_ptr<int64_t>(), voxel_scan.data_ptr<int64_t>(), n,
                                        run_start.data_ptr<int64_t>(), stream));
  run_start.narrow(0, num_voxels, 1).fill_(num_valid);

  at::Tensor new_id = at::arange(num_voxels, long_opts);
  int64_t num_kept = num_voxels;
  if (max_voxels > 0 && num_voxels > max_voxels) {
    const at::Tensor heads = run_start.narrow(0, 0, num_voxels);
    const at::Tensor voxel_sample = at::div(sorted_keys.index_select(0, heads), sample_cells, "floor");
    new_id = cap_voxels_per_sample(voxel_sample, sorted_points.index_select(0, heads), n, batch_size, max_voxels);
    num_kept = (new_id >= 0).sum().item<int64_t>();
  }

  at::Tensor point_to_voxel = at::full({n}, -1, long_opts);
  at::Tensor coords = at::empty({num_kept, 4}, points.options().dtype(at::kInt));
  at::Tensor num_points = at::empty({num_kept}, points.options().dtype(at::kInt));
  const int64_t shape_xyz[3] = {grid_shape[2], grid_shape[1], grid_shape[0]};
  PF_CUDA_CHECK(launch_write_voxels(
      sorted_keys.data_ptr<int64_t>(), sorted_points.data_ptr<int64_t>(), voxel_scan.data_ptr<int64_t>(),
      run_start.data_ptr<int64_t>(), new_id.data_ptr<int64_t>(), num_valid, max_points_per_voxel, shape_xyz,
      coords.data_ptr<int32_t>(), num_points.data_ptr<int32_t>(), point_to_voxel.data_ptr<int64_t>(), stream));
  return {point_to_voxel, coords, num_points};
}

}  // namespace

TORCH_LIBRARY_IMPL(pointformer, CUDA, m) { m.impl("voxelize", &voxelize_cuda); }

}  // namespace pointformer
