"""``FrameBatch`` and ``collate_frames``: a list of ``FrameSample`` as one batch of torch tensors.

Batching concatenates, never pads (docs/DESIGN.md): points of all frames are stacked into
``(sum N, F)`` with a ``(sum N,)`` int64 ``batch_index`` (what ``pointformer.ops.voxelize`` takes),
and boxes into ``(sum M, 9)`` with ``box_batch_index``; ``point_offsets`` / ``box_offsets``
``(B + 1,)`` give each frame's rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pointformer.data.sample import FrameSample


@dataclass(frozen=True, eq=False)
class FrameBatch:
    """``B`` frames, concatenated.

    Attributes:
        points: ``(sum N, F)`` float32, columns ``point_features`` (x, y, z in metres first).
        batch_index: ``(sum N,)`` int64 frame of each point.
        point_offsets: ``(B + 1,)`` int64; frame ``b`` owns rows ``point_offsets[b]:point_offsets[b + 1]``.
        boxes: ``(sum M, 9)`` float32 ``[x, y, z, dx, dy, dz, heading, vx, vy]`` (``Boxes3D``).
        labels: ``(sum M,)`` int64 0-based class indices.
        box_batch_index: ``(sum M,)`` int64 frame of each box.
        box_offsets: ``(B + 1,)`` int64, as ``point_offsets``.
        difficulty: ``(sum M,)`` int8.
        poses: ``(B, 4, 4)`` float64 vehicle -> global.
        frame_ids: ``B`` frame ids.
        point_features: the ``F`` column names.
    """

    points: torch.Tensor
    batch_index: torch.Tensor
    point_offsets: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    box_batch_index: torch.Tensor
    box_offsets: torch.Tensor
    difficulty: torch.Tensor
    poses: torch.Tensor
    frame_ids: tuple[str, ...]
    point_features: tuple[str, ...]

    @property
    def batch_size(self) -> int:
        return len(self.frame_ids)

    def frame_boxes(self, b: int) -> torch.Tensor:
        """``(M_b, 9)`` boxes of frame ``b``."""
        return self.boxes[self.box_offsets[b] : self.box_offsets[b + 1]]

    def frame_points(self, b: int) -> torch.Tensor:
        """``(N_b, F)`` points of frame ``b``."""
        return self.points[self.point_offsets[b] : self.point_offsets[b + 1]]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> FrameBatch:
        """A new batch with every tensor on ``device`` (this one is unchanged)."""
        tensors = {
            name: getattr(self, name).to(device, non_blocking=non_blocking)
            for name in ("points", "batch_index", "point_offsets", "boxes", "labels", "box_batch_index",
                         "box_offsets", "difficulty", "poses")
        }  # fmt: skip
        return FrameBatch(**tensors, frame_ids=self.frame_ids, point_features=self.point_features)

    def pin_memory(self) -> FrameBatch:
        """Pinned copy (``DataLoader(pin_memory=True)`` calls this on custom batch types)."""
        tensors = {
            name: getattr(self, name).pin_memory()
            for name in ("points", "batch_index", "point_offsets", "boxes", "labels", "box_batch_index",
                         "box_offsets", "difficulty", "poses")
        }  # fmt: skip
        return FrameBatch(**tensors, frame_ids=self.frame_ids, point_features=self.point_features)


def _offsets(counts: list[int]) -> torch.Tensor:
    return torch.from_numpy(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))


def collate_frames(samples: Sequence[FrameSample]) -> FrameBatch:
    """Concatenates ``samples`` (all with the same ``point_features``) into a ``FrameBatch``."""
    if not samples:
        raise ValueError("collate_frames: no samples")
    features = samples[0].point_features
    for s in samples:
        if s.point_features != features:
            raise ValueError(f"collate_frames: point features differ: {features} vs {s.point_features} ({s.frame_id})")
    n = [s.num_points for s in samples]
    m = [s.num_boxes for s in samples]
    batch = torch.arange(len(samples), dtype=torch.int64)
    return FrameBatch(
        points=torch.from_numpy(np.concatenate([s.points for s in samples])),
        batch_index=torch.repeat_interleave(batch, torch.tensor(n, dtype=torch.int64)),
        point_offsets=_offsets(n),
        boxes=torch.from_numpy(np.concatenate([s.boxes for s in samples])),
        labels=torch.from_numpy(np.concatenate([s.labels for s in samples]).astype(np.int64)),
        box_batch_index=torch.repeat_interleave(batch, torch.tensor(m, dtype=torch.int64)),
        box_offsets=_offsets(m),
        difficulty=torch.from_numpy(np.concatenate([s.difficulty for s in samples]).astype(np.int8)),
        poses=torch.from_numpy(np.stack([s.pose for s in samples]).astype(np.float64)),
        frame_ids=tuple(s.frame_id for s in samples),
        point_features=features,
    )
