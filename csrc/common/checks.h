// Argument checks shared by the torch-facing kernel wrappers (CPU and CUDA .cpp files).
#pragma once
#include <ATen/ATen.h>

#define PF_CHECK_ROWS(t, min_cols, name)                                                                        \
  TORCH_CHECK((t).dim() == 2 && (t).size(1) >= (min_cols), name " must have shape (N, >=", min_cols, "), got ", \
              (t).sizes())

#define PF_CHECK_FLOATING(t, name) \
  TORCH_CHECK(at::isFloatingType((t).scalar_type()), name " must be a floating tensor, got ", (t).scalar_type())
