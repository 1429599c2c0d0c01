// Math of ScatterFormer's scattered linear attention (SLA) shared by the CPU and CUDA kernels.
// No torch headers: the .cu file includes this under plain nvcc.
//
// Per window w (rows [offsets[w], offsets[w + 1])) and head h, with phi = ReLU:
//   KV = sum_i phi(k_i)^T v_i (D x D),  s = sum_i phi(k_i) (D)
//   den_i = phi(q_i) . s + eps,  y_i = phi(q_i) KV / den_i
// Backward, given dy:
//   dnum_i = dy_i / den_i,  dden_i = -(dy_i . y_i) / den_i
//   dphi(q_i) = KV dnum_i + dden_i s           -> dq_i = dphi(q_i) * [q_i > 0]
//   dKV = sum_i phi(q_i) (x) dnum_i,  ds = sum_i dden_i phi(q_i)
//   dphi(k_i) = dKV v_i + ds                   -> dk_i = dphi(k_i) * [k_i > 0]
//   dv_i[j] = sum_a phi(k_i)[a] dKV[a][j]
// (ReLU's gradient at 0 is taken as 0, like torch.relu's.)
#pragma once
#include "../common/macros.h"

namespace pointformer {

// phi = ReLU, and the mask of its gradient. phi(x) > 0 exactly where x > 0, so kernels that hold
// phi(x) use phi(x) > 0 as the mask and need not keep x.
template <typename acc_t>
PF_HD acc_t sla_phi(acc_t x) {
  return x > acc_t(0) ? x : acc_t(0);
}

template <typename acc_t>
PF_HD acc_t sla_phi_grad(acc_t phi_x, acc_t grad) {
  return phi_x > acc_t(0) ? grad : acc_t(0);
}

// The normalizer of a row from its dot product phi(q_i) . s.
template <typename acc_t>
PF_HD acc_t sla_denominator(acc_t q_dot_s, acc_t eps) {
  return q_dot_s + eps;
}

// dden_i from dy_i . y_i and den_i (dnum_i is dy_i / den_i elementwise).
template <typename acc_t>
PF_HD acc_t sla_grad_denominator(acc_t dy_dot_y, acc_t den) {
  return -dy_dot_y / den;
}

// Chunks: a window of `length` rows is cut into ceil(length / rows) chunks of at most `rows` rows
// (the CUDA kernels give every chunk its own thread blocks, so long windows spread over the GPU).
PF_HD int64_t sla_num_chunks(int64_t length, int64_t rows) { return (length + rows - 1) / rows; }

// An upper bound of sum_w ceil(len_w / rows) over `windows` windows holding n rows in all, known on
// the host without reading the offsets: sum ceil(len / R) <= sum (len + R - 1) / R.
PF_HD int64_t sla_max_chunks(int64_t n, int64_t windows, int64_t rows) { return (n + windows * (rows - 1)) / rows; }

// Rows of a CUDA chunk by head-dim bucket: 64, or 32 for heads wider than 32 so that the backward's
// three row tiles and the D x D state fit the 48 KiB of static shared memory.
PF_HD int64_t sla_chunk_rows(int64_t head_dim) { return head_dim > 32 ? 32 : 64; }

// Floats of one (window or chunk, head) state: KV (D x D, row a = key feature) then s (D).
PF_HD int64_t sla_state_size(int64_t head_dim) { return head_dim * head_dim + head_dim; }

// CPU load balance. Task t = w * heads + h is window w's head h and costs len(w) rows; the tasks'
// cost prefix is offsets[w] * heads + h * len(w). Returns the first task whose prefix is >= cost
// (num_windows * heads when cost >= n * heads). offsets: num_windows + 1 non-decreasing entries.
PF_HD int64_t sla_task_at_cost(const int64_t* offsets, int64_t num_windows, int64_t heads, int64_t cost) {
  const int64_t n = offsets[num_windows];
  if (cost <= 0) return 0;
  if (cost >= n * heads) return num_windows * heads;
  // Last window w with offsets[w] * heads <= cost, i.e. offsets[w] <= cost / heads.
  const int64_t row = cost / heads;
  int64_t lo = 0, hi = num_windows;  // offsets[lo] <= row < offsets[hi]
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (offsets[mid] <= row) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  const int64_t length = offsets[lo + 1] - offsets[lo];  // >= 1: offsets[lo] <= row < offsets[lo + 1]
  const int64_t rest = cost - offsets[lo] * heads;
  int64_t h = (rest + length - 1) / length;
  if (h > heads) h = heads;
  return lo * heads + h;
}

}  // namespace pointformer
