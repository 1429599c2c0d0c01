// Stable radix sort used by the CPU kernels to bring points of one voxel (or rows of one segment)
// together. Host-only.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

namespace pointformer {

// Sorts (keys, values) by key, stably, for keys in [0, key_limit). At most 16-bit digits, so the
// histogram stays in cache; a 2^18-cell pillar grid sorts in two passes, a 2^28 voxel grid in two.
inline void radix_sort_pairs(std::vector<int64_t>& keys, std::vector<int64_t>& values, int64_t key_limit) {
  const int64_t n = static_cast<int64_t>(keys.size());
  if (n < 2 || key_limit <= 1) return;
  int bits = 0;
  while (bits < 63 && (int64_t(1) << bits) < key_limit) ++bits;
  const int passes = (bits + 15) / 16;
  const int digit_bits = (bits + passes - 1) / passes;
  const int64_t buckets = int64_t(1) << digit_bits;
  const int64_t mask = buckets - 1;
  std::vector<int64_t> key_tmp(n), value_tmp(n), start(buckets);
  for (int pass = 0; pass < passes; ++pass) {
    const int shift = pass * digit_bits;
    std::fill(start.begin(), start.end(), 0);
    for (int64_t i = 0; i < n; ++i) ++start[(keys[i] >> shift) & mask];
    int64_t sum = 0;
    for (int64_t b = 0; b < buckets; ++b) {
      const int64_t c = start[b];
      start[b] = sum;
      sum += c;
    }
    for (int64_t i = 0; i < n; ++i) {
      const int64_t pos = start[(keys[i] >> shift) & mask]++;
      key_tmp[pos] = keys[i];
      value_tmp[pos] = values[i];
    }
    keys.swap(key_tmp);
    values.swap(value_tmp);
  }
}

// Start of every run of equal keys in `sorted`, plus a final end marker (sorted.size()).
inline std::vector<int64_t> run_starts(const std::vector<int64_t>& sorted) {
  const int64_t n = static_cast<int64_t>(sorted.size());
  std::vector<int64_t> starts;
  starts.reserve(n / 2 + 2);
  for (int64_t i = 0; i < n; ++i) {
    if (i == 0 || sorted[i] != sorted[i - 1]) starts.push_back(i);
  }
  starts.push_back(n);
  return starts;
}

}  // namespace pointformer
