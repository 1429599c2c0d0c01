"""Boxes3D: oriented 3D boxes in pointformer's convention, with their geometry."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

# Unit-box corner signs (x, y, z). The bottom face comes first, then the top face, each
# counter-clockwise seen from above starting rear-right: rear-right, front-right, front-left,
# rear-left (front = +x of the box, left = +y). The BEV corners are the first four.
_CORNER_SIGNS = (
    (-1, -1, -1), (1, -1, -1), (1, 1, -1), (-1, 1, -1),
    (-1, -1, 1), (1, -1, 1), (1, 1, 1), (-1, 1, 1),
)  # fmt: skip


def wrap_angle(angle: torch.Tensor) -> torch.Tensor:
    """Wraps angles (radians) into ``[-pi, pi)``."""
    wrapped = angle - 2 * math.pi * torch.floor((angle + math.pi) / (2 * math.pi))
    # Float rounding can land exactly on +pi; the interval is half-open.
    return torch.where(wrapped >= math.pi, wrapped - 2 * math.pi, wrapped)


def wrap_angle_numpy(angle: np.ndarray) -> np.ndarray:
    """``wrap_angle`` for numpy arrays: angles (radians) into ``[-pi, pi)``, in ``angle``'s dtype
    (the Python-float constants stay weak, so float32 input is computed in float32)."""
    angle = np.asarray(angle)
    wrapped = angle - 2 * math.pi * np.floor((angle + math.pi) / (2 * math.pi))
    return np.where(wrapped >= math.pi, wrapped - 2 * math.pi, wrapped).astype(angle.dtype)


def rotation_z(angle: torch.Tensor) -> torch.Tensor:
    """``(..., 3, 3)`` rotation matrices about +z, counter-clockwise by ``angle`` radians."""
    c, s = torch.cos(angle), torch.sin(angle)
    zero, one = torch.zeros_like(angle), torch.ones_like(angle)
    return torch.stack([c, -s, zero, s, c, zero, zero, zero, one], dim=-1).reshape(*angle.shape, 3, 3)


@dataclass(frozen=True, eq=False)
class Boxes3D:
    """Oriented 3D boxes.

    ``tensor`` is ``(N, 7)`` ``[x, y, z, dx, dy, dz, heading]`` or ``(N, 9)`` with ``[vx, vy]``
    appended. Centre ``(x, y, z)`` is the box centre (z included) in metres in the
    vehicle/LiDAR frame (x forward, y left, z up); ``dx, dy, dz`` are the full extents along the
    box's own axes (length, width, height); heading is the yaw of the box's +x axis,
    counter-clockwise from the frame's +x, in radians; velocity is in m/s in the same frame.
    """

    tensor: torch.Tensor

    def __post_init__(self) -> None:
        t = self.tensor
        if t.dim() != 2 or t.shape[1] not in (7, 9):
            raise ValueError(
                f"Boxes3D.tensor must have shape (N, 7) [x, y, z, dx, dy, dz, heading] or (N, 9) with "
                f"[vx, vy], got {tuple(t.shape)}"
            )
        if not t.is_floating_point():
            raise ValueError(f"Boxes3D.tensor must be floating, got {t.dtype}")

    @classmethod
    def empty(cls, with_velocity: bool = False, dtype=torch.float32, device=None) -> Boxes3D:
        return cls(torch.zeros(0, 9 if with_velocity else 7, dtype=dtype, device=device))

    @classmethod
    def cat(cls, boxes: list[Boxes3D]) -> Boxes3D:
        return cls(torch.cat([b.tensor for b in boxes], dim=0))

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def __getitem__(self, index) -> Boxes3D:
        t = self.tensor[index]
        return Boxes3D(t.unsqueeze(0) if t.dim() == 1 else t)

    @property
    def has_velocity(self) -> bool:
        return self.tensor.shape[1] == 9

    @property
    def center(self) -> torch.Tensor:
        """``(N, 3)`` box centres."""
        return self.tensor[:, 0:3]

    @property
    def dims(self) -> torch.Tensor:
        """``(N, 3)`` full extents ``(dx, dy, dz)``."""
        return self.tensor[:, 3:6]

    @property
    def heading(self) -> torch.Tensor:
        """``(N,)`` yaw in radians."""
        return self.tensor[:, 6]

    @property
    def velocity(self) -> torch.Tensor | None:
        """``(N, 2)`` ``(vx, vy)`` in m/s, or None."""
        return self.tensor[:, 7:9] if self.has_velocity else None

    def volume(self) -> torch.Tensor:
        return self.dims.prod(dim=1)

    def corners(self) -> torch.Tensor:
        """``(N, 8, 3)`` corners in the order of ``_CORNER_SIGNS`` (bottom face, then top)."""
        signs = self.tensor.new_tensor(_CORNER_SIGNS)  # (8, 3)
        local = signs[None] * (self.dims[:, None, :] / 2)  # (N, 8, 3)
        return local @ rotation_z(self.heading).transpose(1, 2) + self.center[:, None, :]

    def bev_corners(self) -> torch.Tensor:
        """``(N, 4, 2)`` bird's-eye-view corners, counter-clockwise."""
        return self.corners()[:, :4, :2]

    def normalize_heading(self) -> Boxes3D:
        """Same boxes with heading wrapped into ``[-pi, pi)``."""
        t = self.tensor.clone()
        t[:, 6] = wrap_angle(t[:, 6])
        return Boxes3D(t)

    def rotate(self, angle: float | torch.Tensor) -> Boxes3D:
        """Boxes seen in a frame rotated about +z by ``-angle``: centres, velocities and headings
        turn counter-clockwise by ``angle`` radians about the origin (heading wrapped)."""
        angle_t = torch.as_tensor(angle, dtype=self.tensor.dtype, device=self.tensor.device)
        rot = rotation_z(angle_t)
        t = self.tensor.clone()
        t[:, 0:3] = self.center @ rot.T
        t[:, 6] = wrap_angle(self.heading + angle_t)
        if self.has_velocity:
            t[:, 7:9] = self.velocity @ rot[:2, :2].T
        return Boxes3D(t)

    def translate(self, offset) -> Boxes3D:
        """Boxes moved by ``offset`` ``(3,)`` metres."""
        t = self.tensor.clone()
        t[:, 0:3] += torch.as_tensor(offset, dtype=t.dtype, device=t.device)
        return Boxes3D(t)

    def to(self, device: torch.device | str) -> Boxes3D:
        """A copy on ``device`` (never in place)."""
        return Boxes3D(self.tensor.to(device))
