"""Typed outputs of a detector."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True, eq=False)
class Detections:
    """The detections of one frame.

    Attributes:
        boxes: ``(M, 7)`` or ``(M, 9)`` float32 ``[x, y, z, dx, dy, dz, heading(, vx, vy)]`` in the
            frame's vehicle/LiDAR frame (``Boxes3D`` convention: metres, z the box centre, heading
            counter-clockwise from +x in radians, velocity m/s).
        scores: ``(M,)`` float32 confidence in [0, 1], descending within each class after NMS.
        labels: ``(M,)`` int64 0-based index into the detector's class names.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        m = self.boxes.shape[0]
        if self.boxes.dim() != 2 or self.boxes.shape[1] not in (7, 9):
            raise ValueError(f"Detections.boxes must be (M, 7) or (M, 9), got {tuple(self.boxes.shape)}")
        if self.scores.shape != (m,) or self.labels.shape != (m,):
            raise ValueError(
                f"Detections.scores and labels must be ({m},), got {tuple(self.scores.shape)} and "
                f"{tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return self.boxes.shape[0]

    def to(self, device: torch.device | str) -> Detections:
        """A copy on ``device``."""
        return Detections(self.boxes.to(device), self.scores.to(device), self.labels.to(device))

    @staticmethod
    def empty(box_dim: int = 7, device: torch.device | str = "cpu") -> Detections:
        return Detections(
            torch.zeros(0, box_dim, device=device),
            torch.zeros(0, device=device),
            torch.zeros(0, dtype=torch.int64, device=device),
        )
