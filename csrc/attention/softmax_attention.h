// Softmax-attention math shared by the CPU and CUDA grouped_attention kernels (no torch headers).
//
// Forward, per query row and head, over the group's keys in tiles (the CPU kernel takes all keys
// as one tile, the CUDA kernel tiles of a few keys):
//   s_j = scale * q . k_j;  running max m and sum l of exp(s_j - m), rescaled when m grows;
//   o = sum_j exp(s_j - m) v_j / l;  lse = m + log(l)  (-inf for a row with no keys, o = 0).
// Backward (flash-attention form, P recomputed from lse):
//   p_ij = exp(s_ij - lse_i), delta_i = dO_i . O_i, dS_ij = p_ij (dO_i . v_j - delta_i),
//   dQ_i = scale sum_j dS_ij k_j, dK_j = scale sum_i dS_ij q_i, dV_j = sum_i p_ij dO_i.
#pragma once
#include <cmath>

#include "../common/macros.h"

namespace pointformer {
namespace attention {

using std::exp;
using std::log;

template <typename acc_t>
PF_HD acc_t negative_infinity() {
  return static_cast<acc_t>(-INFINITY);
}

// Folds a tile whose largest score is tile_max into the running (max, sum): updates the max,
// rescales the sum, and returns the factor by which the running output must be rescaled
// (0 while nothing was accumulated yet).
template <typename acc_t>
PF_HD acc_t online_softmax_rescale(acc_t& running_max, acc_t& running_sum, acc_t tile_max) {
  const acc_t new_max = tile_max > running_max ? tile_max : running_max;
  const acc_t alpha = running_max == negative_infinity<acc_t>() ? acc_t(0) : exp(running_max - new_max);
  running_sum *= alpha;
  running_max = new_max;
  return alpha;
}

// The weight of one key after online_softmax_rescale: exp(score - running max).
template <typename acc_t>
PF_HD acc_t softmax_weight(acc_t score, acc_t running_max) {
  return exp(score - running_max);
}

// log(sum_j exp(s_j)) of a finished row; -inf for a row with no keys.
template <typename acc_t>
PF_HD acc_t softmax_lse(acc_t running_max, acc_t running_sum) {
  return running_sum > acc_t(0) ? running_max + log(running_sum) : negative_infinity<acc_t>();
}

// Factor that turns the accumulated sum_j exp(s_j - m) v_j into the output (0 for no keys).
template <typename acc_t>
PF_HD acc_t softmax_normalizer(acc_t running_sum) {
  return running_sum > acc_t(0) ? acc_t(1) / running_sum : acc_t(0);
}

// p_ij recomputed from the forward's log-sum-exp.
template <typename acc_t>
PF_HD acc_t recomputed_probability(acc_t score, acc_t lse) {
  return exp(score - lse);
}

// dS_ij = p_ij (dO_i . v_j - delta_i), the gradient of the (scaled) score.
template <typename acc_t>
PF_HD acc_t score_gradient(acc_t p, acc_t dp, acc_t delta) {
  return p * (dp - delta);
}

// a . b over one head (n entries), accumulated in acc_t.
template <typename acc_t, typename A, typename B>
PF_HD acc_t head_dot(const A* a, const B* b, int64_t n) {
  acc_t sum = acc_t(0);
  for (int64_t c = 0; c < n; ++c) sum += static_cast<acc_t>(a[c]) * static_cast<acc_t>(b[c]);
  return sum;
}

}  // namespace attention
}  // namespace pointformer
