// Argument checks shared by the CPU and CUDA box wrappers.
#pragma once
#include <ATen/ATen.h>

#include "../common/checks.h"

namespace pointformer {

inline void check_boxes(const at::Tensor& boxes, const char* name) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) >= 7, name,
              " must have shape (N, >=7) as [x, y, z, dx, dy, dz, heading, ...], got ", boxes.sizes());
  TORCH_CHECK(boxes.scalar_type() == at::kFloat || boxes.scalar_type() == at::kDouble, name,
              " must be float32 or float64, got ", boxes.scalar_type());
}

}  // namespace pointformer
