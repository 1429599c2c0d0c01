"""Each method's grouping as its published Waymo model configures it, by name: one place for the
visualizer and the benchmark to take them from."""

from __future__ import annotations

from collections.abc import Callable

import torch

from pointformer.structures.partition import Partition

LayoutFn = Callable[[torch.Tensor, int, tuple[int, int, int]], Partition]

# FlatFormer (Waymo): 13 x 13 windows, groups of 144.
FLATFORMER_WINDOW = (1, 13, 13)
FLATFORMER_GROUP_SIZE = 144


def _flattened(axis: str, shift: bool) -> LayoutFn:
    def build(coords, batch_size, shape):
        from pointformer.ops.grouping import partition_flattened

        return partition_flattened(
            coords, batch_size, shape, FLATFORMER_WINDOW, FLATFORMER_GROUP_SIZE, axis=axis, shift=shift
        )

    return build


def _rotated_sets(order: int, shifted: bool, voxels: bool) -> LayoutFn:
    def build(coords, batch_size, shape):
        from pointformer.ops.grouping import partition_rotated_sets

        # DSVT: 12 x 12 windows, and 24 x 24 shifted by 6 (hybrid factor 2); sets of 36 (pillars) or
        # 48 (voxels, windows over the full height).
        depth = shape[0] if voxels else 1
        window, shift = ((depth, 24, 24), (0, 6, 6)) if shifted else ((depth, 12, 12), (0, 0, 0))
        sets = partition_rotated_sets(coords, batch_size, shape, window, 48 if voxels else 36, shift)
        return sets.partitions[order]

    return build


def _scattered(coords, batch_size, shape):
    from pointformer.ops.grouping import partition_scattered

    # ScatterFormer: 12 x 12 BEV windows over the full height.
    return partition_scattered(coords, batch_size, shape, (shape[0], 12, 12))


def _serialized(order: str) -> LayoutFn:
    def build(coords, batch_size, shape):
        from pointformer.ops.grouping import partition_serialized

        # Point Transformer V3: patches of 1024.
        return partition_serialized(coords, batch_size, order=order, patch_size=1024)

    return build


PILLAR_LAYOUTS: dict[str, LayoutFn] = {
    "flattened-x": _flattened("x", False),
    "flattened-x-shift": _flattened("x", True),
    "flattened-y": _flattened("y", False),
    "flattened-y-shift": _flattened("y", True),
    "rotated-sets-y": _rotated_sets(0, False, False),
    "rotated-sets-x": _rotated_sets(1, False, False),
    "rotated-sets-y-shift": _rotated_sets(0, True, False),
    "rotated-sets-x-shift": _rotated_sets(1, True, False),
    "scattered": _scattered,
    "serialized-z": _serialized("z"),
    "serialized-z-trans": _serialized("z-trans"),
    "serialized-hilbert": _serialized("hilbert"),
    "serialized-hilbert-trans": _serialized("hilbert-trans"),
}

VOXEL_LAYOUTS: dict[str, LayoutFn] = {
    "rotated-sets-y": _rotated_sets(0, False, True),
    "rotated-sets-x-shift": _rotated_sets(1, True, True),
    "scattered": _scattered,
    "serialized-z": _serialized("z"),
    "serialized-hilbert": _serialized("hilbert"),
}
