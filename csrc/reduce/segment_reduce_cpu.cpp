// CPU segment reductions, "owner computes": each thread owns a contiguous range of segments,
// streams over all rows in input order and reduces the rows of its own segments. Reads of values
// are sequential, the accumulators of a thread stay in its cache, there are no atomics, and the
// result is deterministic (each output reduces its rows in input order).
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>

#include "segment_reduce_args.h"

namespace pointformer {
namespace {

// Splits [0, num_segments) into one range per thread.
template <typename F>
void for_each_segment_range(int64_t num_segments, const F& f) {
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t grain = std::max<int64_t>(1, (num_segments + threads - 1) / threads);
  at::parallel_for(0, num_segments, grain, f);
}

// Row updates. The float versions are cloned for AVX2 and dispatched at load time (GCC function
// multiversioning), so the extension stays portable while the hot loop gets 8-wide vectors.
template <typename scalar_t, typename acc_t>
inline void max_row(acc_t* __restrict a, const scalar_t* __restrict x, int64_t channels) {
  for (int64_t c = 0; c < channels; ++c) {
    const acc_t v = static_cast<acc_t>(x[c]);
    a[c] = v > a[c] ? v : a[c];
  }
}

template <typename scalar_t, typename acc_t>
inline void add_row(acc_t* __restrict a, const scalar_t* __restrict x, int64_t channels) {
  for (int64_t c = 0; c < channels; ++c) a[c] += static_cast<acc_t>(x[c]);
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define PF_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define PF_VECTOR_CLONES
#endif

template <>
PF_VECTOR_CLONES void max_row<float, float>(float* __restrict a, const float* __restrict x, int64_t channels) {
  for (int64_t c = 0; c < channels; ++c) a[c] = x[c] > a[c] ? x[c] : a[c];
}

template <>
PF_VECTOR_CLONES void add_row<float, float>(float* __restrict a, const float* __restrict x, int64_t channels) {
  for (int64_t c = 0; c < channels; ++c) a[c] += x[c];
}

// Max backward, per row i of segment s: record i as the first arg-max of each channel not yet
// claimed (first[c] < 0) where x equals the output; then the row's gradient: the output's gradient
// where i is that first arg-max, else 0. Branch-free selects over 32-bit lanes, so the float versions
// vectorise (row indices are int32: the wrapper checks N < 2^31).
template <typename scalar_t>
inline void claim_first_row(int32_t* __restrict first, const scalar_t* __restrict x, const scalar_t* __restrict o,
                            int32_t i, int64_t channels) {
  for (int64_t c = 0; c < channels; ++c) first[c] = (first[c] < 0 && x[c] == o[c]) ? i : first[c];
}

template <typename scalar_t>
inline void max_grad_row(scalar_t* __restrict g, const int32_t* __restrict first, const scalar_t* __restrict go,
                         int32_t i, int64_t channels) {
  for (int64_t c = 0; c < channels; ++c) g[c] = first[c] == i ? go[c] : scalar_t(0);
}

template <>
PF_VECTOR_CLONES void claim_first_row<float>(int32_t* __restrict first, const float* __restrict x,
                                             const float* __restrict o, int32_t i, int64_t channels) {
  for (int64_t c = 0; c < channels; ++c) first[c] = (first[c] < 0 && x[c] == o[c]) ? i : first[c];
}

template <>
PF_VECTOR_CLONES void max_grad_row<float>(float* __restrict g, const int32_t* __restrict first,
                                          const float* __restrict go, int32_t i, int64_t channels) {
  for (int64_t c = 0; c < channels; ++c) g[c] = first[c] == i ? go[c] : 0.0f;
}

template <typename scalar_t, typename acc_t>
void reduce_into(const scalar_t* __restrict x, const int64_t* __restrict segment, int64_t n, int64_t channels,
                 int64_t num_segments, Reduce reduce, acc_t* __restrict acc, int64_t* __restrict counts) {
  for_each_segment_range(num_segments, [&](int64_t s0, int64_t s1) {
    const acc_t init = reduce == Reduce::kMax ? -std::numeric_limits<acc_t>::infinity() : acc_t(0);
    std::fill(acc + s0 * channels, acc + s1 * channels, init);
    std::fill(counts + s0, counts + s1, 0);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t s = segment[i];
      if (s < s0 || s >= s1) continue;  // also skips ids outside [0, S)
      ++counts[s];
      if (reduce == Reduce::kMax) {
        max_row<scalar_t, acc_t>(acc + s * channels, x + i * channels, channels);
      } else {
        add_row<scalar_t, acc_t>(acc + s * channels, x + i * channels, channels);
      }
    }
    for (int64_t s = s0; s < s1; ++s) {
      acc_t* a = acc + s * channels;
      if (counts[s] == 0) {
        std::fill(a, a + channels, acc_t(0));
      } else if (reduce == Reduce::kMean) {
        const acc_t scale = acc_t(1) / static_cast<acc_t>(counts[s]);
        for (int64_t c = 0; c < channels; ++c) a[c] *= scale;
      }
    }
  });
}

// float and double accumulate in the output itself; half and bfloat16 in a float buffer.
template <typename scalar_t>
void reduce_to_output(const at::Tensor& values, const at::Tensor& segment, int64_t num_segments, Reduce reduce,
                      at::Tensor& out, at::Tensor& counts) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* x = values.data_ptr<scalar_t>();
  const int64_t* seg = segment.data_ptr<int64_t>();
  const int64_t n = values.size(0), channels = values.size(1);
  if constexpr (std::is_same_v<acc_t, scalar_t>) {
    reduce_into<scalar_t, acc_t>(x, seg, n, channels, num_segments, reduce, out.data_ptr<scalar_t>(),
                                 counts.data_ptr<int64_t>());
  } else {
    at::Tensor acc = at::empty(out.sizes(), values.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
    reduce_into<scalar_t, acc_t>(x, seg, n, channels, num_segments, reduce, acc.data_ptr<acc_t>(),
                                 counts.data_ptr<int64_t>());
    out.copy_(acc);
  }
}

std::tuple<at::Tensor, at::Tensor> segment_reduce_cpu(const at::Tensor& values_in, const at::Tensor& segment_in,
                                                      int64_t num_segments, c10::string_view reduce_name) {
  check_segment_args(values_in, segment_in, num_segments);
  const Reduce reduce = parse_reduce(reduce_name);
  const at::Tensor values = values_in.contiguous();
  const at::Tensor segment = segment_in.contiguous();
  at::Tensor out = at::empty({num_segments, values.size(1)}, values.options());
  at::Tensor counts = at::empty({num_segments}, values.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, values.scalar_type(), "segment_reduce_cpu", [&] {
    reduce_to_output<scalar_t>(values, segment, num_segments, reduce, out, counts);
  });
  return {out, counts};
}

// Writes every row of the (n, C) input gradient once, in parallel over rows: zeros for a row whose
// segment is outside [0, S), else row(g, s, i) for row i of segment s at g.
template <typename scalar_t, typename RowFn>
void write_grad_rows(scalar_t* gi, const int64_t* seg, int64_t n, int64_t channels, int64_t num_segments,
                     const RowFn& row) {
  at::parallel_for(0, n, 2048, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t s = seg[i];
      scalar_t* g = gi + i * channels;
      if (s < 0 || s >= num_segments) {
        std::fill(g, g + channels, scalar_t(0));
      } else {
        row(g, s, i);
      }
    }
  });
}

at::Tensor segment_reduce_backward_cpu(const at::Tensor& grad_out_in, const at::Tensor& segment_in,
                                       const at::Tensor& counts_in, const at::Tensor& values_in,
                                       const at::Tensor& out_in, c10::string_view reduce_name) {
  const Reduce reduce = parse_reduce(reduce_name);
  const at::Tensor grad_out = grad_out_in.contiguous();
  const at::Tensor segment = segment_in.contiguous();
  const at::Tensor counts = counts_in.contiguous();
  const int64_t num_segments = grad_out.size(0), channels = grad_out.size(1), n = segment.size(0);
  // Every entry of grad_in is written exactly once below (rows of ids outside [0, S) get zeros), so
  // it starts uninitialised: a zero fill of the (N, C) buffer was a large share of this op.
  at::Tensor grad_in = at::empty({n, channels}, grad_out.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_out.scalar_type(), "segment_reduce_bwd_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* go = grad_out.data_ptr<scalar_t>();
    const int64_t* seg = segment.data_ptr<int64_t>();
    scalar_t* gi = grad_in.data_ptr<scalar_t>();
    if (reduce == Reduce::kMax) {
      // The gradient goes to the first row (in input order) equal to the output. First the
      // (S, C) index of that row, owner computes (each thread streams the rows and looks only at
      // its own segments'); then every row written once, in parallel over rows.
      TORCH_CHECK(values_in.size(0) == n && out_in.sizes() == grad_out.sizes(),
                  "segment_reduce_backward for max needs the forward's values and output");
      const at::Tensor values = values_in.contiguous().to(grad_out.scalar_type());
      const at::Tensor out = out_in.contiguous().to(grad_out.scalar_type());
      const scalar_t* x = values.data_ptr<scalar_t>();
      const scalar_t* o = out.data_ptr<scalar_t>();
      TORCH_CHECK(n <= std::numeric_limits<int32_t>::max(), "segment_reduce_backward for max: at most 2^31 - 1 rows");
      at::Tensor first_row = at::full({num_segments, channels}, -1, segment.options().dtype(at::kInt));
      int32_t* first = first_row.data_ptr<int32_t>();
      for_each_segment_range(num_segments, [&](int64_t s0, int64_t s1) {
        for (int64_t i = 0; i < n; ++i) {
          const int64_t s = seg[i];
          if (s < s0 || s >= s1) continue;
          claim_first_row<scalar_t>(first + s * channels, x + i * channels, o + s * channels, static_cast<int32_t>(i),
                                    channels);
        }
      });
      write_grad_rows(gi, seg, n, channels, num_segments, [&](scalar_t* g, int64_t s, int64_t i) {
        max_grad_row<scalar_t>(g, first + s * channels, go + s * channels, static_cast<int32_t>(i), channels);
      });
      return;
    }
    const int64_t* cnt = counts.data_ptr<int64_t>();
    write_grad_rows(gi, seg, n, channels, num_segments, [&](scalar_t* g, int64_t s, int64_t) {
      const acc_t scale = reduce == Reduce::kMean ? acc_t(1) / static_cast<acc_t>(cnt[s]) : acc_t(1);
      for (int64_t c = 0; c < channels; ++c)
        g[c] = static_cast<scalar_t>(static_cast<acc_t>(go[s * channels + c]) * scale);
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
