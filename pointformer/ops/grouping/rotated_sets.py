"""DSVT's dynamic set partition ("rotated sets") and DSVT-V's z-pooling map.

Public: ``partition_rotated_sets`` and its result ``RotatedSets``, ``dsvt_window_configs`` (the two
window configurations of a stage), ``dsvt_pooling_map`` and its result ``PoolingMap``.
``rotated_set_order_reference`` (window order) and ``rotated_set_index_reference`` (set sampling)
are the pure-PyTorch versions of the native ops ``dsvt_window_order`` and ``dsvt_set_index``
(csrc/grouping/), which are tested against them and fall back to them.

The index tensors are those of the official code (DSVT ``DSVTInputLayer.get_set_single_shift``):

1. Window of each voxel: ``id = b * Wmax + win_x * Wy * Wz + win_y * Wz + win_z`` with
   ``(Wz, Wy, Wx) = windows_per_axis(...)`` (the "+1" counts); non-empty windows are renumbered
   ``0..W-1`` in increasing ``id``. So windows are ordered by (sample, win_x, win_y, win_z).
2. ``n_w`` voxels in window ``w`` make ``S_w = ceil(n_w / tau)`` sets; sets are ordered by
   (window, set index ``i`` in the window).
3. Slot ``j`` of set ``i`` takes the voxel of in-window rank
   ``floor((i * tau + j) * n_w / (S_w * tau))``: the ``S_w * tau`` slots spread uniformly over the
   window's voxels, so short windows repeat voxels, consecutively.
4. Ranks follow two in-window orders: y-major (in-window y, then x, then z) for partition 0 and
   x-major (x, then y, then z) for partition 1 (the "rotation").
5. ``key_mask`` is True where a slot holds the same voxel as the previous slot of its set
   (the first slot never is): the official key-padding mask.
6. Each order's ``Partition`` (the views ``Partition.from_padded`` defines: a voxel takes its output
   from its first slot, the variable-length view lists voxels by first slot) follows in closed
   form. Over a window's flat slots ``t = i * tau + j`` the ranks ``floor(t * n_w / (S_w * tau))``
   never decrease, step by at most 1 (``S_w * tau >= n_w``) and reach ``n_w - 1``, so every rank
   ``r`` appears, first at slot ``ceil(r * S_w * tau / n_w)``. Hence ``permutation`` is the sorted
   voxel list itself (window by window, in-window order), and the sets before set ``i`` hold the
   ranks up to the last slot of set ``i - 1``: set ``i`` starts at the window's start +
   ``floor((i * tau - 1) * n_w / (S_w * tau)) + 1`` (0 for ``i = 0``) in ``permutation``. The
   native op returns these ``offsets`` and ``slot_of_voxel``; tests check them against
   ``Partition.from_padded``.

Float64 vs integers: the official code computes the rank as ``floor(double(a) / double(d))`` with
the integers ``a = (i * tau + j) * n_w`` and ``d = S_w * tau``. The reference does exactly that;
the native kernels use integer division ``a / d``, which is identical while ``n_w * S_w * tau``
< 2**53: ``a`` and ``d`` are exact doubles and IEEE division rounds ``a / d`` correctly, so an
exact quotient stays exact, and otherwise ``a / d = k + r / d`` (``1 <= r < d``) lies at least
``1 / d`` below ``k + 1``, more than half an ulp of a quotient below ``n_w`` when ``d * n_w <
2**53``, so it cannot round up to ``k + 1`` (and rounding is monotone, so it stays >= ``k``).
``partition_rotated_sets`` checks that bound on the window volume.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from pointformer.ops import _library
from pointformer.ops.grouping.windows import _triple, window_coords, windows_per_axis
from pointformer.structures.partition import Partition

Triple = tuple[int, int, int]


def dsvt_window_configs(
    window_shape: Sequence[int],
    hybrid_factor: Sequence[int] = (1, 1, 1),
    shifts: Sequence[Sequence[int]] | None = None,
) -> tuple[tuple[Triple, Triple], tuple[Triple, Triple]]:
    """The two ``(window_shape, shift)`` configurations of a DSVT stage, all ``(z, y, x)``.

    Config 0 is ``window_shape``; config 1 is ``window_shape * hybrid_factor`` (Waymo's
    ``hybrid_factor`` is ``(1, 2, 2)`` in this order: 12x12 windows, then 24x24). ``shifts`` are the
    two configs' shifts (Waymo: ``((0, 0, 0), (0, 6, 6))``); without them the official defaults
    apply: the window itself for config 0 (equivalent to no shift) and half the window for
    config 1. ``partition_rotated_sets`` zeroes the z shift where a window spans the whole height.
    """
    w0 = _triple(window_shape, "window_shape")
    h = _triple(hybrid_factor, "hybrid_factor")
    w1 = tuple(w * f for w, f in zip(w0, h, strict=True))
    if shifts is None:
        s0, s1 = w0, tuple(w // 2 for w in w1)
    else:
        if len(shifts) != 2:
            raise ValueError(f"shifts must hold the two configurations' shifts, got {shifts}")
        s0, s1 = _triple(shifts[0], "shifts[0]"), _triple(shifts[1], "shifts[1]")
    return (w0, s0), (w1, s1)  # type: ignore[return-value]


@dataclass(frozen=True, eq=False)
class RotatedSets:
    """DSVT's sets of one window configuration: ``S`` sets of ``tau`` slots, two orders.

    Attributes:
        set_voxel_index: ``(2, S, tau)`` int64 voxel of every slot; ``[0]`` y-major, ``[1]`` x-major
            (the official ``set_voxel_inds``).
        key_mask: ``(2, S, tau)`` bool, True where a slot repeats the previous slot's voxel (the
            official ``set_voxel_mask``; True = ignore as key).
        set_window: ``(S,)`` int64 window of each set (non-empty windows numbered ``0..W-1``).
        set_sample: ``(S,)`` int64 sample of each set.
        coords_in_window: ``(N, 3)`` int64 in-window ``(z, y, x)`` of each voxel (for the
            positional embedding).
        partitions: the y-major and x-major ``Partition``s (those ``Partition.from_padded`` gives,
            built in closed form: module docstring, point 6).
        window_shape, shift: the ``(z, y, x)`` configuration used (shift after the z rule).
    """

    set_voxel_index: torch.Tensor
    key_mask: torch.Tensor
    set_window: torch.Tensor
    set_sample: torch.Tensor
    coords_in_window: torch.Tensor
    partitions: tuple[Partition, Partition]
    window_shape: Triple
    shift: Triple

    @property
    def num_sets(self) -> int:
        return self.set_voxel_index.shape[1]

    @property
    def set_size(self) -> int:
        return self.set_voxel_index.shape[2]

    @property
    def y_major(self) -> Partition:
        """Partition 0: used by the first layer of a DSVT block."""
        return self.partitions[0]

    @property
    def x_major(self) -> Partition:
        """Partition 1: used by the second layer of a DSVT block."""
        return self.partitions[1]


def _effective_shift(sparse_shape: Triple, window: Triple, shift: Triple) -> Triple:
    # Official rule: a window spanning the whole height (2D windows on a 3D grid) is never shifted in z.
    return (0 if sparse_shape[0] == window[0] else shift[0], shift[1], shift[2])


def rotated_set_keys(
    coords: torch.Tensor, sparse_shape: Triple, window_shape: Triple, shift: Triple
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort keys of the two in-window orders and the in-window coordinates.

    Returns ``keys`` ``(2, N)`` int64, ``window_id * wz * wy * wx + in-window key`` with the y-major
    key ``(y * wx + x) * wz + z`` in row 0 and the x-major key ``(x * wy + y) * wz + z`` in row 1
    (keys of in-window coordinates), and ``in_window`` ``(N, 3)`` int64 ``(z, y, x)``.
    """
    wz, wy, wx = window_shape
    nz, ny, nx = windows_per_axis(sparse_shape, window_shape)
    window, in_window = window_coords(coords, window_shape, shift)
    window_id = coords[:, 0].long() * (nz * ny * nx) + (window[:, 2] * ny + window[:, 1]) * nz + window[:, 0]
    z, y, x = in_window.unbind(1)
    base = window_id * (wz * wy * wx)
    keys = torch.stack([base + (y * wx + x) * wz + z, base + (x * wy + y) * wz + z])
    return keys, in_window


def rotated_set_order_reference(
    coords: torch.Tensor, batch_size: int, sparse_shape: Triple, window_shape: Triple, shift: Triple
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pure-PyTorch ``dsvt_window_order``: voxels window by window in both in-window orders.

    Returns ``order`` ``(2, N)`` int64 (the stable sort of ``rotated_set_keys``: row 0 y-major, row 1
    x-major), ``window_counts`` ``(W,)`` int64 voxels of each non-empty window in that order, and
    ``in_window`` ``(N, 3)`` int64. ``batch_size`` is unused here (the native kernels check it).
    """
    del batch_size
    volume = window_shape[0] * window_shape[1] * window_shape[2]
    keys, in_window = rotated_set_keys(coords, sparse_shape, window_shape, shift)
    sorted_keys, order = torch.sort(keys, dim=1, stable=True)
    # Both orders put windows in the same places; count each window's voxels on row 0.
    window_counts = torch.unique_consecutive(
        torch.div(sorted_keys[0], volume, rounding_mode="floor"), return_counts=True
    )[1]
    return order, window_counts, in_window


@_library.register_fake("dsvt_window_order")
def _dsvt_window_order_fake(coords, batch_size, sparse_shape, window_shape, shift):
    num_windows = torch.library.get_ctx().new_dynamic_size()
    n = coords.shape[0]
    return (
        coords.new_empty(2, n, dtype=torch.int64),
        coords.new_empty(num_windows, dtype=torch.int64),
        coords.new_empty(n, 3, dtype=torch.int64),
    )


def partition_rotated_sets(
    coords: torch.Tensor,
    batch_size: int,
    sparse_shape: Sequence[int],
    window_shape: Sequence[int],
    set_size: int,
    shift: Sequence[int] = (0, 0, 0),
) -> RotatedSets:
    """DSVT's dynamic sets over one window configuration (see the module docstring).

    Args:
        coords: ``(N, 4)`` int ``(batch, z, y, x)``, unique, inside ``sparse_shape``.
        batch_size: number of samples.
        sparse_shape: ``(Z, Y, X)`` grid cells (DSVT-P Waymo ``(1, 468, 468)``).
        window_shape: ``(wz, wy, wx)`` cells (DSVT-P Waymo ``(1, 12, 12)`` or ``(1, 24, 24)``).
        set_size: ``tau`` voxels per set (36 for DSVT-P, 48 for DSVT-V on Waymo).
        shift: ``(sz, sy, sx)`` cells, each in ``[0, w]`` (``(0, 6, 6)`` for Waymo's config 1);
            ``sz`` is taken as 0 when ``wz == Z``.
    """
    shape = _triple(sparse_shape, "sparse_shape")
    window = _triple(window_shape, "window_shape")
    shift = _effective_shift(shape, window, _triple(shift, "shift"))
    if coords.dim() != 2 or coords.shape[1] != 4 or coords.dtype.is_floating_point:
        raise ValueError(f"coords must be an integer (N, 4) tensor, got {coords.dtype} {tuple(coords.shape)}")
    if set_size < 1:
        raise ValueError(f"set_size must be >= 1, got {set_size}")
    if min(window) < 1 or any(not 0 <= s <= w for s, w in zip(shift, window, strict=True)):
        raise ValueError(f"window_shape entries must be >= 1 and shifts within [0, window], got {window}, {shift}")
    volume = window[0] * window[1] * window[2]
    if volume * (volume + set_size) >= 2**53:
        raise ValueError(f"window {window} is too large for exact set sampling")  # see the module docstring
    num_windows = batch_size * torch.Size(windows_per_axis(shape, window)).numel()
    if num_windows * volume >= 2**62:
        raise ValueError(f"batch_size {batch_size} x windows of {window} overflow int64 sort keys")

    if _library.has_kernel("dsvt_window_order", coords.device):
        order, window_counts, in_window = torch.ops.pointformer.dsvt_window_order(
            coords.to(torch.int32), batch_size, list(shape), list(window), list(shift)
        )
    else:
        order, window_counts, in_window = rotated_set_order_reference(coords, batch_size, shape, window, shift)

    if _library.has_kernel("dsvt_set_index", coords.device):
        views = torch.ops.pointformer.dsvt_set_index(order, window_counts, set_size)
    else:
        views = rotated_set_index_reference(order, window_counts, set_size)
    index, mask, set_window, offsets, slot_of_voxel = views

    set_sample = coords[index[0, :, 0], 0].long()
    # The views Partition.from_padded would compute, in closed form (module docstring, point 6).
    partitions = tuple(Partition(order[k], offsets, set_sample, index[k], mask[k], slot_of_voxel[k]) for k in range(2))
    return RotatedSets(index, mask, set_window, set_sample, in_window, partitions, window, shift)  # type: ignore[arg-type]


def rotated_set_index_reference(
    sorted_voxels: torch.Tensor, window_counts: torch.Tensor, set_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pure-PyTorch ``dsvt_set_index``: set sampling and gather, in the official float64 math.

    Args:
        sorted_voxels: ``(K, N)`` int64; row ``k`` lists the voxels window by window, each window's
            voxels in the ``k``-th in-window order.
        window_counts: ``(W,)`` int64 voxels of each window (all >= 1), in that window order.
        set_size: ``tau``.

    Returns:
        ``index`` ``(K, S, tau)`` int64, ``key_mask`` ``(K, S, tau)`` bool, ``set_window`` ``(S,)`` int64,
        and the variable-length view shared by the ``K`` partitions (module docstring, point 6):
        ``set_offsets`` ``(S + 1,)`` int64 and ``slot_of_voxel`` ``(K, N)`` int64 (each voxel's first
        flat slot); the partitions' ``permutation`` is ``sorted_voxels[k]`` itself.
    """
    device = window_counts.device
    tau = set_size
    counts = window_counts.long()
    sets_per_window = torch.div(counts + tau - 1, tau, rounding_mode="floor")
    set_window = torch.repeat_interleave(torch.arange(counts.shape[0], device=device), sets_per_window)
    first_set = torch.cumsum(sets_per_window, 0) - sets_per_window
    set_in_window = torch.arange(set_window.shape[0], device=device) - first_set[set_window]
    slot = set_in_window[:, None] * tau + torch.arange(tau, device=device)
    numerator = slot * counts[set_window][:, None]
    denominator = (sets_per_window[set_window] * tau)[:, None]
    rank = torch.floor(numerator.double() / denominator.double()).long()
    window_start = torch.cumsum(counts, 0) - counts
    index = sorted_voxels[:, window_start[set_window][:, None] + rank]
    previous = torch.roll(index, 1, dims=-1)
    previous[..., 0] = -1
    # Closed-form Partition views, in integers (exact: the products stay below n_w * S_w * tau).
    n = sorted_voxels.shape[1]
    set_count, set_slots = counts[set_window], sets_per_window[set_window] * tau
    before = torch.where(set_in_window > 0, (set_in_window * tau - 1) * set_count // set_slots + 1, 0)
    offsets = torch.cat([window_start[set_window] + before, counts.new_full((1,), n)])
    voxel_window = torch.repeat_interleave(torch.arange(counts.shape[0], device=device), counts, output_size=n)
    voxel_rank = torch.arange(n, device=device) - window_start[voxel_window]
    window_slots = sets_per_window[voxel_window] * tau
    first_slot = (
        first_set[voxel_window] * tau + (voxel_rank * window_slots + counts[voxel_window] - 1) // counts[voxel_window]
    )
    slot_of_voxel = torch.empty_like(sorted_voxels).scatter_(1, sorted_voxels, first_slot.expand_as(sorted_voxels))
    return index, index == previous, set_window, offsets, slot_of_voxel


@_library.register_fake("dsvt_set_index")
def _dsvt_set_index_fake(sorted_voxels, window_counts, set_size):
    num_sets = torch.library.get_ctx().new_dynamic_size()
    k = sorted_voxels.shape[0]
    return (
        sorted_voxels.new_empty(k, num_sets, set_size, dtype=torch.int64),
        sorted_voxels.new_empty(k, num_sets, set_size, dtype=torch.bool),
        sorted_voxels.new_empty(num_sets, dtype=torch.int64),
        sorted_voxels.new_empty(num_sets + 1, dtype=torch.int64),
        sorted_voxels.new_empty(k, sorted_voxels.shape[1], dtype=torch.int64),
    )


# --- DSVT-V pooling -----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PoolingMap:
    """Where each voxel goes in DSVT-V's attention pooling (``get_pooling_index``).

    Voxel ``v`` fills slot ``slot_of_voxel[v]`` of pooled cell ``cell_of_voxel[v]`` in the
    ``(M, P, C)`` placeholder.

    Attributes:
        cell_of_voxel: ``(N,)`` int64 pooled cell, cells numbered in sorted ``(b, z, y, x)`` order
            (the order of voxel coords everywhere here; the official code numbers them in
            ``(b, x, y, z)`` order, which permutes the cells and changes no output of the model).
        slot_of_voxel: ``(N,)`` int64 in ``[0, P)``: ``((x % sx) * sy + y % sy) * sz + z % sz``
            (the official x-major in-cell index).
        coords: ``(M, 4)`` int32 ``(batch, z // sz, y // sy, x // sx)`` of the pooled cells, sorted.
        spatial_shape: pooled ``(Z, Y, X)``, ``ceil(shape / stride)``.
        stride: ``(sz, sy, sx)``.
    """

    cell_of_voxel: torch.Tensor
    slot_of_voxel: torch.Tensor
    coords: torch.Tensor
    spatial_shape: Triple
    stride: Triple

    @property
    def num_cells(self) -> int:
        return self.coords.shape[0]

    @property
    def num_slots(self) -> int:
        """``P = sz * sy * sx``."""
        return self.stride[0] * self.stride[1] * self.stride[2]


def dsvt_pooling_map(
    coords: torch.Tensor, batch_size: int, sparse_shape: Sequence[int], stride: Sequence[int]
) -> PoolingMap:
    """DSVT-V's pooling map between stages (stride ``(sz, sy, sx)``, e.g. ``(4, 1, 1)``).

    Args:
        coords: ``(N, 4)`` int ``(batch, z, y, x)``, unique, inside ``sparse_shape`` ``(Z, Y, X)``.
        batch_size: number of samples.
        sparse_shape: ``(Z, Y, X)`` of the current stage.
        stride: ``(sz, sy, sx)`` pooling stride, each >= 1.
    """
    shape = _triple(sparse_shape, "sparse_shape")
    s = _triple(stride, "stride")
    if min(s) < 1:
        raise ValueError(f"stride entries must be >= 1, got {s}")
    pooled = tuple(-(-n // k) for n, k in zip(shape, s, strict=True))
    if batch_size * pooled[0] * pooled[1] * pooled[2] >= 2**62:
        raise ValueError(f"batch_size {batch_size} x pooled grid {pooled} overflows int64 cell keys")
    # Pooling cells are windows with the stride as window shape and no shift.
    cell, in_cell = window_coords(coords, s, (0, 0, 0))
    b = coords[:, 0].long()
    key = ((b * pooled[0] + cell[:, 0]) * pooled[1] + cell[:, 1]) * pooled[2] + cell[:, 2]
    cell_keys, cell_of_voxel = torch.unique(key, sorted=True, return_inverse=True)
    z, y, x = in_cell.unbind(1)
    slot = (x * s[1] + y) * s[0] + z
    px = cell_keys % pooled[2]
    py = torch.div(cell_keys, pooled[2], rounding_mode="floor") % pooled[1]
    pz = torch.div(cell_keys, pooled[2] * pooled[1], rounding_mode="floor") % pooled[0]
    pb = torch.div(cell_keys, pooled[2] * pooled[1] * pooled[0], rounding_mode="floor")
    pooled_coords = torch.stack([pb, pz, py, px], dim=1).to(torch.int32)
    return PoolingMap(cell_of_voxel, slot, pooled_coords, pooled, s)  # type: ignore[arg-type]
