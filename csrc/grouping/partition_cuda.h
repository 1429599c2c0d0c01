// Launchers of the CUDA partition assembly kernels (raw pointers, no torch types). Per-sample
// tables (counts, sample_start, first_group) are (batch_size,) int64; group_sample is (G,).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace pointformer {

// group_index / key_mask (G, group_size): the voxel of every slot and whether it is padding.
cudaError_t launch_partition_slots(const int64_t* permutation, const int64_t* group_sample, const int64_t* counts,
                                   const int64_t* sample_start, const int64_t* first_group, int64_t num_groups,
                                   int64_t group_size, int64_t* group_index, bool* key_mask, cudaStream_t stream);

// slot_of_voxel (N,): the slot of each voxel's output.
cudaError_t launch_partition_voxel_slots(const int64_t* permutation, const int64_t* sample_of_voxel,
                                         const int64_t* sample_start, const int64_t* first_group, int64_t n,
                                         int64_t group_size, int64_t* slot_of_voxel, cudaStream_t stream);

}  // namespace pointformer
