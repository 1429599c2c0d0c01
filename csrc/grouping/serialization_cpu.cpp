// CPU space-filling-curve codes: one independent code per voxel (csrc/common/space_filling_curves.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "serialization_args.h"

namespace pointformer {
namespace {

at::Tensor serialization_codes_cpu(const at::Tensor& coords_in, int64_t depth, c10::string_view order_name) {
  check_serialization_args(coords_in, depth);
  const CurveOrder order = parse_curve_order(std::string_view(order_name.data(), order_name.size()));
  const at::Tensor coords = coords_in.contiguous();
  const int64_t n = coords.size(0);
  at::Tensor codes = at::empty({n}, coords.options().dtype(at::kLong));
  const int32_t* c = coords.data_ptr<int32_t>();
  int64_t* out = codes.data_ptr<int64_t>();
  const int d = static_cast<int>(depth);
  at::parallel_for(0, n, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = serialization_code(c + 4 * i, d, order);
  });
  return codes;
}

}  // namespace

TORCH_LIBRARY_IMPL(pointformer, CPU, m) { m.impl("serialization_codes", &serialization_codes_cpu); }

}  // namespace pointformer
