// Mutation-test driver for csrc/reduce/segment_reduce_cuda.cu: segment sums and maxima of a small
// CSR grouping (empty segments included) under the emulation, against host loops. Exit status 0
// when they agree; otherwise a message on stderr and 1. KERNEL_SOURCE is the kernel file.
#include <cstdio>
#include <vector>

#include KERNEL_SOURCE

int main() {
  const int64_t channels = 5, segments = 40;
  std::vector<int64_t> offsets{0};
  for (int64_t s = 0; s < segments; ++s) offsets.push_back(offsets.back() + (s % 7 == 3 ? 0 : s % 5 + 1));
  const int64_t n = offsets.back();
  std::vector<int64_t> rows(n);
  for (int64_t r = 0; r < n; ++r) rows[r] = (r * 37) % n;  // a permutation: n is not a multiple of 37
  std::vector<float> values(n * channels);
  for (int64_t i = 0; i < n * channels; ++i) values[i] = static_cast<float>((i * 7919) % 101) / 10.0f - 5.0f;
  for (int reduce : {0, 2}) {  // sum, max
    std::vector<float> out(segments * channels);
    const cudaError_t err = pointformer::launch_segment_reduce<float>(
        values.data(), channels, rows.data(), offsets.data(), segments, reduce, out.data(), nullptr);
    if (err != cudaSuccess) {
      std::fprintf(stderr, "segment_driver: launch failed: %s\n", cudaGetErrorString(err));
      return 1;
    }
    for (int64_t s = 0; s < segments; ++s)
      for (int64_t c = 0; c < channels; ++c) {
        float want = 0;
        for (int64_t r = offsets[s]; r < offsets[s + 1]; ++r) {
          const float v = values[rows[r] * channels + c];
          want = reduce == 0 ? want + v : (r == offsets[s] || v > want ? v : want);
        }
        const float got = out[s * channels + c];
        if (got - want > 1e-5f || want - got > 1e-5f) {
          std::fprintf(stderr, "segment_driver: reduce %d, segment %lld channel %lld: got %g, want %g\n", reduce,
                       static_cast<long long>(s), static_cast<long long>(c), got, want);
          return 1;
        }
      }
  }
  std::printf("segment_driver: ok\n");
  return 0;
}
