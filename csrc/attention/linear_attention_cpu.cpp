// CPU scattered linear attention (ScatterFormer's SLA), forward and backward.
//
// Work unit: one (window, head) task. A task streams its window's rows twice in the forward
// (accumulate KV and s, then write the outputs) and three times in the backward (KV and s, then the
// query pass writing dq and accumulating dKV and ds, then the key pass writing dk and dv), so a
// task needs no other task's result: no atomics, no cross-thread reductions, and every output is
// computed in a fixed order (bitwise-deterministic reruns, whatever the thread count).
//
// Balance: tasks are ordered window-major and cut into one contiguous range per thread with equal
// row counts (sla_task_at_cost), so a few long windows do not leave a thread idle; one window's
// heads may land on different threads. Inner loops all run over a contiguous D-vector (axpy
// form: a row times a matrix goes row by row of the matrix, a matrix times a row uses the
// transpose), which the compiler vectorizes; D = 16, 32, 64 get compile-time trip counts, and the
// float kernels are also cloned for AVX2 + FMA (dispatched at load time).
//
// The math (phi, normalizer, gradient of the normalizer, task balance) is csrc/attention/
// linear_attention.h, shared with the CUDA kernels.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "linear_attention.h"
#include "linear_attention_args.h"

namespace pointformer {
namespace {

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define PF_SLA_CLONES __attribute__((target_clones("arch=haswell", "default")))
#else
#define PF_SLA_CLONES
#endif

struct SlaProblem {
  const int64_t* offsets;
  int64_t windows, heads, channels, head_dim;
};

template <typename scalar_t, typename acc_t>
inline void load_row(acc_t* __restrict out, const scalar_t* __restrict x, int64_t d) {
  for (int64_t a = 0; a < d; ++a) out[a] = static_cast<acc_t>(x[a]);
}

template <typename scalar_t, typename acc_t>
inline void load_phi_row(acc_t* __restrict out, const scalar_t* __restrict x, int64_t d) {
  for (int64_t a = 0; a < d; ++a) out[a] = sla_phi(static_cast<acc_t>(x[a]));
}

template <typename acc_t>
inline acc_t dot(const acc_t* __restrict x, const acc_t* __restrict y, int64_t d) {
  acc_t sum = acc_t(0);
  for (int64_t a = 0; a < d; ++a) sum += x[a] * y[a];
  return sum;
}

// m[a][:] += x[a] * y and s[a] += weight * x[a] for every a. ReLU's zeros (about half of x) are not
// skipped: a data-dependent branch per a mispredicts half the time and costs more than the FMAs.
template <typename acc_t>
inline void add_outer(acc_t* __restrict m, acc_t* __restrict s, const acc_t* __restrict x, const acc_t* __restrict y,
                      acc_t weight, int64_t d) {
  for (int64_t a = 0; a < d; ++a) s[a] += weight * x[a];
  for (int64_t a = 0; a < d; ++a) {
    const acc_t xa = x[a];
    acc_t* __restrict row = m + a * d;
    for (int64_t j = 0; j < d; ++j) row[j] += xa * y[j];
  }
}

// out = init + x m (x a row, m row-major D x D): out[j] = init[j] + sum_a x[a] m[a][j].
template <typename acc_t>
inline void row_times_matrix(acc_t* __restrict out, const acc_t* __restrict init, const acc_t* __restrict x,
                             const acc_t* __restrict m, int64_t d) {
  for (int64_t j = 0; j < d; ++j) out[j] = init ? init[j] : acc_t(0);
  for (int64_t a = 0; a < d; ++a) {
    const acc_t xa = x[a];
    const acc_t* __restrict row = m + a * d;
    for (int64_t j = 0; j < d; ++j) out[j] += xa * row[j];
  }
}

template <typename acc_t>
inline void transpose(acc_t* __restrict out, const acc_t* __restrict m, int64_t d) {
  for (int64_t a = 0; a < d; ++a)
    for (int64_t j = 0; j < d; ++j) out[j * d + a] = m[a * d + j];
}

// Floats of scratch per thread: forward KV, s and 3 rows; backward 4 matrices, 2 vectors, 6 rows.
inline int64_t scratch_size(int64_t d) { return 4 * d * d + 8 * d; }

// Tasks [t0, t1) of the forward. kD > 0 fixes the head dim at compile time.
template <typename scalar_t, typename acc_t, int kD>
PF_SLA_CLONES void forward_tasks(const scalar_t* q, const scalar_t* k, const scalar_t* v, scalar_t* y,
                                 const SlaProblem& p, acc_t eps, int64_t t0, int64_t t1, acc_t* scratch) {
  const int64_t d = kD > 0 ? kD : p.head_dim, c = p.channels;
  acc_t* kv = scratch;
  acc_t* s = kv + d * d;
  acc_t* x = s + d;
  acc_t* u = x + d;
  acc_t* out = u + d;
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t w = t / p.heads, col = (t % p.heads) * d;
    const int64_t r0 = p.offsets[w], r1 = p.offsets[w + 1];
    if (r0 == r1) continue;
    std::fill(kv, kv + d * d + d, acc_t(0));  // kv and s
    for (int64_t i = r0; i < r1; ++i) {
      load_phi_row(x, k + i * c + col, d);
      load_row(u, v + i * c + col, d);
      add_outer(kv, s, x, u, acc_t(1), d);
    }
    for (int64_t i = r0; i < r1; ++i) {
      load_phi_row(x, q + i * c + col, d);
      const acc_t den = sla_denominator(dot(x, s, d), eps);
      row_times_matrix<acc_t>(out, nullptr, x, kv, d);
      scalar_t* yi = y + i * c + col;
      for (int64_t j = 0; j < d; ++j) yi[j] = static_cast<scalar_t>(out[j] / den);
    }
  }
}

// Tasks [t0, t1) of the backward: KV and s again (see scattered_linear_attention_backward_cpu),
// then the query pass (dq; dKV and ds) and the key pass (dk, dv).
template <typename scalar_t, typename acc_t, int kD>
PF_SLA_CLONES void backward_tasks(const scalar_t* dy, const scalar_t* q, const scalar_t* k, const scalar_t* v,
                                  scalar_t* dq, scalar_t* dk, scalar_t* dv, const SlaProblem& p, acc_t eps, int64_t t0,
                                  int64_t t1, acc_t* scratch) {
  const int64_t d = kD > 0 ? kD : p.head_dim, c = p.channels;
  acc_t* kv = scratch;
  acc_t* kv_t = kv + d * d;
  acc_t* dkv = kv_t + d * d;
  acc_t* dkv_t = dkv + d * d;
  acc_t* s = dkv_t + d * d;
  acc_t* ds = s + d;
  acc_t* x = ds + d;
  acc_t* u = x + d;
  acc_t* num = u + d;
  acc_t* g = num + d;
  acc_t* out = g + d;
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t w = t / p.heads, col = (t % p.heads) * d;
    const int64_t r0 = p.offsets[w], r1 = p.offsets[w + 1];
    if (r0 == r1) continue;
    std::fill(kv, kv + d * d, acc_t(0));
    std::fill(dkv, dkv + d * d, acc_t(0));
    std::fill(s, s + 2 * d, acc_t(0));  // s and ds
    for (int64_t i = r0; i < r1; ++i) {
      load_phi_row(x, k + i * c + col, d);
      load_row(u, v + i * c + col, d);
      add_outer(kv, s, x, u, acc_t(1), d);
    }
    transpose(kv_t, kv, d);
    // Query pass: x = phi(q_i), u = dy_i, g = dnum_i; dphi(q_i) = dden_i s + dnum_i KV^T.
    for (int64_t i = r0; i < r1; ++i) {
      load_phi_row(x, q + i * c + col, d);
      load_row(u, dy + i * c + col, d);
      const acc_t den = sla_denominator(dot(x, s, d), eps);
      row_times_matrix<acc_t>(num, nullptr, x, kv, d);
      const acc_t dden = sla_grad_denominator(dot(u, num, d) / den, den);
      for (int64_t j = 0; j < d; ++j) g[j] = u[j] / den;
      add_outer(dkv, ds, x, g, dden, d);
      for (int64_t a = 0; a < d; ++a) out[a] = dden * s[a];
      for (int64_t j = 0; j < d; ++j) {
        const acc_t gj = g[j];
        const acc_t* __restrict row = kv_t + j * d;
        for (int64_t a = 0; a < d; ++a) out[a] += gj * row[a];
      }
      scalar_t* dqi = dq + i * c + col;
      for (int64_t a = 0; a < d; ++a) dqi[a] = static_cast<scalar_t>(sla_phi_grad(x[a], out[a]));
    }
    transpose(dkv_t, dkv, d);
    // Key pass: x = phi(k_i), u = v_i; dphi(k_i) = ds + v_i dKV^T, dv_i = phi(k_i) dKV.
    for (int64_t i = r0; i < r1; ++i) {
      load_phi_row(x, k + i * c + col, d);
      load_row(u, v + i * c + col, d);
      row_times_matrix<acc_t>(out, ds, u, dkv_t, d);
      row_times_matrix<acc_t>(g, nullptr, x, dkv, d);
      scalar_t* dki = dk + i * c + col;
      scalar_t* dvi = dv + i * c + col;
      for (int64_t a = 0; a < d; ++a) dki[a] = static_cast<scalar_t>(sla_phi_grad(x[a], out[a]));
      for (int64_t j = 0; j < d; ++j) dvi[j] = static_cast<scalar_t>(g[j]);
    }
  }
}

// Runs fn(t0, t1, scratch) over the tasks, one row-balanced contiguous range per thread.
template <typename acc_t, typename F>
void for_each_task_range(const SlaProblem& p, int64_t n, const F& fn) {
  const int64_t cost = n * p.heads;
  if (cost == 0) return;
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), cost));
  at::parallel_for(0, parts, 1, [&](int64_t p0, int64_t p1) {
    std::vector<acc_t> scratch(scratch_size(p.head_dim));
    for (int64_t part = p0; part < p1; ++part) {
      const int64_t t0 = sla_task_at_cost(p.offsets, p.windows, p.heads, part * cost / parts);
      const int64_t t1 = sla_task_at_cost(p.offsets, p.windows, p.heads, (part + 1) * cost / parts);
      fn(t0, t1, scratch.data());
    }
  });
}

// Calls f with std::integral_constant<int, kD>: 16, 32, 64, or 0 (any head dim).
template <typename F>
void dispatch_head_dim(int64_t d, const F& f) {
  switch (d) {
    case 16:
      return f(std::integral_constant<int, 16>());
    case 32:
      return f(std::integral_constant<int, 32>());
    case 64:
      return f(std::integral_constant<int, 64>());
    default:
      return f(std::integral_constant<int, 0>());
  }
}

at::Tensor scattered_linear_attention_cpu(const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
                                          const at::Tensor& offsets_in, int64_t num_heads, double eps) {
  const int64_t d = check_linear_attention_args(q_in, k_in, v_in, offsets_in, num_heads, eps);
  const at::Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
  const at::Tensor offsets = offsets_in.contiguous();
  const int64_t n = q.size(0);
  check_offsets_values_cpu(offsets, n);
  // Rows of no window cannot exist (offsets cover [0, N)), so every output row is written.
  at::Tensor y = at::empty_like(q);
  const SlaProblem p{offsets.data_ptr<int64_t>(), offsets.size(0) - 1, num_heads, q.size(1), d};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "scattered_linear_attention_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t *qp = q.data_ptr<scalar_t>(), *kp = k.data_ptr<scalar_t>(), *vp = v.data_ptr<scalar_t>();
    scalar_t* yp = y.data_ptr<scalar_t>();
    dispatch_head_dim(d, [&](auto head_dim) {
      for_each_task_range<acc_t>(p, n, [&](int64_t t0, int64_t t1, acc_t* scratch) {
        forward_tasks<scalar_t, acc_t, decltype(head_dim)::value>(qp, kp, vp, yp, p, static_cast<acc_t>(eps), t0, t1,
                                                                  scratch);
      });
    });
  });
  return y;
}

// The backward recomputes each window's KV and s from k and v instead of saving them in the
// forward: the saved state would be W * H * (D^2 + D) floats, which for ScatterFormer's many small
// windows (D = 32, windows of a few dozen voxels) is larger than q, k and v together, while the
// recomputation reads only k and v, which the key pass reads anyway (one more pass, ~1/3 of the
// backward's arithmetic).
std::tuple<at::Tensor, at::Tensor, at::Tensor> scattered_linear_attention_backward_cpu(
    const at::Tensor& grad_out_in, const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
    const at::Tensor& offsets_in, int64_t num_heads, double eps) {
  const int64_t d = check_linear_attention_args(q_in, k_in, v_in, offsets_in, num_heads, eps);
  TORCH_CHECK(grad_out_in.sizes() == q_in.sizes() && grad_out_in.scalar_type() == q_in.scalar_type(),
              "grad_out must match q's shape and dtype");
  const at::Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
  const at::Tensor dy = grad_out_in.contiguous(), offsets = offsets_in.contiguous();
  const int64_t n = q.size(0);
  check_offsets_values_cpu(offsets, n);
  at::Tensor dq = at::empty_like(q), dk = at::empty_like(q), dv = at::empty_like(q);
  const SlaProblem p{offsets.data_ptr<int64_t>(), offsets.size(0) - 1, num_heads, q.size(1), d};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "scattered_linear_attention_bwd_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    dispatch_head_dim(d, [&](auto head_dim) {
      for_each_task_range<acc_t>(p, n, [&](int64_t t0, int64_t t1, acc_t* scratch) {
        backward_tasks<scalar_t, acc_t, decltype(head_dim)::value>(
            dy.data_ptr<scalar_t>(), q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(),
            dq.data_ptr<scalar_t>(), dk.data_ptr<scalar_t>(), dv.data_ptr<scalar_t>(), p, static_cast<acc_t>(eps), t0,
            t1, scratch);
      });
    });
  });
  return {dq, dk, dv};
}

}  // namespace

TORCH_LIBRARY_IMPL(pointformer, CPU, m) {
  m.impl("scattered_linear_attention", &scattered_linear_attention_cpu);
  m.impl("scattered_linear_attention_backward", &scattered_linear_attention_backward_cpu);
}

}  // namespace pointformer
