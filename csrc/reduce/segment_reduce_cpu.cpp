// CPU segment reductions. Rows are first grouped by segment with a stable counting sort (CSR),
// then each segment is reduced over contiguous channel rows in parallel: no atomics, no index
// expansion to (N, C) as scatter_reduce needs, and a deterministic arg-max (the first row in input
// order among equal maxima).
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "segment_reduce_args.h"

namespace pointformer {
namespace {

struct SegmentCsr {
  std::vector<int64_t> offsets;  // (S + 1,)
  std::vector<int64_t> rows;     // row indices grouped by segment, input order inside a segment
};

SegmentCsr build_csr(const int64_t* segment, int64_t n, int64_t num_segments) {
  SegmentCsr csr;
  csr.offsets.assign(num_segments + 1, 0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t s = segment[i];
    if (s >= 0 && s < num_segments) ++csr.offsets[s + 1];
  }
  for (int64_t s = 0; s < num_segments; ++s) csr.offsets[s + 1] += csr.offsets[s];
  csr.rows.resize(csr.offsets[num_segments]);
  std::vector<int64_t> fill(csr.offsets.begin(), csr.offsets.end() - 1);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t s = segment[i];
    if (s >= 0 && s < num_segments) csr.rows[fill[s]++] = i;
  }
  return csr;
}

template <typename scalar_t>
void reduce_segments(const SegmentCsr& csr, const scalar_t* x, int64_t channels, Reduce reduce, scalar_t* out,
                     int64_t* arg) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t num_segments = static_cast<int64_t>(csr.offsets.size()) - 1;
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(channels, 1));
  at::parallel_for(0, num_segments, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(channels);
    for (int64_t s = begin; s < end; ++s) {
      const int64_t r0 = csr.offsets[s], r1 = csr.offsets[s + 1];
      scalar_t* o = out + s * channels;
      if (reduce == Reduce::kMax) {
        int64_t* a = arg + s * channels;
        if (r0 == r1) {
          for (int64_t c = 0; c < channels; ++c) o[c] = scalar_t(0), a[c] = -1;
          continue;
        }
        const int64_t first = csr.rows[r0];
        for (int64_t c = 0; c < channels; ++c) o[c] = x[first * channels + c], a[c] = first;
        for (int64_t r = r0 + 1; r < r1; ++r) {
          const int64_t row = csr.rows[r];
          const scalar_t* xr = x + row * channels;
          for (int64_t c = 0; c < channels; ++c) {
            if (xr[c] > o[c]) o[c] = xr[c], a[c] = row;
          }
        }
      } else {
        std::fill(acc.begin(), acc.end(), acc_t(0));
        for (int64_t r = r0; r < r1; ++r) {
          const scalar_t* xr = x + csr.rows[r] * channels;
          for (int64_t c = 0; c < channels; ++c) acc[c] += static_cast<acc_t>(xr[c]);
        }
        const acc_t scale = (reduce == Reduce::kMean && r1 > r0) ? acc_t(1) / acc_t(r1 - r0) : acc_t(1);
        for (int64_t c = 0; c < channels; ++c) o[c] = static_cast<scalar_t>(acc[c] * scale);
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> segment_reduce_cpu(const at::Tensor& values_in, const at::Tensor& segment_in,
                                                      int64_t num_segments, c10::string_view reduce_name) {
  check_segment_args(values_in, segment_in, num_segments);
  const Reduce reduce = parse_reduce(reduce_name);
  const at::Tensor values = values_in.contiguous();
  const at::Tensor segment = segment_in.contiguous();
  const int64_t n = values.size(0), channels = values.size(1);
  const SegmentCsr csr = build_csr(segment.data_ptr<int64_t>(), n, num_segments);

  at::Tensor out = at::empty({num_segments, channels}, values.options());
  at::Tensor aux;
  if (reduce == Reduce::kMax) {
    aux = at::empty({num_segments, channels}, values.options().dtype(at::kLong));
  } else {
    aux = at::empty({num_segments}, values.options().dtype(at::kLong));
    int64_t* counts = aux.data_ptr<int64_t>();
    for (int64_t s = 0; s < num_segments; ++s) counts[s] = csr.offsets[s + 1] - csr.offsets[s];
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, values.scalar_type(), "segment_reduce_cpu", [&] {
    reduce_segments<scalar_t>(csr, values.data_ptr<scalar_t>(), channels, reduce, out.data_ptr<scalar_t>(),
                              reduce == Reduce::kMax ? aux.data_ptr<int64_t>() : nullptr);
  });
  return {out, aux};
}

at::Tensor segment_reduce_backward_cpu(const at::Tensor& grad_out_in, const at::Tensor& segment_in,
                                       const at::Tensor& aux_in, int64_t num_values, c10::string_view reduce_name) {
  const Reduce reduce = parse_reduce(reduce_name);
  const at::Tensor grad_out = grad_out_in.contiguous();
  const at::Tensor segment = segment_in.contiguous();
  const at::Tensor aux = aux_in.contiguous();
  const int64_t num_segments = grad_out.size(0), channels = grad_out.size(1);
  TORCH_CHECK(segment.size(0) == num_values, "segment must have num_values entries");
  at::Tensor grad_in = at::zeros({num_values, channels}, grad_out.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_out.scalar_type(), "segment_reduce_bwd_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* go = grad_out.data_ptr<scalar_t>();
    scalar_t* gi = grad_in.data_ptr<scalar_t>();
    const int64_t* aux_ptr = aux.data_ptr<int64_t>();
    if (reduce == Reduce::kMax) {
      // Each arg-max row belongs to one segment, so segments write disjoint entries.
      at::parallel_for(0, num_segments, 256, [&](int64_t begin, int64_t end) {
        for (int64_t s = begin; s < end; ++s) {
          for (int64_t c = 0; c < channels; ++c) {
            const int64_t row = aux_ptr[s * channels + c];
            if (row >= 0) gi[row * channels + c] = go[s * channels + c];
          }
        }
      });
      return;
    }
    const int64_t* seg = segment.data_ptr<int64_t>();
    at::parallel_for(0, num_values, 1024, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t s = seg[i];
        if (s < 0 || s >= num_segments) continue;
        const acc_t scale = reduce == Reduce::kMean ? acc_t(1) / acc_t(aux_ptr[s]) : acc_t(1);
        for (int64_t c = 0; c < channels; ++c)
          gi[i * channels + c] = static_cast<scalar_t>(static_cast<acc_t>(go[s * channels + c]) * scale);
      }
    });
  });
  return grad_in;
}

}  // namespace

TORCH_LIBRARY_IMPL(pointformer, CPU, m) {
  m.impl("segment_reduce", &segment_reduce_cpu);
  m.impl("segment_reduce_backward", &segment_reduce_backward_cpu);
}

}  // namespace pointformer
