// CPU scattered_window_keys (one key per voxel, csrc/common/scattered_keys.h, in parallel) and
// sort_window_keys (a stable radix sort of bounded keys, then the runs of equal keys).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../common/sort_cpu.h"
#include "scattered_args.h"

namespace pointformer {
namespace {

at::Tensor scattered_window_keys_cpu(const at::Tensor& coords_in, at::IntArrayRef sparse_shape,
                                     at::IntArrayRef window_shape, bool shift) {
  const ScatteredWindowSpec spec = make_scattered_window_spec(coords_in, sparse_shape, window_shape, shift);
  const at::Tensor coords = coords_in.contiguous();
  const int64_t n = coords.size(0);
  at::Tensor keys = at::empty({n}, coords.options().dtype(at::kLong));
  const int32_t* c = coords.data_ptr<int32_t>();
  int64_t* k = keys.data_ptr<int64_t>();
  at::parallel_for(0, n, 16384, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int32_t* v = c + 4 * i;
      k[i] = scattered_window_key(v[0], v[1], v[2], v[3], spec);
    }
  });
  return keys;
}

// Stable sort of keys in [0, num_keys): a counting sort when the key range is at most a few times
// the number of keys (ScatterFormer's windows: a few thousand per sample), whose bins give the runs
// directly; otherwise a radix sort, then a scan for the runs.
std::tuple<at::Tensor, at::Tensor, at::Tensor> sort_window_keys_cpu(const at::Tensor& keys_in, int64_t num_keys) {
  check_sort_window_keys(keys_in, num_keys);
  const at::Tensor keys = keys_in.contiguous();
  const int64_t n = keys.size(0);
  const int64_t* k = keys.data_ptr<int64_t>();
  const auto options = keys.options();
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK(k[i] >= 0 && k[i] < num_keys, "sort_window_keys: key ", k[i], " of element ", i,
                " is outside [0, num_keys = ", num_keys, ")");
  }
  at::Tensor permutation = at::empty({n}, options);
  int64_t* perm = permutation.data_ptr<int64_t>();
  if (num_keys <= 4 * n + 65536) {
    std::vector<int64_t> start(num_keys, 0);
    for (int64_t i = 0; i < n; ++i) ++start[k[i]];
    int64_t groups = 0;
    for (int64_t key = 0; key < num_keys; ++key) groups += start[key] != 0;
    at::Tensor offsets = at::empty({groups + 1}, options);
    at::Tensor run_keys = at::empty({groups}, options);
    int64_t* off = offsets.data_ptr<int64_t>();
    int64_t* run = run_keys.data_ptr<int64_t>();
    int64_t g = 0, pos = 0;
    for (int64_t key = 0; key < num_keys; ++key) {
      const int64_t count = start[key];
      if (count != 0) {
        off[g] = pos;
        run[g++] = key;
      }
      start[key] = pos;
      pos += count;
    }
    off[groups] = n;
    for (int64_t i = 0; i < n; ++i) perm[start[k[i]]++] = i;
    return {permutation, offsets, run_keys};
  }
  std::vector<int64_t> sorted(k, k + n), order(n);
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  radix_sort_pairs(sorted, order, num_keys);
  const std::vector<int64_t> starts = run_starts(sorted);
  const int64_t groups = static_cast<int64_t>(starts.size()) - 1;
  at::Tensor offsets = at::empty({groups + 1}, options);
  at::Tensor run_keys = at::empty({groups}, options);
  std::copy(order.begin(), order.end(), perm);
  std::copy(starts.begin(), starts.end(), offsets.data_ptr<int64_t>());
  int64_t* run = run_keys.data_ptr<int64_t>();
  for (int64_t g = 0; g < groups; ++g) run[g] = sorted[starts[g]];
  return {permutation, offsets, run_keys};
}

}  // namespace

TORCH_LIBRARY_IMPL(pointformer, CPU, m) {
  m.impl("scattered_window_keys", &scattered_window_keys_cpu);
  m.impl("sort_window_keys", &sort_window_keys_cpu);
}

}  // namespace pointformer
