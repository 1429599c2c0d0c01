// Torch-facing CUDA box ops over the kernels of boxes_cuda.cu.
#include "boxes_cuda.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../common/cuda_check.h"
#include "boxes_args.h"

namespace pointformer {
namespace {

at::Tensor boxes_iou_cuda(const at::Tensor& a_in, const at::Tensor& b_in, bool is_3d) {
  check_boxes(a_in, "boxes_a");
  check_boxes(b_in, "boxes_b");
  TORCH_CHECK(a_in.scalar_type() == b_in.scalar_type(), "boxes_a and boxes_b must share a dtype");
  const c10::cuda::CUDAGuard guard(a_in.device());
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous();
  at::Tensor iou = at::empty({a.size(0), b.size(0)}, a.options());
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "boxes_iou_cuda", [&] {
    PF_CUDA_CHECK(launch_boxes_iou<scalar_t>(a.data_ptr<scalar_t>(), a.size(0), a.size(1), b.data_ptr<scalar_t>(),
                                             b.size(0), b.size(1), is_3d, iou.data_ptr<scalar_t>(),
                                             c10::cuda::getCurrentCUDAStream()));
  });
  return iou;
}

at::Tensor points_in_boxes_cuda(const at::Tensor& points_in, const at::Tensor& boxes_in) {
  PF_CHECK_ROWS(points_in, 3, "points");
  check_boxes(boxes_in, "boxes");
  TORCH_CHECK(points_in.scalar_type() == boxes_in.scalar_type(), "points and boxes must share a dtype");
  const c10::cuda::CUDAGuard guard(points_in.device());
  const at::Tensor points = points_in.contiguous(), boxes = boxes_in.contiguous();
  at::Tensor mask = at::empty({points.size(0), boxes.size(0)}, points.options().dtype(at::kBool));
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "points_in_boxes_cuda", [&] {
    PF_CUDA_CHECK(launch_points_in_boxes<scalar_t>(points.data_ptr<scalar_t>(), points.size(0), points.size(1),
                                                   boxes.data_ptr<scalar_t>(), boxes.size(0), boxes.size(1),
                                                   mask.data_ptr<bool>(), c10::cuda::getCurrentCUDAStream()));
  });
  return mask;
}

at::Tensor nms_cuda(const at::Tensor& boxes_in, int mode, double threshold) {
  const c10::cuda::CUDAGuard guard(boxes_in.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor boxes = boxes_in.contiguous();
  const int64_t n = boxes.size(0);
  // The greedy pass keeps one bit per box in shared memory (48 KiB), and the pairwise mask takes
  // n * n / 8 bytes; detectors run NMS on a few thousand top-scoring boxes.
  TORCH_CHECK(nms_mask_words(n) * 8 <= 48 * 1024, "NMS on CUDA supports at most ", 48 * 1024 * 8, " boxes, got ", n,
              "; keep the top-scoring boxes first");
  // uint64 words held in an int64 tensor; zeroed because blocks left of the diagonal stay unwritten.
  at::Tensor mask = at::zeros({n, nms_mask_words(n)}, boxes.options().dtype(at::kLong));
  at::Tensor keep = at::empty({n}, boxes.options().dtype(at::kBool));
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "nms_cuda", [&] {
    PF_CUDA_CHECK(launch_nms_mask<scalar_t>(boxes.data_ptr<scalar_t>(), n, boxes.size(1), mode,
                                            static_cast<scalar_t>(threshold),
                                            reinterpret_cast<uint64_t*>(mask.data_ptr<int64_t>()), stream));
  });
  PF_CUDA_CHECK(
      launch_nms_keep(reinterpret_cast<const uint64_t*>(mask.data_ptr<int64_t>()), n, keep.data_ptr<bool>(), stream));
  return keep;
}

at::Tensor nms_bev_sorted_cuda(const at::Tensor& boxes, double iou_threshold) {
  check_boxes(boxes, "boxes");
  return nms_cuda(boxes, 0, iou_threshold);
}

at::Tensor circle_nms_sorted_cuda(const at::Tensor& boxes, double radius) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) >= 2, "boxes must have shape (N, >=2), got ", boxes.sizes());
  TORCH_CHECK(boxes.scalar_type() == at::kFloat || boxes.scalar_type() == at::kDouble,
              "boxes must be float32 or float64");
  return nms_cuda(boxes, 1, radius);
}

}  // namespace

TORCH_LIBRARY_IMPL(pointformer, CUDA, m) {
  m.impl("boxes_iou", &boxes_iou_cuda);
  m.impl("nms_bev_sorted", &nms_bev_sorted_cuda);
  m.impl("circle_nms_sorted", &circle_nms_sorted_cuda);
  m.impl("points_in_boxes", &points_in_boxes_cuda);
}

}  // namespace pointformer
