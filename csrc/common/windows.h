// Window arithmetic of the window-based layouts (pointformer/ops/grouping/windows.py), shared by
// the CPU and CUDA kernels. No torch headers.
#pragma once
#include "macros.h"

namespace pointformer {

// Splits cell coordinate `c` of one axis, shifted by `shift`, into its window `c' / w` and its
// in-window coordinate `c' % w` (c' = c + shift >= 0, so / and % are the floor ones). Callers keep
// c, shift and w in [0, 2^31): c' < 2^32 then, and 32-bit division (several times faster than
// 64-bit on common CPUs) is exact.
PF_HD void window_split(int64_t c, int64_t shift, int64_t w, int64_t& window, int64_t& in_window) {
  const uint32_t shifted = static_cast<uint32_t>(c + shift), size = static_cast<uint32_t>(w);
  const uint32_t q = shifted / size;
  window = q;
  in_window = shifted - q * size;
}

// Windows along an axis of `size` cells: ceil(size / window) + 1, the "+1" leaving room for a shift
// (FlatFormer's and DSVT's window counts; windows_per_axis in pointformer/ops/grouping/windows.py).
PF_HD int64_t windows_along_axis(int64_t size, int64_t window) { return (size + window - 1) / window + 1; }

}  // namespace pointformer
