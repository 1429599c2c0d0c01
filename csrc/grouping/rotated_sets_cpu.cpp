// CPU `dsvt_set_index`: DSVT's set sampling and gather, and the sets' Partition views, one window per
// task.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>
#include <numeric>
#include <vector>

#include "../common/dsvt_sets.h"
#include "../common/sort_cpu.h"
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

// Keys of both in-window orders in one pass, a stable radix sort of each order (one task each), and
// the window counts from the sorted y-major keys.
std::tuple<at::Tensor, at::Tensor, at::Tensor> dsvt_window_order_cpu(const at::Tensor& coords_in, int64_t batch_size,
                                                                     at::IntArrayRef sparse_shape,
                                                                     at::IntArrayRef window_shape,
                                                                     at::IntArrayRef shift) {
  int64_t key_limit = 0;
  const DsvtWindowSpec spec =
      make_dsvt_window_spec(coords_in, batch_size, sparse_shape, window_shape, shift, key_limit);
  const at::Tensor coords = coords_in.contiguous();
  const int64_t n = coords.size(0);
  const auto opts = coords.options().dtype(at::kLong);
  at::Tensor in_window = at::empty({n, 3}, opts);
  std::vector<std::vector<int64_t>> keys(2, std::vector<int64_t>(n));
  const int32_t* c = coords.data_ptr<int32_t>();
  int64_t* iw = in_window.data_ptr<int64_t>();
  std::atomic<int64_t> bad{-1};
  at::parallel_for(0, n, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int32_t* v = c + 4 * i;
      if (!dsvt_window_keys(v[0], v[1], v[2], v[3], spec, keys[0][i], keys[1][i], iw + 3 * i)) bad = i;
    }
  });
  TORCH_CHECK(bad < 0, "coords[", bad.load(), "] is outside the batch or sparse_shape ", sparse_shape);

  at::Tensor order = at::empty({2, n}, opts);
  int64_t* ord = order.data_ptr<int64_t>();
  at::parallel_for(0, 2, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      std::vector<int64_t> voxels(n);
      std::iota(voxels.begin(), voxels.end(), int64_t(0));
      radix_sort_pairs(keys[k], voxels, key_limit);
      std::copy(voxels.begin(), voxels.end(), ord + k * n);
    }
  });
  const int64_t volume = spec.window[0] * spec.window[1] * spec.window[2];
  // One (64-bit, slow) division per voxel: keys are sorted, so windows change monotonically.
  std::vector<int64_t> counts;
  int64_t previous_window = -1;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t window = keys[0][i] / volume;
    if (window != previous_window) counts.push_back(0), previous_window = window;
    ++counts.back();
  }
  at::Tensor window_counts = at::empty({static_cast<int64_t>(counts.size())}, opts);
  std::copy(counts.begin(), counts.end(), window_counts.data_ptr<int64_t>());
  return {order, window_counts, in_window};
}

}  // namespace

TORCH_LIBRARY_IMPL(pointformer, CPU, m) {
  m.impl("dsvt_set_index", &dsvt_set_index_cpu);
  m.impl("dsvt_window_order", &dsvt_window_order_cpu);
}

}  // namespace pointformer
