"""The grouping layouts an exported graph takes as inputs, per 3D backbone.

A layout has three sides:

* ``spec(backbone)``: the plain numbers that define it (windows, group sizes, shifts, pooling
  strides), written to the deployment JSON;
* ``inputs(spec)``: the graph inputs it becomes (name, shape with named dynamic sizes, dtype);
* ``compute(spec, coords)``: those tensors for one frame, by pointformer's grouping ops (the
  runtime's side, native kernels where built), and ``attach(backbone, voxels, tensors)``: the
  graph's side, which puts them in the voxels' layout cache under the keys the backbone looks up,
  so that the backbone's own ``forward`` runs unchanged on them.

Partitions inside the graph carry their padded view only (``group_index``, ``key_mask``,
``slot_of_voxel``): that is all ``export_mode``'s attention path reads. Their variable-length
fields are placeholders with the right shapes (dead code in the traced graph).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from pointformer.ops import dsvt_pooling_map, partition_flattened, partition_rotated_sets
from pointformer.ops.grouping import PoolingMap, RotatedSets
from pointformer.structures import Partition, SparseVoxels

VOXELS = "voxels"  # the dynamic size of the input voxels


@dataclass(frozen=True)
class TensorSpec:
    """One graph input: ``shape`` entries are ints (static) or names of dynamic sizes."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str  # "float32", "float16", "int64", "int32" or "bool"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        return cls(str(data["name"]), tuple(data["shape"]), str(data["dtype"]))


def padded_partition(group_index: torch.Tensor, key_mask: torch.Tensor, slot_of_voxel: torch.Tensor) -> Partition:
    """A ``Partition`` with a real padded view (``(G, S)`` index and mask, ``(N,)`` output slots) and
    placeholder variable-length fields (see the module docstring)."""
    g, n = group_index.shape[0], slot_of_voxel.shape[0]
    device = group_index.device
    placeholder = torch.zeros(g, dtype=torch.int64, device=device)
    return Partition(
        torch.arange(n, device=device), torch.zeros(g + 1, dtype=torch.int64, device=device), placeholder,
        group_index, key_mask, slot_of_voxel,
    )  # fmt: skip


# --- FlatFormer ------------------------------------------------------------------------------------


class FlatFormerLayout:
    """FlatFormer's four flattened-window orders: per order ``<name>_group_index`` ``(G, S)`` and
    ``<name>_slot_of_voxel`` ``(N,)`` (no key mask: FlatFormer attends to the padding repeats)."""

    @staticmethod
    def _name(axis: str, shift: bool) -> str:
        return f"{axis}_shift" if shift else axis

    @staticmethod
    def spec(backbone) -> dict[str, Any]:
        from pointformer.models.backbones.flatformer import ORDERS

        orders = [{"name": FlatFormerLayout._name(a, s), "axis": a, "shift": s} for a, s in ORDERS]
        return {"kind": "flatformer", "window": list(backbone.window), "group_size": backbone.group_size,
                "orders": orders}  # fmt: skip

    @staticmethod
    def inputs(spec: Mapping[str, Any]) -> list[TensorSpec]:
        out = []
        for order in spec["orders"]:
            name = order["name"]
            out.append(TensorSpec(f"{name}_group_index", (f"groups_{name}", spec["group_size"]), "int64"))
            out.append(TensorSpec(f"{name}_slot_of_voxel", (VOXELS,), "int64"))
        return out

    @staticmethod
    def compute(spec: Mapping[str, Any], coords: torch.Tensor, spatial_shape) -> dict[str, torch.Tensor]:
        out = {}
        for order in spec["orders"]:
            p = partition_flattened(coords, 1, spatial_shape, spec["window"], spec["group_size"], order["axis"],
                                    order["shift"])  # fmt: skip
            out[f"{order['name']}_group_index"] = p.group_index
            out[f"{order['name']}_slot_of_voxel"] = p.slot_of_voxel
        return out

    @staticmethod
    def attach(backbone, voxels: SparseVoxels, tensors: Mapping[str, torch.Tensor]) -> None:
        from pointformer.models.backbones.flatformer import ORDERS

        for axis, shift in ORDERS:
            name = FlatFormerLayout._name(axis, shift)
            index = tensors[f"{name}_group_index"]
            partition = padded_partition(index, torch.zeros_like(index, dtype=torch.bool),
                                         tensors[f"{name}_slot_of_voxel"])  # fmt: skip
            voxels.cached(backbone.partition_key(axis, shift), lambda p=partition: p)


# --- DSVT ------------------------------------------------------------------------------------------


class DSVTLayout:
    """DSVT's rotated sets per stage and window configuration, and the pooling maps between stages.

    Per stage ``s`` and configuration ``c`` whose sets a block attends in: ``s{s}c{c}_group_index``
    and ``s{s}c{c}_key_mask`` ``(2, S, tau)`` (y-major, x-major), ``s{s}c{c}_slot_of_voxel``
    ``(2, N_s)``; for every configuration whose window coordinates a position embedding reads:
    ``s{s}c{c}_coords_in_window`` ``(N_s, 3)``. After each stage but the last:
    ``pool{s}_cell_of_voxel``, ``pool{s}_slot_of_voxel`` ``(N_s,)`` and ``pool{s}_coords``
    ``(N_{s+1}, 4)``. The position embeddings (DSVT's MLPs) run inside the graph.
    """

    @staticmethod
    def spec(backbone) -> dict[str, Any]:
        stages = []
        for s, shape in enumerate(backbone.stage_shapes):
            attended = backbone.configs_attended(s)
            configs = []
            for c, (window, shift) in enumerate(backbone.window_configs[s]):
                embedded = c in attended or not backbone.match_pos_embed_windows
                configs.append({"window": list(window), "shift": list(shift), "partitions": c in attended,
                                "coords": embedded})  # fmt: skip
            pool = list(backbone.downsample_strides[s]) if s < len(backbone.downsample_strides) else None
            stages.append({"shape": list(shape), "set_size": backbone.set_sizes[s], "configs": configs,
                           "pool_stride": pool})  # fmt: skip
        return {"kind": "dsvt", "stages": stages}

    @staticmethod
    def _voxels(s: int) -> str:
        return VOXELS if s == 0 else f"{VOXELS}_s{s}"

    @staticmethod
    def inputs(spec: Mapping[str, Any]) -> list[TensorSpec]:
        out = []
        for s, stage in enumerate(spec["stages"]):
            n, tau = DSVTLayout._voxels(s), stage["set_size"]
            for c, config in enumerate(stage["configs"]):
                if config["partitions"]:
                    sets = f"sets_s{s}c{c}"
                    out.append(TensorSpec(f"s{s}c{c}_group_index", (2, sets, tau), "int64"))
                    out.append(TensorSpec(f"s{s}c{c}_key_mask", (2, sets, tau), "bool"))
                    out.append(TensorSpec(f"s{s}c{c}_slot_of_voxel", (2, n), "int64"))
                if config["coords"]:
                    out.append(TensorSpec(f"s{s}c{c}_coords_in_window", (n, 3), "int64"))
            if stage["pool_stride"] is not None:
                out.append(TensorSpec(f"pool{s}_cell_of_voxel", (n,), "int64"))
                out.append(TensorSpec(f"pool{s}_slot_of_voxel", (n,), "int64"))
                out.append(TensorSpec(f"pool{s}_coords", (DSVTLayout._voxels(s + 1), 4), "int32"))
        return out

    @staticmethod
    def compute(spec: Mapping[str, Any], coords: torch.Tensor, spatial_shape) -> dict[str, torch.Tensor]:
        out = {}
        for s, stage in enumerate(spec["stages"]):
            shape = tuple(stage["shape"])
            for c, config in enumerate(stage["configs"]):
                if not (config["partitions"] or config["coords"]):
                    continue
                sets = partition_rotated_sets(coords, 1, shape, config["window"], stage["set_size"], config["shift"])
                if config["partitions"]:
                    out[f"s{s}c{c}_group_index"] = torch.stack([p.group_index for p in sets.partitions])
                    out[f"s{s}c{c}_key_mask"] = torch.stack([p.key_mask for p in sets.partitions])
                    out[f"s{s}c{c}_slot_of_voxel"] = torch.stack([p.slot_of_voxel for p in sets.partitions])
                if config["coords"]:
                    out[f"s{s}c{c}_coords_in_window"] = sets.coords_in_window
            if stage["pool_stride"] is not None:
                pooling = dsvt_pooling_map(coords, 1, shape, stage["pool_stride"])
                out[f"pool{s}_cell_of_voxel"] = pooling.cell_of_voxel
                out[f"pool{s}_slot_of_voxel"] = pooling.slot_of_voxel
                out[f"pool{s}_coords"] = pooling.coords
                coords = pooling.coords
        return out

    @staticmethod
    def attach(backbone, voxels: SparseVoxels, tensors: Mapping[str, torch.Tensor]) -> None:
        put = voxels.cached  # stage 0: the input voxels' cache; later stages: the pooled caches in it
        for s in range(len(backbone.stage_shapes)):
            for c, (window, shift) in enumerate(backbone.window_configs[s]):
                if f"s{s}c{c}_coords_in_window" not in tensors:
                    continue
                coords_in_window = tensors[f"s{s}c{c}_coords_in_window"]
                if f"s{s}c{c}_group_index" in tensors:
                    index, mask = tensors[f"s{s}c{c}_group_index"], tensors[f"s{s}c{c}_key_mask"]
                    slots = tensors[f"s{s}c{c}_slot_of_voxel"]
                    partitions = tuple(padded_partition(index[i], mask[i], slots[i]) for i in range(2))
                else:  # only the position embedding reads these sets
                    index = mask = coords_in_window.new_zeros(2, 0, backbone.set_sizes[s])
                    partitions = ()
                placeholder = index.new_zeros(index.shape[1])
                sets = RotatedSets(index, mask, placeholder, placeholder, coords_in_window, partitions, window, shift)
                put(backbone.sets_key(s, c), lambda v=sets: v)
            if s < len(backbone.downsample_strides):
                pooling = PoolingMap(tensors[f"pool{s}_cell_of_voxel"], tensors[f"pool{s}_slot_of_voxel"],
                                     tensors[f"pool{s}_coords"], backbone.stage_shapes[s + 1],
                                     backbone.downsample_strides[s])  # fmt: skip
                put(backbone.pooling_key(s), lambda v=pooling: v)
                cache = put(backbone.pooled_cache_key(s), dict)
                put = lambda key, compute, cache=cache: cache.setdefault(key, compute())  # noqa: E731


LAYOUTS = {"flatformer": FlatFormerLayout, "dsvt": DSVTLayout}
# 3D backbone class name -> layout kind, for the backbones whose whole forward exports.
BACKBONE_LAYOUTS = {"FlatFormer": "flatformer", "DSVT": "dsvt"}
