// CUDA partition assembly: one thread per slot, then one per voxel. The slot rule is
// csrc/common/partition_slots.h, shared with the CPU kernel.
#include "../common/cuda_helpers.cuh"
#include "../common/partition_slots.h"
#include "partition_cuda.h"

namespace pointformer {
namespace {

__global__ void partition_slots_kernel(const int64_t* permutation, const int64_t* group_sample, const int64_t* counts,
                                       const int64_t* sample_start, const int64_t* first_group, int64_t num_groups,
                                       int64_t group_size, int64_t* group_index, bool* key_mask) {
  PF_GRID_STRIDE(idx, num_groups * group_size) {
    const int64_t g = idx / group_size;
    const int64_t b = group_sample[g];
    const int64_t p = (g - first_group[b]) * group_size + idx % group_size;
    group_index[idx] = permutation[sample_start[b] + padded_slot_source(p, counts[b], group_size)];
    key_mask[idx] = p >= counts[b];
  }
}

__global__ void partition_voxel_slots_kernel(const int64_t* permutation, const int64_t* sample_of_voxel,
                                             const int64_t* sample_start, const int64_t* first_group, int64_t n,
                                             int64_t group_size, int64_t* slot_of_voxel) {
  PF_GRID_STRIDE(q, n) {
    const int64_t v = permutation[q];
    const int64_t b = sample_of_voxel[v];
    slot_of_voxel[v] = first_group[b] * group_size + (q - sample_start[b]);
  }
}

}  // namespace

cudaError_t launch_partition_slots(const int64_t* permutation, const int64_t* group_sample, const int64_t* counts,
                                   const int64_t* sample_start, const int64_t* first_group, int64_t num_groups,
                                   int64_t group_size, int64_t* group_index, bool* key_mask, cudaStream_t stream) {
  const int64_t total = num_groups * group_size;
  if (total == 0) return cudaSuccess;
  partition_slots_kernel<<<grid_for(total), kThreads, 0, stream>>>(
      permutation, group_sample, counts, sample_start, first_group, num_groups, group_size, group_index, key_mask);
  return cudaGetLastError();
}

cudaError_t launch_partition_voxel_slots(const int64_t* permutation, const int64_t* sample_of_voxel,
                                         const int64_t* sample_start, const int64_t* first_group, int64_t n,
                                         int64_t group_size, int64_t* slot_of_voxel, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  partition_voxel_slots_kernel<<<grid_for(n), kThreads, 0, stream>>>(permutation, sample_of_voxel, sample_start,
                                                                     first_group, n, group_size, slot_of_voxel);
  return cudaGetLastError();
}

}  // namespace pointformer
