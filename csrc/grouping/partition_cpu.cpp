// CPU assembly of an equal-size partition from voxels already in group order: the padded group
// index, key mask, output slot of each voxel and the variable-length offsets, in one pass per
// output (the Python reference is ops.grouping.partition_from_sorted_reference).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../common/partition_slots.h"
#include "partition_args.h"

namespace pointformer {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> partition_from_sorted_cpu(
    const at::Tensor& permutation_in, const at::Tensor& sample_in, int64_t batch_size, int64_t group_size) {
  check_partition_args(permutation_in, sample_in, batch_size, group_size);
  const at::Tensor permutation = permutation_in.contiguous();
  const at::Tensor sample = sample_in.contiguous();
  const int64_t n = permutation.size(0);
  const int64_t* perm = permutation.data_ptr<int64_t>();
  const int64_t* sample_of = sample.data_ptr<int64_t>();

  std::vector<int64_t> counts(batch_size, 0), sample_start(batch_size), first_group(batch_size);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t b = sample_of[i];
    TORCH_CHECK(b >= 0 && b < batch_size, "sample ids must lie in [0, batch_size)");
    ++counts[b];
  }
  int64_t num_groups = 0, start = 0;
  for (int64_t b = 0; b < batch_size; ++b) {
    sample_start[b] = start;
    first_group[b] = num_groups;
    start += counts[b];
    num_groups += (counts[b] + group_size - 1) / group_size;
  }

  const auto long_opts = permutation.options();
  at::Tensor offsets = at::empty({num_groups + 1}, long_opts);
  at::Tensor group_sample = at::empty({num_groups}, long_opts);
  at::Tensor group_index = at::empty({num_groups, group_size}, long_opts);
  at::Tensor key_mask = at::empty({num_groups, group_size}, long_opts.dtype(at::kBool));
  at::Tensor slot_of_voxel = at::empty({n}, long_opts);
  int64_t* off = offsets.data_ptr<int64_t>();
  int64_t* gs = group_sample.data_ptr<int64_t>();
  int64_t* gi = group_index.data_ptr<int64_t>();
  bool* mask = key_mask.data_ptr<bool>();
  int64_t* slot = slot_of_voxel.data_ptr<int64_t>();

  for (int64_t b = 0; b < batch_size; ++b) {
    const int64_t groups = (counts[b] + group_size - 1) / group_size;
    for (int64_t j = 0; j < groups; ++j) {
      off[first_group[b] + j] = sample_start[b] + j * group_size;
      gs[first_group[b] + j] = b;
    }
  }
  off[num_groups] = n;
  // Each group's slots depend only on its sample; groups are independent.
  at::parallel_for(0, num_groups, 256, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t b = gs[g];
      const int64_t p0 = (g - first_group[b]) * group_size;
      for (int64_t s = 0; s < group_size; ++s) {
        const int64_t p = p0 + s;
        gi[g * group_size + s] = perm[sample_start[b] + padded_slot_source(p, counts[b], group_size)];
        mask[g * group_size + s] = p >= counts[b];
      }
    }
  });
  // Sorted position q of sample b sits in slot first_group[b] * S + (q - sample_start[b]).
  at::parallel_for(0, n, 4096, [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t v = perm[q];
      const int64_t b = sample_of[v];
      slot[v] = first_group[b] * group_size + (q - sample_start[b]);
    }
  });
  return {offsets, group_sample, group_index, key_mask, slot_of_voxel};
}

}  // namespace

TORCH_LIBRARY_IMPL(pointformer, CPU, m) { m.impl("partition_from_sorted", &partition_from_sorted_cpu); }

}  // namespace pointformer
