"""``Detector``: the single-stage voxel detector every config builds (FlatFormer, DSVT, ...).

One frame batch flows through typed stages (docs/DESIGN.md "The flow of one frame")::

    FrameBatch.points (sum N, F) ─► voxelize ─► voxel_encoder ─► SparseVoxels
      ─► backbone3d ─► SparseVoxels ─► bev ─► (B, C, Y, X) ─► backbone2d ─► [multi-scale maps]
      ─► neck ─► (B, C', Y', X') ─► head ─► dense outputs ─► loss (training) | decode (eval)

Each stage is a public method or attribute so that tools (benchmarks, export) can run them one by
one; ``forward`` is their composition.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pointformer.data.collate import FrameBatch
from pointformer.models.outputs import Detections
from pointformer.ops import Voxelization, voxelize
from pointformer.structures import SparseVoxels, VoxelGrid


class Detector(nn.Module):
    """A voxel detector: voxelization, a voxel encoder, a 3D backbone, a BEV mapping, a 2D backbone,
    a neck and a dense head.

    Args:
        grid: the voxel grid (range and voxel size, metres).
        class_names: the classes, in label order (the dataset's ``class_names``).
        voxel_encoder: ``(points (N, F), Voxelization) -> SparseVoxels``.
        backbone3d: ``SparseVoxels -> SparseVoxels``.
        bev: ``SparseVoxels -> (B, C, Y, X)``.
        backbone2d: ``(B, C, Y, X) -> list of maps``.
        neck: ``list of maps -> (B, C', Y', X')``.
        head: ``forward(map) -> outputs``, ``loss(outputs, boxes, labels, box_batch_index,
            batch_size) -> dict``, ``decode(outputs) -> list[Detections]``.
        max_points_per_voxel: -1 for dynamic voxelization (every point kept), else a cap.
        max_voxels: -1 (every voxel kept), else the most voxels per frame (the first by the
            arrival of their first point, as ``pointformer.ops.voxelize``).
    """

    def __init__(
        self,
        grid: VoxelGrid,
        class_names: Sequence[str],
        voxel_encoder: nn.Module,
        backbone3d: nn.Module,
        bev: nn.Module,
        backbone2d: nn.Module,
        neck: nn.Module,
        head: nn.Module,
        max_points_per_voxel: int = -1,
        max_voxels: int = -1,
    ) -> None:
        super().__init__()
        self.grid = grid
        self.class_names = tuple(class_names)
        self.max_points_per_voxel = int(max_points_per_voxel)
        self.max_voxels = int(max_voxels)
        self.voxel_encoder = voxel_encoder
        self.backbone3d = backbone3d
        self.bev = bev
        self.backbone2d = backbone2d
        self.neck = neck
        self.head = head

    def parts(self) -> dict[str, nn.Module]:
        """The parts in flow order, by attribute name."""
        names = ("voxel_encoder", "backbone3d", "bev", "backbone2d", "neck", "head")
        return {n: getattr(self, n) for n in names}

    def voxelize(self, points: torch.Tensor, batch_index: torch.Tensor, batch_size: int) -> Voxelization:
        """Voxels of ``(N, F)`` points (x, y, z metres first) with their ``(N,)`` frame index."""
        return voxelize(
            points,
            self.grid.voxel_size,
            self.grid.point_cloud_range,
            batch_index=batch_index,
            max_points_per_voxel=self.max_points_per_voxel,
            max_voxels=self.max_voxels,
            batch_size=batch_size,
        )

    def encode_voxels(self, batch: FrameBatch) -> SparseVoxels:
        """Voxelization and the voxel encoder."""
        voxels = self.voxelize(batch.points, batch.batch_index, batch.batch_size)
        return self.voxel_encoder(batch.points, voxels)

    def bev_features(self, batch: FrameBatch) -> torch.Tensor:
        """Everything up to the head's input: ``(B, C', Y', X')``."""
        voxels = self.backbone3d(self.encode_voxels(batch))
        return self.neck(self.backbone2d(self.bev(voxels)))

    def forward(self, batch: FrameBatch) -> dict[str, torch.Tensor] | list[Detections]:
        """Training mode: the named, weighted losses (their sum is the objective). Eval mode: one
        ``Detections`` per frame."""
        outputs = self.head(self.bev_features(batch))
        if self.training:
            return self.head.loss(outputs, batch.boxes, batch.labels, batch.box_batch_index, batch.batch_size)
        return self.head.decode(outputs)

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters per part, and ``"total"``."""
        counts = {n: sum(p.numel() for p in m.parameters() if p.requires_grad) for n, m in self.parts().items()}
        counts["total"] = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return counts

    def summary(self) -> str:
        """A table of the parts, their types and parameter counts."""
        counts = self.parameter_counts()
        rows = [f"{'part':<14} {'type':<18} {'parameters':>12}"]
        for name, module in self.parts().items():
            rows.append(f"{name:<14} {type(module).__name__:<18} {counts[name]:>12,}")
        rows.append(f"{'total':<14} {type(self).__name__:<18} {counts['total']:>12,}")
        return "\n".join(rows)
