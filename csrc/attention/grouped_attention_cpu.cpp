// CPU grouped softmax attention. Work items are groups (at::parallel_for over them), two paths:
// * small groups (fewer than kGemmMinScores query-key pairs, e.g. DSVT's sets of 36): per head the
//   score row of each query is computed against all of the group's keys at once, through a
//   transposed copy of the group's keys so that every inner loop is a contiguous axpy the compiler
//   vectorizes (over keys for the scores, over the head dimension for the outputs), with the
//   online-softmax helpers the CUDA kernel uses; queries and outputs are read and written in place;
// * larger groups (FlatFormer's 144, PTv3's 1024): the group's rows are gathered into small local
//   (H, L, D) blocks and the score and output products are batched matrix products (BLAS). In a
//   quick run of tools/benchmark.py attention on a loaded 2-core VM this was about 2x faster than
//   the loops at FlatFormer's groups of 144; kGemmMinScores is a rough threshold, to revisit.
// Neither path makes a (G, S, C) copy of the whole input.
//
// Backward, determinism: a key row may serve several groups (or several slots of one group), so
// its gradient is a sum over uses. Each group writes the gradient of each of its key *slots* into
// its own rows of a (num_slots, C) buffer (slots of different groups never overlap), and a final
// pass sums every key row's slots in slot order. That costs one buffer of the size of the keys'
// index list, but the result does not depend on the thread count or scheduling (atomics would).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "grouped_attention_args.h"
#include "softmax_attention.h"

namespace pointformer {
namespace {

namespace sa = attention;

template <typename scalar_t>
struct Problem {
  const scalar_t* q;
  const scalar_t* k;
  const scalar_t* v;
  const int64_t* query_index;
  const int64_t* query_offsets;
  const int64_t* key_index;
  const int64_t* key_offsets;
  int64_t channels, num_heads, head_dim;
  scalar_t scale;
};

// y[0:n] += a * x[0:n]
template <typename scalar_t>
[[gnu::always_inline]] inline void axpy(scalar_t* __restrict y, scalar_t a, const scalar_t* __restrict x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// kt[c * nk + j] = k[key_index[k0 + j], c]: the group's keys (or values), transposed.
template <typename scalar_t>
[[gnu::always_inline]] inline void transpose_rows(const scalar_t* __restrict x, const int64_t* __restrict rows,
                                                  int64_t nk, int64_t channels, scalar_t* __restrict xt) {
  for (int64_t j = 0; j < nk; ++j) {
    const scalar_t* xr = x + rows[j] * channels;
    for (int64_t c = 0; c < channels; ++c) xt[c * nk + j] = xr[c];
  }
}

// s[j] = scale * q_row(head) . k_j for the group's nk keys (kt transposed, head h's rows).
template <typename scalar_t>
[[gnu::always_inline]] inline void head_scores(const scalar_t* __restrict q_head, const scalar_t* __restrict kt_head,
                                               int64_t nk, int64_t head_dim, scalar_t scale, scalar_t* __restrict s) {
  std::fill(s, s + nk, scalar_t(0));
  for (int64_t c = 0; c < head_dim; ++c) axpy(s, q_head[c] * scale, kt_head + c * nk, nk);
}

template <typename scalar_t>
[[gnu::always_inline]] inline void forward_group_impl(const Problem<scalar_t>& p, int64_t g, scalar_t* out,
                                                      scalar_t* lse, std::vector<scalar_t>& kt,
                                                      std::vector<scalar_t>& s, std::vector<scalar_t>& o) {
  const int64_t q0 = p.query_offsets[g], q1 = p.query_offsets[g + 1];
  const int64_t k0 = p.key_offsets[g], nk = p.key_offsets[g + 1] - k0;
  const int64_t C = p.channels, H = p.num_heads, D = p.head_dim;
  const int64_t* keys = p.key_index + k0;
  if (q1 <= q0) return;
  if (nk == 0) {  // no keys: output 0 (the caller zero-fills), lse -inf
    for (int64_t i = q0; i < q1; ++i)
      std::fill(lse + p.query_index[i] * H, lse + (p.query_index[i] + 1) * H, sa::negative_infinity<scalar_t>());
    return;
  }
  kt.resize(C * nk);
  s.resize(nk);
  o.resize(D);
  transpose_rows(p.k, keys, nk, C, kt.data());
  for (int64_t i = q0; i < q1; ++i) {
    const int64_t row = p.query_index[i];
    for (int64_t h = 0; h < H; ++h) {
      head_scores(p.q + row * C + h * D, kt.data() + h * D * nk, nk, D, p.scale, s.data());
      scalar_t tile_max = s[0];
      for (int64_t j = 1; j < nk; ++j) tile_max = s[j] > tile_max ? s[j] : tile_max;
      // All keys form one tile: the same online-softmax step as the CUDA kernel's, once.
      scalar_t running_max = sa::negative_infinity<scalar_t>(), running_sum = 0;
      sa::online_softmax_rescale(running_max, running_sum, tile_max);
      for (int64_t j = 0; j < nk; ++j) s[j] = sa::softmax_weight(s[j], running_max);
      std::fill(o.begin(), o.end(), scalar_t(0));
      for (int64_t j = 0; j < nk; ++j) {
        running_sum += s[j];
        axpy(o.data(), s[j], p.v + keys[j] * C + h * D, D);
      }
      const scalar_t norm = sa::softmax_normalizer(running_sum);
      scalar_t* out_head = out + row * C + h * D;
      for (int64_t c = 0; c < D; ++c) out_head[c] = o[c] * norm;
      lse[row * H + h] = sa::softmax_lse(running_max, running_sum);
    }
  }
}

template <typename scalar_t>
[[gnu::always_inline]] inline void backward_group_impl(const Problem<scalar_t>& p, int64_t g, const scalar_t* grad_out,
                                                       const scalar_t* out, const scalar_t* lse, scalar_t* grad_q,
                                                       scalar_t* grad_k_slots, scalar_t* grad_v_slots,
                                                       std::vector<scalar_t>& kt, std::vector<scalar_t>& vt,
                                                       std::vector<scalar_t>& s, std::vector<scalar_t>& dp,
                                                       std::vector<scalar_t>& dq) {
  const int64_t q0 = p.query_offsets[g], q1 = p.query_offsets[g + 1];
  const int64_t k0 = p.key_offsets[g], nk = p.key_offsets[g + 1] - k0;
  const int64_t C = p.channels, H = p.num_heads, D = p.head_dim;
  const int64_t* keys = p.key_index + k0;
  if (q1 <= q0 || nk == 0) return;  // no keys: the outputs were constant 0
  kt.resize(C * nk);
  vt.resize(C * nk);
  s.resize(nk);
  dp.resize(nk);
  dq.resize(D);
  transpose_rows(p.k, keys, nk, C, kt.data());
  transpose_rows(p.v, keys, nk, C, vt.data());
  scalar_t* gk = grad_k_slots + k0 * C;  // this group's slots, (nk, C)
  scalar_t* gv = grad_v_slots + k0 * C;
  for (int64_t i = q0; i < q1; ++i) {
    const int64_t row = p.query_index[i];
    for (int64_t h = 0; h < H; ++h) {
      const scalar_t* q_head = p.q + row * C + h * D;
      const scalar_t* do_head = grad_out + row * C + h * D;
      head_scores(q_head, kt.data() + h * D * nk, nk, D, p.scale, s.data());
      std::fill(dp.begin(), dp.end(), scalar_t(0));
      for (int64_t c = 0; c < D; ++c) axpy(dp.data(), do_head[c], vt.data() + (h * D + c) * nk, nk);
      const scalar_t delta = sa::head_dot<scalar_t>(do_head, out + row * C + h * D, D);
      const scalar_t row_lse = lse[row * H + h];
      for (int64_t j = 0; j < nk; ++j) {
        s[j] = sa::recomputed_probability(s[j], row_lse);  // p_ij
        dp[j] = sa::score_gradient(s[j], dp[j], delta);    // dS_ij
      }
      std::fill(dq.begin(), dq.end(), scalar_t(0));
      for (int64_t j = 0; j < nk; ++j) {
        axpy(dq.data(), dp[j], p.k + keys[j] * C + h * D, D);
        axpy(gk + j * C + h * D, p.scale * dp[j], q_head, D);
        axpy(gv + j * C + h * D, s[j], do_head, D);
      }
      scalar_t* gq = grad_q + row * C + h * D;
      for (int64_t c = 0; c < D; ++c) gq[c] = p.scale * dq[c];
    }
  }
}

// Groups with at least this many query-key pairs take the batched-matrix-product path.
constexpr int64_t kGemmMinScores = 64 * 64;

bool use_gemm(int64_t nq, int64_t nk) { return nq * nk >= kGemmMinScores; }

// (L, C) rows of x -> (H, L, D) block.
at::Tensor gather_heads(const at::Tensor& x, const at::Tensor& rows, int64_t num_heads) {
  return x.index_select(0, rows).view({rows.size(0), num_heads, -1}).transpose(0, 1);
}

// (H, L, D) -> (L, C).
at::Tensor merge_heads(const at::Tensor& x) { return x.transpose(0, 1).reshape({x.size(1), -1}); }

// Forward of one large group; writes its query rows of out and lse (disjoint from other groups').
void forward_group_gemm(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& qi,
                        const at::Tensor& ki, int64_t q0, int64_t q1, int64_t k0, int64_t k1, int64_t num_heads,
                        double scale, at::Tensor& out, at::Tensor& lse) {
  const at::Tensor rows = qi.slice(0, q0, q1), keys = ki.slice(0, k0, k1);
  const at::Tensor kh = gather_heads(k, keys, num_heads);
  const at::Tensor scores = at::bmm(gather_heads(q, rows, num_heads), kh.transpose(1, 2)).mul_(scale);
  const at::Tensor group_lse = scores.logsumexp(-1);                 // (H, Lq)
  const at::Tensor p = scores.sub_(group_lse.unsqueeze(-1)).exp_();  // (H, Lq, Lk)
  out.index_copy_(0, rows, merge_heads(at::bmm(p, gather_heads(v, keys, num_heads))));
  lse.index_copy_(0, rows, group_lse.t());
}

// Backward of one large group: its query rows of grad_q and its key slots of the slot buffers.
void backward_group_gemm(const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         const at::Tensor& out, const at::Tensor& lse, const at::Tensor& qi, const at::Tensor& ki,
                         int64_t q0, int64_t q1, int64_t k0, int64_t k1, int64_t num_heads, double scale,
                         at::Tensor& grad_q, at::Tensor& gk_slots, at::Tensor& gv_slots) {
  const at::Tensor rows = qi.slice(0, q0, q1), keys = ki.slice(0, k0, k1);
  const at::Tensor qh = gather_heads(q, rows, num_heads), kh = gather_heads(k, keys, num_heads);
  const at::Tensor vh = gather_heads(v, keys, num_heads), doh = gather_heads(grad_out, rows, num_heads);
  const at::Tensor row_lse = lse.index_select(0, rows).t().unsqueeze(-1);  // (H, Lq, 1)
  const at::Tensor p = at::bmm(qh, kh.transpose(1, 2)).mul_(scale).sub_(row_lse).exp_();
  const at::Tensor delta = (doh * gather_heads(out, rows, num_heads)).sum(-1, /*keepdim=*/true);
  const at::Tensor ds = at::bmm(doh, vh.transpose(1, 2)).sub_(delta).mul_(p);  // dS = P (dP - delta)
  grad_q.index_copy_(0, rows, merge_heads(at::bmm(ds, kh)).mul_(scale));
  gk_slots.slice(0, k0, k1).copy_(merge_heads(at::bmm(ds.transpose(1, 2), qh)).mul_(scale));
  gv_slots.slice(0, k0, k1).copy_(merge_heads(at::bmm(p.transpose(1, 2), doh)));
}

// The float versions are cloned for AVX2 and dispatched at load time (GCC function
// multiversioning, as in reduce/), so the extension stays portable and the axpys get 8-wide vectors.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define PF_ATTENTION_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define PF_ATTENTION_CLONES
#endif

template <typename scalar_t>
void forward_group(const Problem<scalar_t>& p, int64_t g, scalar_t* out, scalar_t* lse, std::vector<scalar_t>& kt,
                   std::vector<scalar_t>& s, std::vector<scalar_t>& o) {
  forward_group_impl(p, g, out, lse, kt, s, o);
}

template <>
PF_ATTENTION_CLONES void forward_group<float>(const Problem<float>& p, int64_t g, float* out, float* lse,
                                              std::vector<float>& kt, std::vector<float>& s, std::vector<float>& o) {
  forward_group_impl(p, g, out, lse, kt, s, o);
}

template <typename scalar_t>
void backward_group(const Problem<scalar_t>& p, int64_t g, const scalar_t* grad_out, const scalar_t* out,
                    const scalar_t* lse, scalar_t* grad_q, scalar_t* gk, scalar_t* gv, std::vector<scalar_t>& kt,
                    std::vector<scalar_t>& vt, std::vector<scalar_t>& s, std::vector<scalar_t>& dp,
                    std::vector<scalar_t>& dq) {
  backward_group_impl(p, g, grad_out, out, lse, grad_q, gk, gv, kt, vt, s, dp, dq);
}

template <>
PF_ATTENTION_CLONES void backward_group<float>(const Problem<float>& p, int64_t g, const float* grad_out,
                                               const float* out, const float* lse, float* grad_q, float* gk, float* gv,
                                               std::vector<float>& kt, std::vector<float>& vt, std::vector<float>& s,
                                               std::vector<float>& dp, std::vector<float>& dq) {
  backward_group_impl(p, g, grad_out, out, lse, grad_q, gk, gv, kt, vt, s, dp, dq);
}

// Data checks the CPU can afford (the CUDA wrapper skips them: they would synchronize): offsets
// non-decreasing inside their index lists, indices inside q's and k's rows.
void check_index_data(const at::Tensor& index, const at::Tensor& offsets, int64_t rows, const char* name) {
  const int64_t* o = offsets.data_ptr<int64_t>();
  const int64_t n = offsets.size(0);
  TORCH_CHECK(o[0] >= 0 && o[n - 1] <= index.size(0), name, "_offsets must lie in [0, len(index)], got first ", o[0],
              " last ", o[n - 1]);
  for (int64_t g = 0; g + 1 < n; ++g) TORCH_CHECK(o[g] <= o[g + 1], name, "_offsets must be non-decreasing");
  if (index.numel() > 0) {
    const int64_t lo = index.min().item<int64_t>(), hi = index.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < rows, name, "_index must lie in [0, ", rows, "), got [", lo, ", ", hi, "]");
  }
}

template <typename scalar_t>
Problem<scalar_t> make_problem(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& qi,
                               const at::Tensor& qo, const at::Tensor& ki, const at::Tensor& ko, int64_t num_heads,
                               double scale) {
  return {q.data_ptr<scalar_t>(),
          k.data_ptr<scalar_t>(),
          v.data_ptr<scalar_t>(),
          qi.data_ptr<int64_t>(),
          qo.data_ptr<int64_t>(),
          ki.data_ptr<int64_t>(),
          ko.data_ptr<int64_t>(),
          q.size(1),
          num_heads,
          q.size(1) / num_heads,
          static_cast<scalar_t>(scale)};
}

std::tuple<at::Tensor, at::Tensor> grouped_attention_cpu(const at::Tensor& q_in, const at::Tensor& k_in,
                                                         const at::Tensor& v_in, const at::Tensor& qi_in,
                                                         const at::Tensor& qo_in, const at::Tensor& ki_in,
                                                         const at::Tensor& ko_in, int64_t num_heads, double scale) {
  check_grouped_attention_args(q_in, k_in, v_in, qi_in, qo_in, ki_in, ko_in, num_heads);
  TORCH_CHECK(q_in.scalar_type() == at::kFloat || q_in.scalar_type() == at::kDouble,
              "grouped_attention on CPU takes float32 or float64, got ", q_in.scalar_type());
  const at::Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
  const at::Tensor qi = qi_in.contiguous(), qo = qo_in.contiguous(), ki = ki_in.contiguous(), ko = ko_in.contiguous();
  check_index_data(qi, qo, q.size(0), "query");
  check_index_data(ki, ko, k.size(0), "key");
  at::Tensor out = at::zeros_like(q);
  at::Tensor lse = at::full({q.size(0), num_heads}, -INFINITY, q.options());
  const int64_t num_groups = qo.size(0) - 1;
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "grouped_attention_cpu", [&] {
    const Problem<scalar_t> p = make_problem<scalar_t>(q, k, v, qi, qo, ki, ko, num_heads, scale);
    scalar_t* o = out.data_ptr<scalar_t>();
    scalar_t* l = lse.data_ptr<scalar_t>();
    at::parallel_for(0, num_groups, 1, [&](int64_t g0, int64_t g1) {
      std::vector<scalar_t> kt, s, acc;
      for (int64_t g = g0; g < g1; ++g) {
        const int64_t q0 = p.query_offsets[g], q1 = p.query_offsets[g + 1];
        const int64_t k0 = p.key_offsets[g], k1 = p.key_offsets[g + 1];
        if (use_gemm(q1 - q0, k1 - k0)) {
          forward_group_gemm(q, k, v, qi, ki, q0, q1, k0, k1, num_heads, scale, out, lse);
        } else {
          forward_group<scalar_t>(p, g, o, l, kt, s, acc);
        }
      }
    });
  });
  return {out, lse};
}

// grad[r] = sum of slots[t] over the slots t with key_index[t] == r, in slot order.
void sum_slots_into_rows(const at::Tensor& slots, const at::Tensor& key_index, at::Tensor& grad) {
  const int64_t rows = grad.size(0), channels = grad.size(1);
  if (key_index.numel() == 0 || channels == 0) return;
  const at::Tensor order = std::get<1>(at::sort(key_index, /*stable=*/true, /*dim=*/0, /*descending=*/false));
  const at::Tensor counts = at::bincount(key_index, {}, rows);
  const at::Tensor row_offsets = at::cat({at::zeros({1}, counts.options()), counts.cumsum(0)});
  const int64_t* ord = order.data_ptr<int64_t>();
  const int64_t* ro = row_offsets.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "grouped_attention_sum_slots", [&] {
    const scalar_t* src = slots.data_ptr<scalar_t>();
    scalar_t* dst = grad.data_ptr<scalar_t>();
    at::parallel_for(0, rows, 256, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        scalar_t* d = dst + r * channels;
        for (int64_t t = ro[r]; t < ro[r + 1]; ++t) axpy(d, scalar_t(1), src + ord[t] * channels, channels);
      }
    });
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> grouped_attention_backward_cpu(
    const at::Tensor& grad_out_in, const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
    const at::Tensor& out_in, const at::Tensor& lse_in, const at::Tensor& qi_in, const at::Tensor& qo_in,
    const at::Tensor& ki_in, const at::Tensor& ko_in, int64_t num_heads, double scale) {
  check_grouped_attention_args(q_in, k_in, v_in, qi_in, qo_in, ki_in, ko_in, num_heads);
  check_grouped_attention_backward_args(grad_out_in, q_in, out_in, lse_in, num_heads);
  TORCH_CHECK(q_in.scalar_type() == at::kFloat || q_in.scalar_type() == at::kDouble,
              "grouped_attention_backward on CPU takes float32 or float64, got ", q_in.scalar_type());
  const at::Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
  const at::Tensor grad_out = grad_out_in.contiguous(), out = out_in.contiguous(), lse = lse_in.contiguous();
  const at::Tensor qi = qi_in.contiguous(), qo = qo_in.contiguous(), ki = ki_in.contiguous(), ko = ko_in.contiguous();
  check_index_data(qi, qo, q.size(0), "query");
  check_index_data(ki, ko, k.size(0), "key");
  at::Tensor grad_q = at::zeros_like(q), grad_k = at::zeros_like(k), grad_v = at::zeros_like(v);
  // Slots outside every group's range stay zero.
  at::Tensor gk_slots = at::zeros({ki.size(0), k.size(1)}, k.options());
  at::Tensor gv_slots = at::zeros({ki.size(0), k.size(1)}, k.options());
  const int64_t num_groups = qo.size(0) - 1;
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "grouped_attention_backward_cpu", [&] {
    const Problem<scalar_t> p = make_problem<scalar_t>(q, k, v, qi, qo, ki, ko, num_heads, scale);
    const scalar_t* go = grad_out.data_ptr<scalar_t>();
    const scalar_t* o = out.data_ptr<scalar_t>();
    const scalar_t* l = lse.data_ptr<scalar_t>();
    scalar_t* gq = grad_q.data_ptr<scalar_t>();
    scalar_t* gk = gk_slots.data_ptr<scalar_t>();
    scalar_t* gv = gv_slots.data_ptr<scalar_t>();
    at::parallel_for(0, num_groups, 1, [&](int64_t g0, int64_t g1) {
      std::vector<scalar_t> kt, vt, s, dp, dq;
      for (int64_t g = g0; g < g1; ++g) {
        const int64_t q0 = p.query_offsets[g], q1 = p.query_offsets[g + 1];
        const int64_t k0 = p.key_offsets[g], k1 = p.key_offsets[g + 1];
        if (use_gemm(q1 - q0, k1 - k0)) {
          backward_group_gemm(grad_out, q, k, v, out, lse, qi, ki, q0, q1, k0, k1, num_heads, scale, grad_q, gk_slots,
                              gv_slots);
        } else {
          backward_group<scalar_t>(p, g, go, o, l, gq, gk, gv, kt, vt, s, dp, dq);
        }
      }
    });
  });
  sum_slots_into_rows(gk_slots, ki, grad_k);
  sum_slots_into_rows(gv_slots, ki, grad_v);
  return {grad_q, grad_k, grad_v};
}

}  // namespace

TORCH_LIBRARY_IMPL(pointformer, CPU, m) {
  m.impl("grouped_attention", &grouped_attention_cpu);
  m.impl("grouped_attention_backward", &grouped_attention_backward_cpu);
}

}  // namespace pointformer
