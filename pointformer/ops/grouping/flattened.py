"""FlatFormer's window-based sorting ("flattening") and its equal-size groups.

Public: ``partition_flattened`` (the ``Partition`` of one FlatFormer ordering) and
``flattened_window_keys`` (the per-voxel sort keys); ``flattened_window_keys_reference`` is the
pure-PyTorch implementation that the native kernels (csrc/grouping/flattened_*) are tested against.

The order (FlatFormer's ``get_window_coors_shift`` / ``FlattenedWindowMapping``): with X, Y the grid
and wx, wy the window sizes, ``n1 = ceil(X / wx) + 1`` and ``m1 = ceil(Y / wy) + 1`` windows per
axis (the "+1" leaves room for the shift); shifted windows add ``(wy // 2, wx // 2)`` to (y, x).
Then, on the shifted coordinates, ``x1, x2 = divmod(x, wx)``, ``y1, y2 = divmod(y, wy)``, all sizes are doubled
(``N1, M1, N2, M2 = 2 n1, 2 m1, 2 wx, 2 wy``) and, with ``s(v) = (-1) ** v``::

    axis "x": v = (N1 * y1 + s(y1) * x1) * N2 * M2 + s(y1) * (M2 * x2 + s(x2) * y2)
    axis "y": v = (M1 * x1 + s(x1) * y1) * M2 * N2 + s(x1) * (N2 * y2 + s(y2) * x2)

Axis "x" sweeps along x one band of windows (``wy`` cells tall) at a time: window rows are major,
windows go left to right in even rows and right to left in odd rows; inside a window the columns
are major with a serpentine row order, and the whole in-window order is reversed in odd window
rows. Axis "y" is the same with x and y swapped.

Batch-major composite (exact, where FlatFormer adds ``b * X * Y * 10``, which large windows can
overflow into the next sample): ``key = (b * P + v) * Z + z`` with ``P = N1 * M1 * N2 * M2 / 2``.
Proof that ``0 <= v < P``: ``x1 <= n1 - 1`` and ``y1 <= m1 - 1`` (even shifted), so with
``K = N2 * M2 = 4 wx wy`` the in-window term ``I = M2 x2 + s(x2) y2`` lies in ``[0, K / 2)`` and
the window term ``A = N1 y1 + s(y1) x1`` in ``[0, n1 (2 m1 - 1))``, and ``A >= n1 + 1`` where
``s(y1) = -1`` (odd ``y1``); hence ``v = A K + s(y1) I`` is ``>= 0`` and
``< n1 (2 m1 - 1) K <= 2 n1 m1 K = P``. The same bounds hold for axis "y" with the roles swapped.
So the composite orders by sample first and, within a sample, exactly as FlatFormer's ``v``.

Ties: ``v`` is injective on the cells ``(y, x)`` of the grid (``|s x1| < N1 / 2`` makes ``A``
injective on ``(x1, y1)``, ``y2 < M2 / 2`` makes ``I`` injective on ``(x2, y2)``, and
``|I| < K / 2`` keeps different ``A`` apart), so two voxels share a key only if they share all of
``(b, z, y, x)`` (duplicate coords). The sort is stable: such duplicates keep their input order.

Z > 1 (FlatFormer uses pillars, Z = 1, and its key has no z): z is the least significant key, so
the voxels of one (y, x) column are consecutive, bottom to top, and the (y, x) order is
FlatFormer's. Windows are never split along z: ``window_shape[0]`` must be 1 (reserved).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pointformer.ops import _library
from pointformer.ops.grouping.assembly import partition_from_sorted
from pointformer.ops.grouping.windows import window_coords, windows_per_axis
from pointformer.structures.partition import Partition

AXES = ("x", "y")
_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1


def _check_shapes(sparse_shape: Sequence[int], window_shape: Sequence[int], axis: str) -> tuple[tuple, tuple]:
    shape = tuple(int(v) for v in sparse_shape)
    window = tuple(int(v) for v in window_shape)
    if len(shape) != 3 or min(shape) < 1 or max(shape) > _INT32_MAX:
        raise ValueError(f"sparse_shape must be 3 entries (Z, Y, X) in [1, 2^31 - 1], got {shape}")
    if len(window) != 3 or min(window) < 1 or max(window) > _INT32_MAX:
        raise ValueError(f"window_shape must be 3 entries (wz, wy, wx) in [1, 2^31 - 1], got {window}")
    if window[0] != 1:
        raise ValueError(
            f"window_shape[0] (wz) must be 1: FlatFormer's windows are pillars and z is the least significant "
            f"key, got window_shape {window}"
        )
    if axis not in AXES:
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    return shape, window


def sample_key_span(sparse_shape: Sequence[int], window_shape: Sequence[int]) -> int:
    """``P * Z``: the keys of a sample lie in ``[b * P * Z, (b + 1) * P * Z)`` (module docstring)."""
    _, m1, n1 = windows_per_axis(sparse_shape, window_shape)
    return 8 * n1 * m1 * int(window_shape[2]) * int(window_shape[1]) * int(sparse_shape[0])


def _check_coords(coords: torch.Tensor) -> None:
    if coords.dim() != 2 or coords.shape[1] != 4 or coords.dtype != torch.int32:
        raise ValueError(
            f"coords must be an int32 tensor of shape (N, 4) as (batch, z, y, x), got {coords.dtype} "
            f"{tuple(coords.shape)}"
        )


def flattened_window_keys_reference(
    coords: torch.Tensor, sparse_shape: Sequence[int], window_shape: Sequence[int], axis: str, shift: bool
) -> torch.Tensor:
    """Pure-PyTorch ``flattened_window_keys``: the arithmetic of csrc/common/flattened_keys.h.

    Voxels outside the grid (or with a negative batch, or a batch whose keys would overflow
    int64) get -1.
    """
    shape, window = _check_shapes(sparse_shape, window_shape, axis)
    _, wy, wx = window
    _, m1, n1 = windows_per_axis(shape, window)
    # FlatFormer's shift: half a window (rounded down) on x and y together.
    offset = (0, wy // 2, wx // 2) if shift else (0, 0, 0)
    win, inner = window_coords(coords, window, offset)
    y1, x1, y2, x2 = win[:, 1], win[:, 2], inner[:, 1], inner[:, 2]
    big_n1, big_m1, big_n2, big_m2 = 2 * n1, 2 * m1, 2 * wx, 2 * wy

    def sign(v: torch.Tensor) -> torch.Tensor:
        return 1 - 2 * (v & 1)

    if axis == "x":
        s1, s2 = sign(y1), sign(x2)
        v = (big_n1 * y1 + s1 * x1) * big_n2 * big_m2 + s1 * (big_m2 * x2 + s2 * y2)
    else:
        s1, s2 = sign(x1), sign(y2)
        v = (big_m1 * x1 + s1 * y1) * big_m2 * big_n2 + s1 * (big_n2 * y2 + s2 * x2)
    span = sample_key_span(shape, window)
    c = coords.long()
    b, z = c[:, 0], c[:, 1]
    hi = torch.tensor(shape, device=coords.device)
    valid = ((c[:, 1:] >= 0) & (c[:, 1:] < hi)).all(dim=1) & (b >= 0) & (b < _INT64_MAX // span)
    key = (b * (span // shape[0]) + v) * shape[0] + z
    return torch.where(valid, key, torch.full_like(key, -1))


def flattened_window_keys(
    coords: torch.Tensor, sparse_shape: Sequence[int], window_shape: Sequence[int], axis: str = "x", shift: bool = False
) -> torch.Tensor:
    """``(N,)`` int64 batch-major FlatFormer sort keys (formula and proof in the module docstring).

    Args:
        coords: ``(N, 4)`` int32 ``(batch, z, y, x)``.
        sparse_shape: ``(Z, Y, X)`` cells.
        window_shape: ``(1, wy, wx)`` cells.
        axis: ``"x"`` or ``"y"``, the direction in which the sequence advances.
        shift: shifted windows (half a window on x and y).

    Returns -1 for voxels outside the grid (``partition_flattened`` rejects them up front).
    """
    _check_coords(coords)
    shape, window = _check_shapes(sparse_shape, window_shape, axis)
    if _library.has_kernel("flattened_window_keys", coords.device):
        return torch.ops.pointformer.flattened_window_keys(coords, list(shape), list(window), axis, bool(shift))
    return flattened_window_keys_reference(coords, shape, window, axis, shift)


def partition_flattened(
    coords: torch.Tensor,
    batch_size: int,
    sparse_shape: Sequence[int],
    window_shape: Sequence[int],
    group_size: int,
    axis: str = "x",
    shift: bool = False,
) -> Partition:
    """FlatFormer's flattened-window partition: voxels sorted by ``flattened_window_keys``, then
    cut into groups of ``group_size`` per sample with FlatFormer's padding rule
    (``partition_from_sorted``).

    Args:
        coords: ``(N, 4)`` int32 ``(batch, z, y, x)``, inside ``[0, batch_size) x sparse_shape``.
        batch_size: number of samples (empty samples allowed).
        sparse_shape: ``(Z, Y, X)`` cells, e.g. ``(1, 468, 468)`` for Waymo.
        window_shape: ``(1, wy, wx)`` cells, e.g. ``(1, 13, 13)``.
        group_size: voxels per group, e.g. 144.
        axis: ``"x"`` (groups are strips along x) or ``"y"``.
        shift: shifted windows, ``(wy // 2, wx // 2)`` added to (y, x).

    Returns a ``Partition`` with the padded view ``(G, group_size)``; ``permutation`` is
    batch-major and, within a sample, FlatFormer's order (ties, only for duplicate coords, in
    input order).
    """
    _check_coords(coords)
    shape, window = _check_shapes(sparse_shape, window_shape, axis)
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if int(group_size) < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if batch_size * sample_key_span(shape, window) > _INT64_MAX:
        raise ValueError(
            f"batch_size {batch_size} x sparse_shape {shape} with window {window} overflows int64 sort keys"
        )
    if coords.shape[0]:
        # One synchronization for every bound: the keys' exactness needs coords inside the grid.
        bounds = torch.cat([coords.amin(0), coords.amax(0)]).tolist()
        lo, hi = bounds[:4], bounds[4:]
        limits = (batch_size, *shape)
        if min(lo) < 0 or any(h >= s for h, s in zip(hi, limits, strict=True)):
            raise ValueError(
                f"coords (batch, z, y, x) must lie in [0, {limits}), got min {tuple(lo)} and max {tuple(hi)}"
            )
    keys = flattened_window_keys(coords, shape, window, axis, shift)
    permutation = torch.sort(keys, stable=True).indices
    return partition_from_sorted(permutation, coords[:, 0].long(), batch_size, int(group_size))


@_library.register_fake("flattened_window_keys")
def _flattened_window_keys_fake(coords, sparse_shape, window_shape, axis, shift):
    return coords.new_empty(coords.shape[0], dtype=torch.int64)
