// DSVT's dynamic set sampling (pointformer/ops/grouping/rotated_sets.py), shared by the CPU and
// CUDA kernels of `dsvt_set_index`. No torch headers.
#pragma once
#include "macros.h"
#include "windows.h"

namespace pointformer {

// A window configuration of `dsvt_window_order` (rotated_set_keys in rotated_sets.py), all (z, y, x).
struct DsvtWindowSpec {
  int64_t shape[3];    // grid (Z, Y, X)
  int64_t window[3];   // (wz, wy, wx)
  int64_t shift[3];    // (sz, sy, sx), each in [0, w]
  int64_t windows[3];  // (Wz, Wy, Wx) = ceil(shape / window) + 1
  int64_t batch_size;
};

// Sort keys of voxel (b, z, y, x) in the two in-window orders: window_id * wz * wy * wx + the y-major
// key (y * wx + x) * wz + z (key_y) or the x-major key (x * wy + y) * wz + z (key_x), of in-window
// coordinates, with window_id = b * Wz * Wy * Wx + (win_x * Wy + win_y) * Wz + win_z; writes the
// in-window (z, y, x). Returns false (and writes nothing) for a voxel outside the grid or batch.
PF_HD bool dsvt_window_keys(int64_t b, int64_t z, int64_t y, int64_t x, const DsvtWindowSpec& spec, int64_t& key_y,
                            int64_t& key_x, int64_t* in_window) {
  if (b < 0 || b >= spec.batch_size || z < 0 || z >= spec.shape[0] || y < 0 || y >= spec.shape[1] || x < 0 ||
      x >= spec.shape[2]) {
    return false;
  }
  const int64_t wz = spec.window[0], wy = spec.window[1], wx = spec.window[2];
  int64_t win_z, win_y, win_x, iz, iy, ix;
  window_split(z, spec.shift[0], wz, win_z, iz);
  window_split(y, spec.shift[1], wy, win_y, iy);
  window_split(x, spec.shift[2], wx, win_x, ix);
  const int64_t window_id = b * (spec.windows[0] * spec.windows[1] * spec.windows[2]) +
                            (win_x * spec.windows[1] + win_y) * spec.windows[0] + win_z;
  const int64_t base = window_id * (wz * wy * wx);
  key_y = base + (iy * wx + ix) * wz + iz;
  key_x = base + (ix * wy + iy) * wz + iz;
  in_window[0] = iz;
  in_window[1] = iy;
  in_window[2] = ix;
  return true;
}

// Floor division of non-negative a by positive b, in 32 bits when both fit: the same integer, and
// 32-bit division is several times faster than 64-bit on common CPUs. Within a window every
// operand below stays under (n + tau) * n, so the 32-bit path is the one taken in practice.
PF_HD int64_t dsvt_div(int64_t a, int64_t b) {
  if ((static_cast<uint64_t>(a) | static_cast<uint64_t>(b)) <= 0xFFFFFFFFull) {
    return static_cast<int64_t>(static_cast<uint32_t>(a) / static_cast<uint32_t>(b));
  }
  return a / b;
}

// S_w = ceil(n / tau) sets for a window of n voxels.
PF_HD int64_t dsvt_num_sets(int64_t n, int64_t tau) { return dsvt_div(n + tau - 1, tau); }

// In-window rank of the voxel in slot `slot` of set `set_in_window`: floor((i * tau + j) * n /
// (S_w * tau)). The official code divides in float64; integer division gives the same floor while
// n * S_w * tau < 2^53 (the Python wrapper checks that bound; the proof is in rotated_sets.py).
PF_HD int64_t dsvt_slot_rank(int64_t set_in_window, int64_t slot, int64_t n, int64_t num_sets, int64_t tau) {
  return dsvt_div((set_in_window * tau + slot) * n, num_sets * tau);
}

// First flat slot t = i * tau + j of a window (of n voxels, S_w sets) that samples in-window rank
// `rank`: the ranks floor(t * n / (S_w * tau)) are non-decreasing in t, step by at most 1 (S_w * tau
// >= n) and cover 0..n-1, so rank r first appears at the smallest t with t * n >= r * S_w * tau.
PF_HD int64_t dsvt_first_slot(int64_t rank, int64_t n, int64_t num_sets, int64_t tau) {
  return dsvt_div(rank * (num_sets * tau) + n - 1, n);
}

// Distinct voxels in the sets before set `set_in_window` of its window = ranks whose first slot is
// below i * tau = (rank of the previous set's last slot) + 1, and 0 for the first set. Set i holds
// the first occurrences of the ranks from this value up to the next set's.
PF_HD int64_t dsvt_ranks_before_set(int64_t set_in_window, int64_t n, int64_t num_sets, int64_t tau) {
  return set_in_window == 0 ? 0 : dsvt_slot_rank(set_in_window - 1, tau - 1, n, num_sets, tau) + 1;
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

// The sets' Partition views in closed form (Partition.from_padded computes them by a scatter and an
// argsort): a voxel's output slot is its first slot, so in the variable-length view, ordered by
// first slot, the voxels come window by window in in-window order (the `sorted` lists themselves)
// and set i of a window starts at its window's start + dsvt_ranks_before_set(i).
PF_HD int64_t dsvt_set_offset(int64_t window_start, int64_t n, int64_t set_in_window, int64_t tau) {
  return window_start + dsvt_ranks_before_set(set_in_window, n, dsvt_num_sets(n, tau), tau);
}

// slot_of_voxel[k][v] = first_set * tau + dsvt_first_slot(rank) for the voxel v at in-window
// position `rank` of each order k, in a window of n voxels whose sets start at `first_set`.
// slot_of_voxel: (num_orders, num_voxels).
PF_HD void dsvt_fill_first_slot(const int64_t* sorted, int64_t num_voxels, int64_t num_orders, int64_t window_start,
                                int64_t n, int64_t first_set, int64_t rank, int64_t tau, int64_t* slot_of_voxel) {
  const int64_t slot = first_set * tau + dsvt_first_slot(rank, n, dsvt_num_sets(n, tau), tau);
  for (int64_t k = 0; k < num_orders; ++k) {
    slot_of_voxel[k * num_voxels + sorted[k * num_voxels + window_start + rank]] = slot;
  }
}

}  // namespace pointformer
