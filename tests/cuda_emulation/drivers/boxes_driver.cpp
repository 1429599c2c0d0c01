// Mutation-test driver for csrc/boxes/boxes_cuda.cu: runs points_in_boxes, the NMS mask and the
// NMS keep pass under the emulation and compares them with plain host loops over the same shared
// geometry (csrc/common/box_geometry.h). Exit status 0 when all agree; otherwise a message on
// stderr and 1. The kernel file (original or mutant) is included by the build: KERNEL_SOURCE.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include KERNEL_SOURCE

namespace {

using pointformer::box_iou;
using pointformer::nms_mask_words;
using pointformer::point_in_box;

uint64_t state = 12345;
float uniform() {  // a fixed LCG: the same inputs on every run
  state = state * 6364136223846793005ULL + 1442695040888963407ULL;
  return static_cast<float>((state >> 40) & 0xffffff) / 16777216.0f;
}

int fail(const char* what) {
  std::fprintf(stderr, "boxes_driver: %s\n", what);
  return 1;
}

int check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return 0;
  std::fprintf(stderr, "boxes_driver: %s failed: %s\n", what, cudaGetErrorString(err));
  return 1;
}

}  // namespace

int main() {
  // 100 boxes: two column blocks of the NMS mask, the second one partial (36 boxes).
  const int64_t n = 100, points = 300;
  std::vector<float> boxes(n * 7), pts(points * 3);
  for (int64_t i = 0; i < n; ++i) {
    float* b = &boxes[i * 7];
    b[0] = uniform() * 12 - 6, b[1] = uniform() * 12 - 6, b[2] = uniform() * 2 - 1;
    b[3] = uniform() * 4 + 0.5f, b[4] = uniform() * 2 + 0.5f, b[5] = uniform() * 2 + 0.5f;
    b[6] = uniform() * 6 - 3;
  }
  for (float& p : pts) p = uniform() * 14 - 7;

  std::vector<unsigned char> mask_in(points * n);
  bool* inside = reinterpret_cast<bool*>(mask_in.data());
  if (check(pointformer::launch_points_in_boxes<float>(pts.data(), points, 3, boxes.data(), n, 7, inside, nullptr),
            "launch_points_in_boxes"))
    return 1;
  for (int64_t i = 0; i < points; ++i)
    for (int64_t j = 0; j < n; ++j)
      if (inside[i * n + j] != point_in_box(&pts[i * 3], &boxes[j * 7])) return fail("points_in_boxes differs");

  const int64_t words = nms_mask_words(n);
  std::vector<uint64_t> mask(n * words, 0);
  if (check(pointformer::launch_nms_mask<float>(boxes.data(), n, 7, 0, 0.1f, mask.data(), nullptr), "launch_nms_mask"))
    return 1;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i + 1; j < n; ++j) {
      const bool want = box_iou(&boxes[i * 7], &boxes[j * 7], false) > 0.1f;
      if (((mask[i * words + j / 64] >> (j % 64)) & 1) != want) return fail("nms mask differs");
    }

  std::vector<unsigned char> keep_bytes(n);
  bool* keep = reinterpret_cast<bool*>(keep_bytes.data());
  if (check(pointformer::launch_nms_keep(mask.data(), n, keep, nullptr), "launch_nms_keep")) return 1;
  std::vector<bool> removed(n, false);
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (keep[i] == removed[i]) return fail("nms keep differs");
    if (removed[i]) continue;
    ++kept;
    for (int64_t j = i + 1; j < n; ++j)
      if ((mask[i * words + j / 64] >> (j % 64)) & 1) removed[j] = true;
  }
  if (kept <= 1 || kept >= n) return fail("the case should keep some boxes and drop others");
  std::printf("boxes_driver: ok (%lld of %lld boxes kept)\n", static_cast<long long>(kept), static_cast<long long>(n));
  return 0;
}
