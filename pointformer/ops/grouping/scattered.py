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

Native path (``scattered_window_keys`` and ``sort_window_keys``, csrc/grouping/scattered_*): one
kernel computes the keys (-1 for voxels outside the grid, so the range check is one ``aminmax`` of
the keys instead of per-column bounds), and on the CPU a stable radix sort of the bounded keys
returns the permutation together with the runs of equal keys (the offsets); on CUDA that step is
torch's stable sort. The pure-PyTorch path (``scattered_window_keys_reference``, ``torch.sort``,
``unique_consecutive``) runs under ``pointformer.ops.reference_only()`` and gives identical outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pointformer.ops import _library
from pointformer.ops.grouping._checks import check_voxel_coords
from pointformer.ops.grouping.windows import _triple, window_coords, windows_per_axis
from pointformer.structures.partition import Partition

_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1


def _check_shapes(sparse_shape: Sequence[int], window_shape: Sequence[int], name: str) -> tuple[tuple, tuple]:
    shape = _triple(sparse_shape, "sparse_shape")
    window = _triple(window_shape, "window_shape")
    if min(shape) < 1 or min(window) < 1 or max(shape) > _INT32_MAX or max(window) > _INT32_MAX:
        raise ValueError(f"{name}: sparse_shape {shape} and window_shape {window} entries must be in [1, 2^31 - 1]")
    return shape, window


def scattered_window_keys_reference(
    coords: torch.Tensor, sparse_shape: Sequence[int], window_shape: Sequence[int], shift: bool = False
) -> torch.Tensor:
    """Pure-PyTorch ``scattered_window_keys``: the arithmetic of csrc/common/scattered_keys.h."""
    shape, window = _check_shapes(sparse_shape, window_shape, "scattered_window_keys")
    _, wy, wx = window
    offset = (0, wy // 2, wx // 2) if shift else (0, 0, 0)
    win, _ = window_coords(coords, window, offset)
    _, num_y, num_x = windows_per_axis(shape, window)
    c = coords.long()
    b = c[:, 0]
    hi = torch.tensor(shape, device=coords.device)
    valid = ((c[:, 1:] >= 0) & (c[:, 1:] < hi)).all(dim=1) & (b >= 0) & (b < _INT64_MAX // (num_y * num_x))
    key = (b * num_y + win[:, 1]) * num_x + win[:, 2]
    return torch.where(valid, key, torch.full_like(key, -1))


def scattered_window_keys(
    coords: torch.Tensor, sparse_shape: Sequence[int], window_shape: Sequence[int], shift: bool = False
) -> torch.Tensor:
    """``(N,)`` int64 sort key ``(batch * WY + window_y) * WX + window_x`` of each voxel, where
    ``(WZ, WY, WX) = windows_per_axis(sparse_shape, window_shape)`` (room for the shift). Keys
    increase with ``(batch, window y, window x)``; voxels outside the grid, with a negative batch
    or with a batch whose keys overflow int64 get -1 (``partition_scattered`` rejects them).

    Args:
        coords: ``(N, 4)`` int32 ``(batch, z, y, x)``.
        sparse_shape: ``(Z, Y, X)`` cells.
        window_shape: ``(wz, wy, wx)`` cells (``wz`` is not used by the key).
        shift: shift the windows by ``(wy // 2, wx // 2)`` cells on y and x.
    """
    if coords.dim() != 2 or coords.shape[1] != 4 or coords.dtype != torch.int32:
        raise ValueError(
            f"scattered_window_keys: coords must be int32 (N, 4) (batch, z, y, x), got {coords.dtype} "
            f"{tuple(coords.shape)}"
        )
    shape, window = _check_shapes(sparse_shape, window_shape, "scattered_window_keys")
    if _library.has_kernel("scattered_window_keys", coords.device):
        return torch.ops.pointformer.scattered_window_keys(coords, list(shape), list(window), bool(shift))
    return scattered_window_keys_reference(coords, shape, window, shift)


scattered_window_key = scattered_window_keys  # earlier name


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
    _, num_y, num_x = windows_per_axis(shape, window)
    device = coords.device
    if _library.has_kernel("scattered_window_keys", device) and _library.has_kernel("sort_window_keys", device):
        if coords.dim() != 2 or coords.shape[1] != 4 or coords.dtype != torch.int32 or batch_size < 1:
            check_voxel_coords(coords, batch_size, "partition_scattered", shape)  # raises
        num_keys = batch_size * num_y * num_x
        if num_keys > _INT64_MAX:
            raise ValueError(f"partition_scattered: batch_size {batch_size} x {num_y * num_x} windows overflows int64")
        key = scattered_window_keys(coords, shape, window, shift)
        if key.shape[0]:
            low, high = torch.stack(torch.aminmax(key)).tolist()
            if low < 0 or high >= num_keys:  # a voxel outside the grid or the batch: name it
                check_voxel_coords(coords, batch_size, "partition_scattered", shape)
                raise ValueError(f"partition_scattered: window keys outside [0, {num_keys})")
        permutation, offsets, window_key = torch.ops.pointformer.sort_window_keys(key, num_keys)
    else:
        check_voxel_coords(coords, batch_size, "partition_scattered", shape)
        key = scattered_window_keys(coords, shape, window, shift)
        sorted_key, permutation = torch.sort(key, stable=True)
        window_key, counts = torch.unique_consecutive(sorted_key, return_counts=True)
        offsets = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
    group_sample = torch.div(window_key, num_y * num_x, rounding_mode="floor")
    return Partition(permutation, offsets, group_sample)


@_library.register_fake("scattered_window_keys")
def _scattered_window_keys_fake(coords, sparse_shape, window_shape, shift):
    return coords.new_empty(coords.shape[0], dtype=torch.int64)


@_library.register_fake("sort_window_keys")
def _sort_window_keys_fake(keys, num_keys):
    groups = torch.library.get_ctx().new_dynamic_size()
    return keys.new_empty(keys.shape[0]), keys.new_empty(groups + 1), keys.new_empty(groups)
