// Slot arithmetic of an equal-size partition (pointformer/ops/grouping/assembly.py,
// ops.grouping.partition_from_sorted), shared by the CPU and CUDA kernels.
#pragma once
#include "macros.h"

namespace pointformer {

// Position, within its sample's sorted voxels, of the voxel that fills slot p (0-based over the
// sample's padded slots) of a sample with `count` voxels and groups of `group_size`. Real slots
// (p < count) hold voxel p; a padded slot repeats the same slot of the previous group (FlatFormer),
// or, in a sample smaller than one group, the sample's voxels cyclically.
PF_HD int64_t padded_slot_source(int64_t p, int64_t count, int64_t group_size) {
  if (p < count) return p;
  return p - group_size >= 0 ? p - group_size : p % count;
}

}  // namespace pointformer
