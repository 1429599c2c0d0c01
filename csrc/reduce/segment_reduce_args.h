// Argument checks and the reduction enum shared by the CPU and CUDA segment_reduce wrappers.
#pragma once
#include <ATen/ATen.h>

#include <string>

#include "../common/checks.h"

namespace pointformer {

enum class Reduce { kSum = 0, kMean = 1, kMax = 2 };

inline Reduce parse_reduce(c10::string_view reduce) {
  if (reduce == "sum") return Reduce::kSum;
  if (reduce == "mean") return Reduce::kMean;
  if (reduce == "max") return Reduce::kMax;
  TORCH_CHECK(false, "reduce must be one of 'sum', 'mean', 'max', got '", std::string(reduce), "'");
}

inline void check_segment_args(const at::Tensor& values, const at::Tensor& segment, int64_t num_segments) {
  TORCH_CHECK(values.dim() == 2, "values must have shape (N, C), got ", values.sizes());
  PF_CHECK_FLOATING(values, "values");
  TORCH_CHECK(segment.dim() == 1 && segment.size(0) == values.size(0),
              "segment must have shape (N,) matching values, got ", segment.sizes());
  TORCH_CHECK(segment.scalar_type() == at::kLong, "segment must be int64, got ", segment.scalar_type());
  TORCH_CHECK(segment.device() == values.device(), "segment must be on the values' device");
  TORCH_CHECK(num_segments >= 0, "num_segments must be >= 0, got ", num_segments);
}

}  // namespace pointformer
