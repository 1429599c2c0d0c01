// Validation shared by the CPU and CUDA serialization_codes wrappers (torch-facing).
#pragma once
#include <ATen/ATen.h>

#include <string_view>

#include "../common/space_filling_curves.h"

namespace pointformer {

inline CurveOrder parse_curve_order(std::string_view order) {
  if (order == "z") return CurveOrder::kZ;
  if (order == "z-trans") return CurveOrder::kZTrans;
  if (order == "hilbert") return CurveOrder::kHilbert;
  TORCH_CHECK(order == "hilbert-trans", "order must be one of z, z-trans, hilbert, hilbert-trans, got ", order);
  return CurveOrder::kHilbertTrans;
}

inline void check_serialization_args(const at::Tensor& coords, int64_t depth) {
  TORCH_CHECK(coords.dim() == 2 && coords.size(1) == 4 && coords.scalar_type() == at::kInt,
              "coords must be int32 (N, 4) (batch, z, y, x), got ", coords.scalar_type(), " ", coords.sizes());
  TORCH_CHECK(depth >= 0 && depth <= kMaxCurveDepth, "depth must be in [0, ", kMaxCurveDepth, "], got ", depth);
}

}  // namespace pointformer
