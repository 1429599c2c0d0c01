// Every schema of the pointformer op library, in one place. Backends register their kernels with
// TORCH_LIBRARY_IMPL in their own files; fake (meta) kernels and autograd are registered from
// Python (pointformer/ops/*.py) with torch.library.
#include <Python.h>
#include <torch/library.h>

extern "C" {
// `import pointformer._C` loads this shared library, which runs the static registrations below.
// No Python bindings: everything is reached through torch.ops.pointformer.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(pointformer, m) {
  // voxelize/: points (N, >=3) -> (point_to_voxel (N,) int64, coords (M, 4) int32, num_points (M,) int32)
  m.def(
      "voxelize(Tensor points, Tensor? batch_index, int batch_size, float[] voxel_size, "
      "float[] range_min, float[] range_max, int[] grid_shape, int max_points_per_voxel, "
      "int max_voxels) -> (Tensor, Tensor, Tensor)");
  // reduce/: values (N, C), segment (N,) int64 -> (out (S, C), counts (S,) int64). The backward
  // reads values and out only for "max" (to find each output's first arg-max row).
  m.def("segment_reduce(Tensor values, Tensor segment, SymInt num_segments, str reduce) -> (Tensor, Tensor)");
  m.def(
      "segment_reduce_backward(Tensor grad_out, Tensor segment, Tensor counts, Tensor values, Tensor out, "
      "str reduce) -> Tensor");
  // boxes/: (N, >=7) boxes [x, y, z, dx, dy, dz, heading]
  m.def("boxes_iou(Tensor boxes_a, Tensor boxes_b, bool is_3d) -> Tensor");
  m.def("nms_bev_sorted(Tensor boxes, float iou_threshold) -> Tensor");
  m.def("circle_nms_sorted(Tensor boxes, float radius) -> Tensor");
  m.def("points_in_boxes(Tensor points, Tensor boxes) -> Tensor");
  // grouping/: equal-size partition from voxels in group order (ops.grouping.partition_from_sorted):
  // permutation (N,), sample_of_voxel (N,) int64 -> (offsets (G+1,), group_sample (G,),
  // group_index (G, S), key_mask (G, S) bool, slot_of_voxel (N,))
  m.def(
      "partition_from_sorted(Tensor permutation, Tensor sample_of_voxel, int batch_size, int group_size) -> "
      "(Tensor, Tensor, Tensor, Tensor, Tensor)");
  // grouping/: DSVT set sampling. sorted_voxels (K, N) int64 (each row window by window, in an
  // in-window order), window_counts (W,) int64 -> (index (K, S, tau) int64, key_mask (K, S, tau)
  // bool, set_window (S,) int64, set_offsets (S + 1,) int64, slot_of_voxel (K, N) int64)
  // grouping/: DSVT windows. coords (N, 4) int32 (batch, z, y, x) -> (order (2, N) int64: voxels
  // window by window, y-major then x-major in-window order (stable), window_counts (W,) int64,
  // in_window (N, 3) int64 (z, y, x))
  m.def(
      "dsvt_window_order(Tensor coords, int batch_size, int[] sparse_shape, int[] window_shape, int[] shift) -> "
      "(Tensor, Tensor, Tensor)");
  m.def(
      "dsvt_set_index(Tensor sorted_voxels, Tensor window_counts, int set_size) -> (Tensor, Tensor, Tensor, Tensor, "
      "Tensor)");
  // grouping/ (serialization): coords (N, 4) int32 (batch, z, y, x) -> (N,) int64 space-filling-curve codes
  // (order: z, z-trans, hilbert, hilbert-trans), batch << 3 * depth on top
  m.def("serialization_codes(Tensor coords, int depth, str order) -> Tensor");
  // grouping/: coords (N, 4) int32 (batch, z, y, x) -> (N,) int64 batch-major FlatFormer sort keys
  // (-1 for voxels outside the grid)
  m.def(
      "flattened_window_keys(Tensor coords, int[] sparse_shape, int[] window_shape, str axis, bool shift) -> "
      "Tensor");
  // grouping/: coords (N, 4) int32 (batch, z, y, x) -> (N,) int64 ScatterFormer window keys
  // (batch * WY + window y) * WX + window x (-1 for voxels outside the grid)
  m.def("scattered_window_keys(Tensor coords, int[] sparse_shape, int[] window_shape, bool shift) -> Tensor");
  // grouping/: stable sort of keys (N,) int64 in [0, num_keys) -> (permutation (N,), offsets (G+1,) of
  // the runs of equal sorted keys, run_keys (G,)), all int64
  m.def("sort_window_keys(Tensor keys, int num_keys) -> (Tensor, Tensor, Tensor)");
  // attention/: softmax attention inside groups given by index lists. q (Nq, C), k and v (Nk, C)
  // with C = num_heads * head_dim; group g's queries are rows query_index[query_offsets[g] :
  // query_offsets[g + 1]] of q (each query row at most once over all groups), its keys and values
  // rows key_index[key_offsets[g] : key_offsets[g + 1]] of k and v (rows may repeat). -> (out (Nq, C)
  // of q's dtype, zero for rows in no group and for the queries of a group without keys; lse
  // (Nq, num_heads) log-sum-exp of the scaled scores, for the backward: float32 (float64 for float64
  // inputs), -inf where out is zero). Offsets must be non-decreasing.  Kernels: CPU float32/float64;
  // CUDA float32/float16/bfloat16, head_dim <= 64.
  m.def(
      "grouped_attention(Tensor q, Tensor k, Tensor v, Tensor query_index, Tensor query_offsets, "
      "Tensor key_index, Tensor key_offsets, int num_heads, float scale) -> (Tensor, Tensor)");
  // -> (grad_q (Nq, C), grad_k (Nk, C), grad_v (Nk, C)); a key row's gradient sums over its uses
  m.def(
      "grouped_attention_backward(Tensor grad_out, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, "
      "Tensor query_index, Tensor query_offsets, Tensor key_index, Tensor key_offsets, int num_heads, "
      "float scale) -> (Tensor, Tensor, Tensor)");
  // attention/: ScatterFormer's scattered linear attention over windows that are contiguous row ranges
  // [offsets[w], offsets[w + 1]) of q, k, v (N, C), C = num_heads * head_dim:
  // y = relu(q) KV / (relu(q) . s + eps), KV = sum relu(k)^T v and s = sum relu(k) per window and head.
  // -> out (N, C) of q's dtype
  m.def("scattered_linear_attention(Tensor q, Tensor k, Tensor v, Tensor offsets, int num_heads, float eps) -> Tensor");
  // -> (grad_q, grad_k, grad_v), each (N, C)
  m.def(
      "scattered_linear_attention_backward(Tensor grad_out, Tensor q, Tensor k, Tensor v, Tensor offsets, "
      "int num_heads, float eps) -> (Tensor, Tensor, Tensor)");
  // memory/: the caching CPU allocator for large blocks (pointformer/ops/cpu_cache.py).
  // configure -> the previous [enabled, max_cached_bytes, min_block_bytes];
  // stats -> [hits, misses, idle cached bytes, bytes handed out and not yet returned, enabled]
  m.def("cpu_cache_configure(bool enabled, int max_cached_bytes, int min_block_bytes) -> int[]");
  m.def("cpu_cache_stats() -> int[]");
  m.def("cpu_cache_empty() -> ()");
}
