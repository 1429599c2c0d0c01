// CPU flattened_window_keys: one key per voxel (csrc/common/flattened_keys.h), in parallel.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "flattened_args.h"

namespace pointformer {
namespace {

at::Tensor flattened_window_keys_cpu(const at::Tensor& coords_in, at::IntArrayRef sparse_shape,
                                     at::IntArrayRef window_shape, c10::string_view axis, bool shift) {
  const FlatWindowSpec spec = make_flat_window_spec(coords_in, sparse_shape, window_shape, axis, shift);
  const at::Tensor coords = coords_in.contiguous();
  const int64_t n = coords.size(0);
  at::Tensor keys = at::empty({n}, coords.options().dtype(at::kLong));
  const int32_t* c = coords.data_ptr<int32_t>();
  int64_t* k = keys.data_ptr<int64_t>();
  at::parallel_for(0, n, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int32_t* v = c + 4 * i;
      k[i] = flattened_window_key(v[0], v[1], v[2], v[3], spec);
    }
  });
  return keys;
}

}  // namespace

TORCH_LIBRARY_IMPL(pointformer, CPU, m) { m.impl("flattened_window_keys", &flattened_window_keys_cpu); }

}  // namespace pointformer
