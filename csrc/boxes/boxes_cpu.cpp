// CPU kernels for rotated-box geometry: pairwise IoU, greedy rotated and circle NMS over boxes
// already sorted by descending score, and point-in-box masks. The math is csrc/common/box_geometry.h.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../common/box_geometry.h"
#include "boxes_args.h"

namespace pointformer {
namespace {

at::Tensor boxes_iou_cpu(const at::Tensor& a_in, const at::Tensor& b_in, bool is_3d) {
  check_boxes(a_in, "boxes_a");
  check_boxes(b_in, "boxes_b");
  TORCH_CHECK(a_in.scalar_type() == b_in.scalar_type(), "boxes_a and boxes_b must share a dtype");
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous();
  const int64_t na = a.size(0), nb = b.size(0), sa = a.size(1), sb = b.size(1);
  at::Tensor iou = at::empty({na, nb}, a.options());
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "boxes_iou_cpu", [&] {
    const scalar_t* pa = a.data_ptr<scalar_t>();
    const scalar_t* pb = b.data_ptr<scalar_t>();
    scalar_t* out = iou.data_ptr<scalar_t>();
    at::parallel_for(0, na, 16, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        for (int64_t j = 0; j < nb; ++j) out[i * nb + j] = box_iou(pa + i * sa, pb + j * sb, is_3d);
    });
  });
  return iou;
}

// Greedy suppression over boxes in priority order: box i survives unless a surviving box before
// it suppresses it. Each survivor tests the remaining candidates in parallel.
template <typename Suppresses>
at::Tensor greedy_nms(int64_t n, const at::TensorOptions& options, Suppresses suppresses) {
  at::Tensor keep = at::zeros({n}, options.dtype(at::kBool));
  bool* k = keep.data_ptr<bool>();
  std::vector<uint8_t> removed(n, 0);
  for (int64_t i = 0; i < n; ++i) {
    if (removed[i]) continue;
    k[i] = true;
    at::parallel_for(i + 1, n, 2048, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j)
        if (!removed[j] && suppresses(i, j)) removed[j] = 1;
    });
  }
  return keep;
}

at::Tensor nms_bev_sorted_cpu(const at::Tensor& boxes_in, double iou_threshold) {
  check_boxes(boxes_in, "boxes");
  const at::Tensor boxes = boxes_in.contiguous();
  const int64_t stride = boxes.size(1);
  at::Tensor keep;
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "nms_bev_cpu", [&] {
    const scalar_t* p = boxes.data_ptr<scalar_t>();
    const scalar_t thr = static_cast<scalar_t>(iou_threshold);
    keep = greedy_nms(boxes.size(0), boxes.options(),
                      [&](int64_t i, int64_t j) { return box_iou(p + i * stride, p + j * stride, false) > thr; });
  });
  return keep;
}

at::Tensor circle_nms_sorted_cpu(const at::Tensor& boxes_in, double radius) {
  TORCH_CHECK(boxes_in.dim() == 2 && boxes_in.size(1) >= 2, "boxes must have shape (N, >=2), got ", boxes_in.sizes());
  PF_CHECK_FLOATING(boxes_in, "boxes");
  const at::Tensor boxes = boxes_in.contiguous();
  const int64_t stride = boxes.size(1);
  at::Tensor keep;
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "circle_nms_cpu", [&] {
    const scalar_t* p = boxes.data_ptr<scalar_t>();
    const scalar_t r2 = static_cast<scalar_t>(radius * radius);
    keep = greedy_nms(boxes.size(0), boxes.options(), [&](int64_t i, int64_t j) {
      const scalar_t dx = p[i * stride] - p[j * stride], dy = p[i * stride + 1] - p[j * stride + 1];
      return dx * dx + dy * dy <= r2;
    });
  });
  return keep;
}

at::Tensor points_in_boxes_cpu(const at::Tensor& points_in, const at::Tensor& boxes_in) {
  PF_CHECK_ROWS(points_in, 3, "points");
  check_boxes(boxes_in, "boxes");
  TORCH_CHECK(points_in.scalar_type() == boxes_in.scalar_type(), "points and boxes must share a dtype");
  const at::Tensor points = points_in.contiguous(), boxes = boxes_in.contiguous();
  const int64_t n = points.size(0), m = boxes.size(0), sp = points.size(1), sb = boxes.size(1);
  at::Tensor mask = at::empty({n, m}, points.options().dtype(at::kBool));
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "points_in_boxes_cpu", [&] {
    const scalar_t* p = points.data_ptr<scalar_t>();
    const scalar_t* b = boxes.data_ptr<scalar_t>();
    bool* out = mask.data_ptr<bool>();
    at::parallel_for(0, n, 1024, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        for (int64_t j = 0; j < m; ++j) out[i * m + j] = point_in_box(p + i * sp, b + j * sb);
    });
  });
  return mask;
}

}  // namespace

TORCH_LIBRARY_IMPL(pointformer, CPU, m) {
  m.impl("boxes_iou", &boxes_iou_cpu);
  m.impl("nms_bev_sorted", &nms_bev_sorted_cpu);
  m.impl("circle_nms_sorted", &circle_nms_sorted_cpu);
  m.impl("points_in_boxes", &points_in_boxes_cpu);
}

}  // namespace pointformer
