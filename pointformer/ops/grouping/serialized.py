"""Point Transformer V3 serialization: voxels ordered along a space-filling curve, cut into patches.

Codes (``serialization_codes``), PTv3's layout so that its orders carry over:
  * ``order`` is one of ``"z"``, ``"z-trans"``, ``"hilbert"``, ``"hilbert-trans"``; ``-trans``
    swaps x and y before encoding.
  * Z-order: bit ``i`` of x goes to code bit ``3i + 2``, of y to ``3i + 1``, of z to ``3i``.
  * Hilbert: Skilling's transpose algorithm (J. Skilling, "Programming the Hilbert curve", AIP
    Conf. Proc. 707, 2004) in 3 dims with the axes ``X[0] = x, X[1] = y, X[2] = z`` (after the
    ``-trans`` swap). The transposed index is read out with the z-order layout: bit ``i`` of
    ``X[0]`` goes to code bit ``3i + 2``, of ``X[1]`` to ``3i + 1``, of ``X[2]`` to ``3i``. On a
    full ``2^depth`` cube consecutive codes are face neighbours, starting at the origin.
  * ``depth`` bits per axis, ``depth <= 16``: by default the bit length of the largest spatial
    coordinate (PTv3's standalone rule, ``int(max).bit_length()``; 0 when every coordinate is 0).
    Only the low ``depth`` bits of each coordinate enter the code; the public functions check that
    every coordinate is below ``2^depth``.
  * The batch sits above the code: ``code | batch << (3 * depth)``; ValueError when that does not
    fit in 63 bits.

Patches (``partition_serialized``): voxels sorted by code (a stable sort, so equal codes keep
their index order), cut per sample into patches of ``patch_size`` with ``partition_from_sorted``,
whose padding rule is PTv3's: padded slots repeat the voxels ``patch_size`` positions earlier, and
a sample smaller than a patch is one shorter group in the variable-length view.

Coordinates must be non-negative (voxel coordinates, as PTv3's ``grid_coord``).
"""

from __future__ import annotations

import torch

from pointformer.ops import _library
from pointformer.ops.grouping._checks import check_voxel_coords
from pointformer.ops.grouping.assembly import partition_from_sorted
from pointformer.structures.partition import Partition

ORDERS = ("z", "z-trans", "hilbert", "hilbert-trans")
MAX_DEPTH = 16


def serialization_codes(
    coords: torch.Tensor, order: str = "z", depth: int | None = None, batch_size: int | None = None
) -> torch.Tensor:
    """Space-filling-curve code of each voxel, batch on top (module docstring).

    Args:
        coords: ``(N, 4)`` int32 ``(batch, z, y, x)``, non-negative.
        order: ``"z"``, ``"z-trans"``, ``"hilbert"`` or ``"hilbert-trans"``.
        depth: bits per axis (``0..16``); default the bit length of the largest spatial coordinate.
        batch_size: number of samples, for the overflow check; default ``max(batch) + 1``.

    Returns:
        ``(N,)`` int64 ``code | batch << (3 * depth)``.
    """
    depth, _ = _resolve_depth(coords, order, depth, batch_size, "serialization_codes")
    return _codes(coords, order, depth)


def partition_serialized(
    coords: torch.Tensor, batch_size: int, order: str = "z", patch_size: int | None = 1024, depth: int | None = None
) -> Partition:
    """PTv3 patches along a space-filling curve as a ``Partition``.

    Args:
        coords: ``(N, 4)`` int32 ``(batch, z, y, x)``, non-negative, batch in ``[0, batch_size)``.
        batch_size: number of samples.
        order: curve, see ``serialization_codes``.
        patch_size: voxels per patch (the padded view's ``S``), or None for one group per sample.
        depth: bits per axis; default the bit length of the largest spatial coordinate.

    Returns:
        Groups of consecutive voxels along the curve, sample-major; each sample's last patch is
        padded by repeating the voxels ``patch_size`` positions earlier (``key_mask`` marks them).
    """
    depth, _ = _resolve_depth(coords, order, depth, batch_size, "partition_serialized")
    if patch_size is not None and patch_size < 1:
        raise ValueError(f"partition_serialized: patch_size must be >= 1 or None, got {patch_size}")
    codes = _codes(coords, order, depth)
    permutation = torch.sort(codes, stable=True).indices
    return partition_from_sorted(permutation, coords[:, 0].long(), batch_size, patch_size)


def _resolve_depth(
    coords: torch.Tensor, order: str, depth: int | None, batch_size: int | None, name: str
) -> tuple[int, int]:
    if order not in ORDERS:
        raise ValueError(f"{name}: order must be one of {ORDERS}, got {order!r}")
    max_batch, max_coord = check_voxel_coords(coords, batch_size if batch_size is not None else 2**62, name)
    if depth is None:
        depth = max_coord.bit_length()
    if not 0 <= depth <= MAX_DEPTH:
        raise ValueError(
            f"{name}: depth must be in [0, {MAX_DEPTH}], got {depth} (largest coordinate {max_coord}); "
            f"use larger voxels or a smaller grid"
        )
    if max_coord >= 1 << depth:
        raise ValueError(f"{name}: coordinate {max_coord} does not fit in depth {depth} bits")
    batch_bits = ((batch_size if batch_size is not None else max_batch + 1) - 1).bit_length()
    if 3 * depth + batch_bits > 63:
        raise ValueError(
            f"{name}: codes of depth {depth} (3 * {depth} bits) with {batch_bits} batch bits do not fit in 63 bits"
        )
    return depth, batch_bits


def _codes(coords: torch.Tensor, order: str, depth: int) -> torch.Tensor:
    if _library.has_kernel("serialization_codes", coords.device):
        return torch.ops.pointformer.serialization_codes(coords, depth, order)
    return serialization_codes_reference(coords, order, depth)


# --- pure-PyTorch reference: the arithmetic of csrc/common/space_filling_curves.h, step for step ---


def serialization_codes_reference(coords: torch.Tensor, order: str, depth: int) -> torch.Tensor:
    """Pure-PyTorch ``serialization_codes`` without validation: ``(N,)`` int64 codes of the low
    ``depth`` bits of each coordinate, ``| batch << (3 * depth)``."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    c = coords.long()
    mask = (1 << depth) - 1
    x, y, z = c[:, 3] & mask, c[:, 2] & mask, c[:, 1] & mask
    if order.endswith("-trans"):
        x, y = y, x
    if order.startswith("hilbert"):
        x, y, z = _hilbert_transpose(x, y, z, depth)
    return _interleave(x, y, z, depth) | (c[:, 0] << (3 * depth))


def _interleave(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, depth: int) -> torch.Tensor:
    """Bit ``i`` of x, y, z to bits ``3i + 2``, ``3i + 1``, ``3i``."""
    code = torch.zeros_like(x)
    for i in range(depth):
        code |= ((x >> i) & 1) << (3 * i + 2)
        code |= ((y >> i) & 1) << (3 * i + 1)
        code |= ((z >> i) & 1) << (3 * i)
    return code


def _hilbert_transpose(
    x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, depth: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Skilling's AxesToTranspose for 3 axes ``X = (x, y, z)`` of ``depth`` bits."""
    axes = [x, y, z]
    top = 1 << (depth - 1) if depth else 0
    # Undo the excess work: from the top bit down, reflect or exchange the lower bits.
    q = top
    while q > 1:
        p = q - 1
        for i in range(3):
            bit = (axes[i] & q) != 0
            # Bit set: invert the low bits of X[0]; else exchange the low bits of X[0] and X[i].
            t = torch.where(bit, 0, (axes[0] ^ axes[i]) & p)
            axes[0] = torch.where(bit, axes[0] ^ p, axes[0] ^ t)
            if i:
                axes[i] = axes[i] ^ t
        q >>= 1
    # Gray encode.
    axes[1] = axes[1] ^ axes[0]
    axes[2] = axes[2] ^ axes[1]
    t = torch.zeros_like(x)
    q = top
    while q > 1:
        t = torch.where((axes[2] & q) != 0, t ^ (q - 1), t)
        q >>= 1
    return axes[0] ^ t, axes[1] ^ t, axes[2] ^ t


@_library.register_fake("serialization_codes")
def _serialization_codes_fake(coords, depth, order):
    return coords.new_empty(coords.shape[0], dtype=torch.int64)
