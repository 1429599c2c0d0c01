// DSVT's dynamic set sampling (pointformer/ops/grouping/rotated_sets.py), shared by the CPU and
// CUDA kernels of `dsvt_set_index`. No torch headers.
#pragma once
#include "macros.h"

namespace pointformer {

// S_w = ceil(n / tau) sets for a window of n voxels.
PF_HD int64_t dsvt_num_sets(int64_t n, int64_t tau) { return (n + tau - 1) / tau; }

// In-window rank of the voxel in slot `slot` of set `set_in_window`: floor((i * tau + j) * n /
// (S_w * tau)). The official code divides in float64; integer division gives the same floor while
// n * S_w * tau < 2^53 (the Python wrapper checks that bound; the proof is in rotated_sets.py).
PF_HD int64_t dsvt_slot_rank(int64_t set_in_window, int64_t slot, int64_t n, int64_t num_sets, int64_t tau) {
  return ((set_in_window * tau + slot) * n) / (num_sets * tau);
}

// Writes slot `slot` of set `set` (set `set_in_window` of a window of n voxels starting at
// `window_start` in each order) for every order k: index[k][set][slot] is the voxel and
// mask[k][set][slot] is true when it repeats the previous slot's voxel (never for slot 0).
// sorted: (num_orders, num_voxels); index, mask: (num_orders, num_sets_total, tau).
PF_HD void dsvt_fill_slot(const int64_t* sorted, int64_t num_voxels, int64_t num_orders, int64_t window_start,
                          int64_t n, int64_t set_in_window, int64_t set, int64_t num_sets_total, int64_t slot,
                          int64_t tau, int64_t* index, bool* mask) {
  const int64_t num_sets = dsvt_num_sets(n, tau);
  const int64_t rank = dsvt_slot_rank(set_in_window, slot, n, num_sets, tau);
  const int64_t prev_rank = slot > 0 ? dsvt_slot_rank(set_in_window, slot - 1, n, num_sets, tau) : -1;
  for (int64_t k = 0; k < num_orders; ++k) {
    const int64_t* list = sorted + k * num_voxels + window_start;
    const int64_t voxel = list[rank];
    const int64_t out = (k * num_sets_total + set) * tau + slot;
    index[out] = voxel;
    mask[out] = prev_rank >= 0 && list[prev_rank] == voxel;
  }
}

}  // namespace pointformer
