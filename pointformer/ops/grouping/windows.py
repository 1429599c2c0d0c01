"""Window arithmetic shared by the window-based layouts (FlatFormer, DSVT, ScatterFormer).

Shapes follow the voxel coordinate order: ``sparse_shape`` is ``(Z, Y, X)`` cells,
``window_shape`` and ``shift`` are ``(wz, wy, wx)`` and ``(sz, sy, sx)`` cells.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _triple(values: Sequence[int], name: str) -> tuple[int, int, int]:
    values = tuple(int(v) for v in values)
    if len(values) != 3:
        raise ValueError(f"{name} must have 3 entries (z, y, x), got {values}")
    return values  # type: ignore[return-value]


def window_coords(
    coords: torch.Tensor, window_shape: Sequence[int], shift: Sequence[int] = (0, 0, 0)
) -> tuple[torch.Tensor, torch.Tensor]:
    """Window and in-window coordinates of voxels.

    Args:
        coords: ``(N, 4)`` int ``(batch, z, y, x)``.
        window_shape: ``(wz, wy, wx)`` cells, each >= 1.
        shift: ``(sz, sy, sx)`` cells added to the coordinates before splitting (shifted windows).

    Returns:
        ``window`` ``(N, 3)`` int64 ``(z, y, x)`` window indices, ``(c + shift) // w``, and
        ``in_window`` ``(N, 3)`` int64 ``(c + shift) % w``.
    """
    w = _triple(window_shape, "window_shape")
    s = _triple(shift, "shift")
    if min(w) < 1:
        raise ValueError(f"window_shape entries must be >= 1, got {w}")
    shifted = coords[:, 1:].long() + torch.tensor(s, device=coords.device)
    size = torch.tensor(w, device=coords.device)
    return torch.div(shifted, size, rounding_mode="floor"), torch.remainder(shifted, size)


def windows_per_axis(sparse_shape: Sequence[int], window_shape: Sequence[int]) -> tuple[int, int, int]:
    """``(Z, Y, X)`` windows needed to cover the grid with room for a shift: ``ceil(S / w) + 1``
    per axis (the "+1" of FlatFormer's and DSVT's window counts)."""
    shape = _triple(sparse_shape, "sparse_shape")
    w = _triple(window_shape, "window_shape")
    return tuple(-(-s // k) + 1 for s, k in zip(shape, w, strict=True))  # type: ignore[return-value]
