// CPU `dsvt_set_index`: DSVT's set sampling and gather, and the sets' Partition views, one window per
// task.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../common/dsvt_sets.h"
#include "rotated_sets_args.h"

namespace pointformer {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> dsvt_set_index_cpu(const at::Tensor& sorted_in,
                                                                                          const at::Tensor& counts_in,
                                                                                          int64_t set_size) {
  check_dsvt_set_index_args(sorted_in, counts_in, set_size);
  const at::Tensor sorted = sorted_in.contiguous();
  const at::Tensor counts = counts_in.contiguous();
  const int64_t num_orders = sorted.size(0), num_voxels = sorted.size(1), num_windows = counts.size(0);
  const int64_t tau = set_size;
  const int64_t* count = counts.data_ptr<int64_t>();

  std::vector<int64_t> window_start(num_windows), first_set(num_windows + 1, 0);
  int64_t total = 0;
  for (int64_t w = 0; w < num_windows; ++w) {
    TORCH_CHECK(count[w] >= 1, "window_counts must be >= 1, got ", count[w], " for window ", w);
    window_start[w] = total;
    total += count[w];
    first_set[w + 1] = first_set[w] + dsvt_num_sets(count[w], tau);
  }
  TORCH_CHECK(total == num_voxels, "window_counts add up to ", total, ", sorted_voxels has ", num_voxels, " voxels");
  const int64_t num_sets = first_set[num_windows];

  const auto opts = sorted.options();
  at::Tensor index = at::empty({num_orders, num_sets, tau}, opts);
  at::Tensor mask = at::empty({num_orders, num_sets, tau}, opts.dtype(at::kBool));
  at::Tensor set_window = at::empty({num_sets}, opts);
  at::Tensor offsets = at::empty({num_sets + 1}, opts);
  at::Tensor slot_of_voxel = at::empty({num_orders, num_voxels}, opts);
  const int64_t* src = sorted.data_ptr<int64_t>();
  int64_t* idx = index.data_ptr<int64_t>();
  bool* msk = mask.data_ptr<bool>();
  int64_t* sw = set_window.data_ptr<int64_t>();
  int64_t* off = offsets.data_ptr<int64_t>();
  int64_t* first_slot = slot_of_voxel.data_ptr<int64_t>();
  off[num_sets] = num_voxels;
  at::parallel_for(0, num_windows, 64, [&](int64_t begin, int64_t end) {
    for (int64_t w = begin; w < end; ++w) {
      for (int64_t set = first_set[w]; set < first_set[w + 1]; ++set) {
        sw[set] = w;
        off[set] = dsvt_set_offset(window_start[w], count[w], set - first_set[w], tau);
        for (int64_t slot = 0; slot < tau; ++slot) {
          dsvt_fill_slot(src, num_voxels, num_orders, window_start[w], count[w], set - first_set[w], set, num_sets,
                         slot, tau, idx, msk);
        }
      }
      for (int64_t rank = 0; rank < count[w]; ++rank) {
        dsvt_fill_first_slot(src, num_voxels, num_orders, window_start[w], count[w], first_set[w], rank, tau,
                             first_slot);
      }
    }
  });
  return {index, mask, set_window, offsets, slot_of_voxel};
}

}  // namespace

TORCH_LIBRARY_IMPL(pointformer, CPU, m) { m.impl("dsvt_set_index", &dsvt_set_index_cpu); }

}  // namespace pointformer
