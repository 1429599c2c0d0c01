"""ScatterFormer's scattered windows: every non-empty BEV window of the batch is one
variable-length group of a single sequence, with no padding.

Layout (ScatterFormer ``ScatterFormerLayer3x.forward``):
  * A window is a BEV column: every ``z`` of a ``(wy, wx)`` square of ``(y, x)`` cells. So
    ``window_shape[0]`` (wz) must cover the whole grid height ``Z``: it is validated rather than
    ignored, so that a 3D window size passed by mistake fails loudly instead of silently
    meaning a column.
  * Voxels are sorted by ``(batch, window y, window x)``. Ties inside a window are broken by the
    voxel's index (a stable sort). ScatterFormer's ``torch.sort`` is unstable, so its in-window
    order is unspecified; we define it, which makes the partition deterministic and equal on CPU
    and CUDA.
  * One group per non-empty window: ``offsets`` are cu_seqlens, ``group_lengths`` the window
    counts, ``group_sample`` the sample of each window. The partition has no padded view.
  * ``shift=True`` shifts the windows by half a window on y and x (``(c + w // 2) // w``, the
    shared arithmetic of ``window_coords``). ScatterFormer itself never shifts (its Cross-Window
    Interaction replaces shifting); the option exists for symmetry with the other window layouts.

The sort key is two multiply-adds on the window indices: a native kernel would only fuse them
(the stable sort dominates) and would copy the shared window arithmetic into C++, so this layout
is pure PyTorch on every device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pointformer.ops.grouping._checks import check_voxel_coords
from pointformer.ops.grouping.windows import _triple, window_coords, windows_per_axis
from pointformer.structures.partition import Partition


def scattered_window_key(
    coords: torch.Tensor, sparse_shape: Sequence[int], window_shape: Sequence[int], shift: bool = False
) -> torch.Tensor:
    """``(N,)`` int64 sort key ``(batch * WY + window_y) * WX + window_x`` of each voxel, where
    ``(WZ, WY, WX) = windows_per_axis(sparse_shape, window_shape)`` (room for the shift). Keys
    increase with ``(batch, window y, window x)``; no validation (see ``partition_scattered``)."""
    _, wy, wx = _triple(window_shape, "window_shape")
    offset = (0, wy // 2, wx // 2) if shift else (0, 0, 0)
    window, _ = window_coords(coords, window_shape, offset)
    _, num_y, num_x = windows_per_axis(sparse_shape, window_shape)
    return (coords[:, 0].long() * num_y + window[:, 1]) * num_x + window[:, 2]


def partition_scattered(
    coords: torch.Tensor,
    batch_size: int,
    sparse_shape: Sequence[int],
    window_shape: Sequence[int],
    shift: bool = False,
) -> Partition:
    """ScatterFormer's scattered windows as a variable-length ``Partition`` (module docstring).

    Args:
        coords: ``(N, 4)`` int32 ``(batch, z, y, x)`` voxel coordinates, inside ``sparse_shape``.
        batch_size: number of samples; batch indices lie in ``[0, batch_size)``.
        sparse_shape: ``(Z, Y, X)`` grid cells.
        window_shape: ``(wz, wy, wx)`` cells; ``wz >= Z`` (windows are BEV columns).
        shift: shift the windows by ``(wy // 2, wx // 2)`` cells on y and x.

    Returns:
        A partition with one group per non-empty window, groups ordered by
        ``(batch, window y, window x)``, voxels inside a group by index; no padded view.
    """
    shape = _triple(sparse_shape, "sparse_shape")
    window = _triple(window_shape, "window_shape")
    if min(shape) < 1 or min(window) < 1:
        raise ValueError(f"partition_scattered: sparse_shape {shape} and window_shape {window} entries must be >= 1")
    if window[0] < shape[0]:
        raise ValueError(
            f"partition_scattered: windows are BEV columns, so window_shape[0] (wz = {window[0]}) must cover the "
            f"grid height Z = {shape[0]}; pass window_shape=({shape[0]}, wy, wx)"
        )
    check_voxel_coords(coords, batch_size, "partition_scattered", shape)
    key = scattered_window_key(coords, shape, window, shift)
    sorted_key, permutation = torch.sort(key, stable=True)
    window_key, counts = torch.unique_consecutive(sorted_key, return_counts=True)
    offsets = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
    _, num_y, num_x = windows_per_axis(shape, window)
    group_sample = torch.div(window_key, num_y * num_x, rounding_mode="floor")
    return Partition(permutation, offsets, group_sample)
