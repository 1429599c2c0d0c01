// Window arithmetic of the window-based layouts (pointformer/ops/grouping/windows.py), shared by
// the CPU and CUDA kernels. No torch headers.
#pragma once
#include "macros.h"

namespace pointformer {

// Splits cell coordinate `c` of one axis, shifted by `shift`, into its window `c' / w` and its
// in-window coordinate `c' % w` (c' = c + shift >= 0, so / and % are the floor ones).
PF_HD void window_split(int64_t c, int64_t shift, int64_t w, int64_t& window, int64_t& in_window) {
  const int64_t shifted = c + shift;
  window = shifted / w;
  in_window = shifted - window * w;
}

}  // namespace pointformer
