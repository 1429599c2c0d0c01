"""Peer implementations for the benchmark: what a user would otherwise write, so that the native
ops are measured against that and not only against our own pure-PyTorch references.

* ``voxelize_straightforward``: the idiomatic few-line PyTorch dynamic voxelization
  (``floor`` to cells, a linear key, ``torch.unique``).
* ``flatformer_mapping`` (with ``flatformer_padding_map``): the tensor ops of
  FlatFormer's official ``FlattenedWindowMapping`` (mit-han-lab/flatformer,
  ``mmdet3d/models/middle_encoders/flatformer.py``), reimplemented op for op: window coordinates
  under ``inference_mode``, the serpentine key with ``(-1) ** v`` signs and a ``b * X * Y * 10``
  batch term, an unstable ``torch.sort``, and the padding map built by a Python loop over the batch.

Both are benchmark baselines, not library code: they are checked against the native ops (tests and
the benchmark itself) so that a ratio compares like with like.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from pointformer.ops.voxelize import Voxelization, decode_voxel_keys
from pointformer.structures.grid import VoxelGrid

# FlatFormer builds its four orders in this order (``BasicBlock``: x, x_shift, y, y_shift).
FLATFORMER_ORDERS: dict[str, tuple[str, bool]] = {
    "x": ("x", False),
    "x_shift": ("x", True),
    "y": ("y", False),
    "y_shift": ("y", True),
}


def voxelize_straightforward(
    points: torch.Tensor, grid: VoxelGrid, batch_index: torch.Tensor | None = None, batch_size: int = 1
) -> Voxelization:
    """Dynamic voxelization as a user writes it in plain PyTorch.

    Args:
        points: ``(N, C)`` float, x, y, z (metres) first.
        grid: the voxel grid.
        batch_index: ``(N,)`` integer sample of each point, or None for one sample.
        batch_size: number of samples.

    Returns the ``Voxelization`` (coords ``(M, 4)`` int32 ``(b, z, y, x)`` sorted, ``point_to_voxel``
    ``(N,)`` int64 with -1 for dropped points, ``num_points`` ``(M,)`` int32). A point is kept when its
    cell ``floor((p - range_min) / voxel_size)`` lies in the grid: the native op also requires
    ``p < range_max`` in the points' dtype, so the two can differ for a point within float rounding
    below or at ``range_max`` (the benchmark checks equality on its frames).
    """
    xyz = points[:, :3]
    lo = xyz.new_tensor(grid.range_min)
    size = xyz.new_tensor(grid.voxel_size)
    cell = torch.floor((xyz - lo) / size).long()  # NaN/inf become INT64_MIN on x86: dropped below
    inside = ((cell >= 0) & (cell < torch.tensor(grid.shape_xyz, device=points.device))).all(dim=1)
    size_x, size_y, size_z = grid.shape_xyz
    batch = 0 if batch_index is None else batch_index.long()
    key = ((batch * size_z + cell[:, 2]) * size_y + cell[:, 1]) * size_x + cell[:, 0]
    keys, inverse, counts = torch.unique(key[inside], sorted=True, return_inverse=True, return_counts=True)
    point_to_voxel = torch.full((points.shape[0],), -1, dtype=torch.int64, device=points.device)
    point_to_voxel[inside] = inverse
    return Voxelization(point_to_voxel, decode_voxel_keys(keys, grid), counts.int(), grid, batch_size)


def _window_coords(
    coords: torch.Tensor, sparse_shape: Sequence[int], window_shape: Sequence[int], shifted: bool
) -> tuple[int, int, int, int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """FlatFormer's ``get_window_coors_shift`` (our shapes are ``(Z, Y, X)``, its ``(X, Y, 1)``):
    doubled sizes ``(N2, M2, N1, M1)`` and window / in-window ``(x1, y1, x2, y2)``, int64 ``(N,)``."""
    with torch.inference_mode():  # as the official function is decorated
        _, m, n = sparse_shape
        _, m2, n2 = window_shape
        n1, m1 = int(math.ceil(n / n2) + 1), int(math.ceil(m / m2) + 1)
        x, y = coords[:, 3], coords[:, 2]
        if shifted:
            x, y = x + n2 // 2, y + m2 // 2
        return 2 * n2, 2 * m2, 2 * n1, 2 * m1, x // n2, y // m2, x % n2, y % m2


def _order(coords: torch.Tensor, sparse_shape: Sequence[int], windows: tuple, axis: str) -> torch.Tensor:
    """The official serpentine key of ``axis`` over ``_window_coords``' output, and ``torch.sort``."""
    n2, m2, n1, m1, x1, y1, x2, y2 = windows
    if axis == "x":
        v = (n1 * y1 + (-1) ** y1 * x1) * n2 * m2 + (-1) ** y1 * (m2 * x2 + (-1) ** x2 * y2)
    else:
        v = (m1 * x1 + (-1) ** x1 * y1) * m2 * n2 + (-1) ** x1 * (n2 * y2 + (-1) ** y2 * x2)
    v += coords[:, 0] * sparse_shape[2] * sparse_shape[1] * 10
    return torch.sort(v).indices


def flatformer_padding_map(coords: torch.Tensor, batch_size: int, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """FlatFormer's ``(flat2win, win2flat)``, shared by its four orders.

    Each sample's sorted voxels are padded to a multiple of ``group_size``; padded slot ``p`` of the
    last group repeats position ``p - group_size`` (the same slot of the previous group).

    Returns ``flat2win`` ``(N',)`` int64: the sorted position that fills each padded slot, and
    ``win2flat`` ``(N,)`` int64: the padded slot of each sorted position.

    Raises ``ValueError`` for an empty sample or one with fewer voxels than a group, where the
    official loop fails (sample 0) or copies voxels of the previous sample (later samples).
    """
    _, counts = torch.unique(coords[:, 0], sorted=False, return_counts=True)
    if counts.shape[0] != batch_size or int(counts.min()) < group_size:
        raise ValueError(
            f"flatformer_padding_map: every sample needs >= {group_size} voxels (the official loop's rule), "
            f"got counts {counts.tolist()} for batch_size {batch_size}"
        )
    start = torch.nn.functional.pad(torch.cumsum(counts, dim=0), (1, 0))
    counts_padded = torch.div(counts + group_size - 1, group_size, rounding_mode="trunc") * group_size
    start_padded = torch.nn.functional.pad(torch.cumsum(counts_padded, dim=0), (1, 0))
    flat2win = torch.arange(int(start_padded[-1]), device=coords.device)
    win2flat = torch.arange(int(start[-1]), device=coords.device)
    for i in range(batch_size):
        # The official loop, slice for slice (each bound is a 0-dim tensor read by the slicing).
        shift = start_padded[i] - start[i]
        win2flat[start[i] : start[i + 1]] += shift
        if counts[i] != counts_padded[i]:
            tail = start_padded[i + 1] - group_size + counts[i] % group_size
            flat2win[tail : start_padded[i + 1]] = flat2win[tail - group_size : start_padded[i + 1] - group_size]
        flat2win[start_padded[i] : start_padded[i + 1]] -= shift
    return flat2win, win2flat


def flatformer_mapping(
    coords: torch.Tensor,
    batch_size: int,
    sparse_shape: Sequence[int],
    window_shape: Sequence[int],
    group_size: int,
    orders: Sequence[str] = tuple(FLATFORMER_ORDERS),
) -> dict[str, torch.Tensor]:
    """FlatFormer's per-frame mappings: ``flat2win``, ``win2flat`` and the permutation of each of
    ``orders`` (names of ``FLATFORMER_ORDERS``), as the official ``FlattenedWindowMapping.forward``
    returns them (it computes the shifted and unshifted window coordinates once for both axes).

    Args:
        coords: ``(N, 4)`` int32 or int64 ``(batch, z, y, x)``, sample-major.
        batch_size, sparse_shape ``(Z, Y, X)``, window_shape ``(1, wy, wx)``, group_size: as
            ``partition_flattened``.
    """
    coords = coords.long()
    flat2win, win2flat = flatformer_padding_map(coords, batch_size, group_size)
    mappings = {"flat2win": flat2win, "win2flat": win2flat}
    for shifted in (False, True):
        names = [n for n in orders if FLATFORMER_ORDERS[n][1] == shifted]
        if names:  # one set of window coordinates serves both axes, as in the official loop
            windows = _window_coords(coords, sparse_shape, window_shape, shifted)
            for name in names:
                mappings[name] = _order(coords, sparse_shape, windows, FLATFORMER_ORDERS[name][0])
    return mappings
