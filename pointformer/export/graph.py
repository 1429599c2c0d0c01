"""The exportable network: a detector's dense part as a module of plain tensors in, plain tensors out.

Which part exports depends on the 3D backbone (``exportable_part``):

* ``"points"`` (FlatFormer, DSVT-P, DSVT-V): the kept points with their voxel, the voxel coords
  and the grouping layouts (``pointformer.export.layouts``) -> voxel encoder -> 3D backbone -> BEV
  -> 2D backbone -> neck -> head maps. Everything with weights is in the graph.
* ``"bev"`` (3D backbones built on sparse convolution, which has no ONNX form: CenterPoint's
  VoxelResBackBone8x, ScatterFormer's stem, cross-window depthwise convs and downsampling): the 3D
  backbone's output voxels (features, coords) -> BEV -> 2D backbone -> neck -> head maps; the
  voxel encoder and the 3D backbone run in PyTorch.

``NetworkGraph.forward`` calls the detector's own parts (no second copy of the model's math); under
``pointformer.ops.export_mode()`` every op inside it is plain PyTorch, which is what
``torch.onnx.export`` traces. Batch size is one frame. Outputs of a CenterHead, per task ``t``:
``task{t}_heatmap`` ``(1, K_t, H, W)`` logits, ``task{t}_code`` ``(1, 8|10, H, W)`` (``BEVCoder``
columns) and, with the IoU branch, ``task{t}_iou`` ``(1, 1, H, W)``. Of a TransFusionHead (query
selection and the decoder layer are in the graph): ``query_heatmap`` ``(1, K, P)`` logits,
``query_score`` ``(1, K, P)``, ``query_labels`` ``(1, P)`` int64, ``query_code`` ``(1, 8|10, P)`` and
``query_iou`` ``(1, 1, P)`` (``pointformer.models.heads.query_decode``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pointformer.export.layouts import BACKBONE_LAYOUTS, LAYOUTS, VOXELS, TensorSpec
from pointformer.export.spec import BEV, POINTS
from pointformer.ops import Voxelization
from pointformer.structures import SparseVoxels

# Why a 3D backbone is left out of the graph.
NOT_EXPORTABLE = {
    "VoxelResBackBone8x": "sparse convolution (spconv) has no ONNX form",
    "ScatterFormer": "its stem, cross-window depthwise convs and downsampling are sparse convolutions (spconv), "
    "which have no ONNX form",
    "IdentityBackbone3D": "no 3D backbone: the graph starts at the pillars the voxel encoder gives (no points "
    "layout is defined for a model without a 3D backbone)",
}


def exportable_part(detector: nn.Module) -> tuple[str, str]:
    """``(part, reason)``: ``"points"`` when the whole network exports, else ``"bev"`` and why."""
    name = type(detector.backbone3d).__name__
    if name in BACKBONE_LAYOUTS:
        return POINTS, ""
    return BEV, f"{name}: {NOT_EXPORTABLE.get(name, 'no exportable form is known for this 3D backbone')}"


def head_output_names(head: nn.Module) -> list[str]:
    """The graph's output names for ``head``: a query head names its own (``export_output_names``),
    a CenterHead's are per task ``task{t}_heatmap``, ``task{t}_code`` and (IoU branch) ``task{t}_iou``."""
    if hasattr(head, "export_output_names"):
        return list(head.export_output_names())
    return [f"task{t}_{name}" for t in range(len(head.tasks)) for name in ("heatmap", "code", "iou")
            if name != "iou" or head.with_iou]  # fmt: skip


def flat_head_outputs(head: nn.Module, outputs: Any) -> tuple[torch.Tensor, ...]:
    """``outputs`` of ``head`` as the graph's outputs, in ``head_output_names`` order."""
    if hasattr(head, "export_outputs"):
        return tuple(head.export_outputs(outputs).values())
    flat = []
    for task in outputs.tasks:
        flat += [task.heatmap, task.code()] + ([task.iou] if head.with_iou else [])
    return tuple(flat)


def parts_in_graph(part: str) -> tuple[str, ...]:
    """The detector parts inside the graph of ``part``."""
    tail = ("bev", "backbone2d", "neck", "head")
    return ("voxel_encoder", "backbone3d", *tail) if part == POINTS else tail


class NetworkGraph(nn.Module):
    """The exportable part of ``detector`` (see the module docstring).

    Attributes:
        part: ``"points"`` or ``"bev"``; reason: why the 3D backbone is outside (``"bev"`` only).
        layout: the layout spec (``"points"`` only; JSON-able).
        inputs: the graph inputs in order (``TensorSpec``); ``outputs``: output names in order.
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector
        self.part, self.reason = exportable_part(detector)
        if self.part == POINTS:
            self.layout: dict[str, Any] | None = LAYOUTS[BACKBONE_LAYOUTS[type(detector.backbone3d).__name__]].spec(
                detector.backbone3d
            )
            features = detector.voxel_encoder.in_channels
            self.inputs = [
                TensorSpec("points", ("points", features), "float32"),
                TensorSpec("point_to_voxel", ("points",), "int64"),
                TensorSpec("coords", (VOXELS, 4), "int32"),
                *LAYOUTS[self.layout["kind"]].inputs(self.layout),
            ]
        else:
            self.layout = None
            self.inputs = [
                TensorSpec("features", (VOXELS, detector.backbone3d.out_channels), "float32"),
                TensorSpec("coords", (VOXELS, 4), "int32"),
            ]
        self.outputs = head_output_names(detector.head)

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.inputs]

    def bev_input_shape(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """``(spatial_shape, stride)`` of the 3D backbone's output voxels (the ``"bev"`` graph's input)."""
        b = self.detector.backbone3d
        return tuple(b.out_spatial_shape), tuple(getattr(b, "out_stride", (1, 1, 1)))

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if len(tensors) != len(self.inputs):
            raise ValueError(f"NetworkGraph: expected {len(self.inputs)} inputs {self.input_names}, got {len(tensors)}")
        named = dict(zip(self.input_names, tensors, strict=True))
        d = self.detector
        if self.part == POINTS:
            coords = named["coords"]
            # num_points: unused by the voxel encoders that export (a placeholder of the right shape).
            voxelization = Voxelization(named["point_to_voxel"], coords, coords.new_zeros(coords.shape[0]), d.grid, 1,
                                        all_points_kept=True)  # fmt: skip
            voxels = d.voxel_encoder(named["points"], voxelization)
            LAYOUTS[self.layout["kind"]].attach(d.backbone3d, voxels, named)
            voxels = d.backbone3d(voxels)
        else:
            shape, stride = self.bev_input_shape()
            voxels = SparseVoxels(named["features"], named["coords"], shape, 1, stride)
        return flat_head_outputs(d.head, d.head(d.neck(d.backbone2d(d.bev(voxels)))))

    def dynamic_shapes(self) -> tuple[dict[int, Any], ...]:
        """``torch.export`` dynamic shapes of the inputs: one ``Dim`` per named size, at least 1."""
        dims: dict[str, Any] = {}
        out = []
        for spec in self.inputs:
            entry = {}
            for axis, size in enumerate(spec.shape):
                if isinstance(size, str):
                    entry[axis] = dims.setdefault(size, torch.export.Dim(size, min=1))
            out.append(entry)
        return tuple(out)
