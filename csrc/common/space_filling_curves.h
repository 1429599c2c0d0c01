// Space-filling-curve codes of voxels (Point Transformer V3's serialization), shared by the CPU
// and CUDA kernels. The pure-PyTorch reference (pointformer/ops/grouping/serialized.py) follows
// these functions step for step.
//
// Layout: bit i of x goes to code bit 3i + 2, of y to 3i + 1, of z to 3i; the batch sits above
// the 3 * depth code bits. Hilbert is Skilling's transpose algorithm ("Programming the Hilbert
// curve", 2004) on the axes X[0] = x, X[1] = y, X[2] = z, read out with the same layout.
#pragma once

#include <cstdint>

#include "macros.h"

namespace pointformer {

enum class CurveOrder : int { kZ = 0, kZTrans = 1, kHilbert = 2, kHilbertTrans = 3 };

constexpr int kMaxCurveDepth = 16;

// Bit i of the low 16 bits of v to bit 3i.
PF_HD uint64_t spread_bits3(uint32_t v) {
  uint64_t x = v & 0xffffu;
  x = (x | (x << 16)) & 0x0000ff0000ffull;  // 8-bit chunks, 24 apart
  x = (x | (x << 8)) & 0x00f00f00f00full;   // 4-bit chunks, 12 apart
  x = (x | (x << 4)) & 0x0c30c30c30c3ull;   // 2-bit chunks, 6 apart
  x = (x | (x << 2)) & 0x249249249249ull;   // bits, 3 apart
  return x;
}

PF_HD uint64_t interleave_xyz(uint32_t x, uint32_t y, uint32_t z) {
  return (spread_bits3(x) << 2) | (spread_bits3(y) << 1) | spread_bits3(z);
}

// Skilling's AxesToTranspose for 3 axes of `depth` bits, in place: afterwards X[0..2] hold the
// Hilbert index in transposed form (its bit 3i + 2 - d is bit i of X[d]).
PF_HD void hilbert_axes_to_transpose(uint32_t (&X)[3], int depth) {
  if (depth <= 0) return;
  const uint32_t top = 1u << (depth - 1);
  // Undo the excess work, from the top bit down: a set bit of X[i] inverts the lower bits of
  // X[0]; a clear one exchanges the lower bits of X[0] and X[i].
  for (uint32_t q = top; q > 1; q >>= 1) {
    const uint32_t p = q - 1;
    for (int i = 0; i < 3; ++i) {
      if (X[i] & q) {
        X[0] ^= p;
      } else {
        const uint32_t t = (X[0] ^ X[i]) & p;
        X[0] ^= t;
        X[i] ^= t;
      }
    }
  }
  // Gray encode.
  X[1] ^= X[0];
  X[2] ^= X[1];
  uint32_t t = 0;
  for (uint32_t q = top; q > 1; q >>= 1) {
    if (X[2] & q) t ^= q - 1;
  }
  X[0] ^= t;
  X[1] ^= t;
  X[2] ^= t;
}

// Code of one voxel from its (batch, z, y, x) coordinates: the low `depth` bits of each axis
// (0 <= depth <= 16), batch << 3 * depth on top. The caller checks that the batch fits.
PF_HD int64_t serialization_code(const int32_t* bzyx, int depth, CurveOrder order) {
  const uint32_t mask = (1u << depth) - 1u;
  uint32_t X[3] = {static_cast<uint32_t>(bzyx[3]) & mask, static_cast<uint32_t>(bzyx[2]) & mask,
                   static_cast<uint32_t>(bzyx[1]) & mask};
  if (order == CurveOrder::kZTrans || order == CurveOrder::kHilbertTrans) {
    const uint32_t x = X[0];
    X[0] = X[1];
    X[1] = x;
  }
  if (order == CurveOrder::kHilbert || order == CurveOrder::kHilbertTrans) hilbert_axes_to_transpose(X, depth);
  const uint64_t code = interleave_xyz(X[0], X[1], X[2]);
  return static_cast<int64_t>(code | (static_cast<uint64_t>(static_cast<int64_t>(bzyx[0])) << (3 * depth)));
}

}  // namespace pointformer
