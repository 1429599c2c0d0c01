"""``deploy.json``: everything the deployed pipeline needs besides the ONNX model.

Pre-processing (range, voxel size, grid, point features, the voxel caps), the graph's inputs and
outputs with their dynamic sizes, the grouping layout (windows, group sizes, shifts, pooling
strides), the post-processing (``DecodeSettings``: score thresholds, rectifier, NMS settings, the
post-centre range), the optimization profile (size statistics over frames) and, where the 3D
backbone stays in PyTorch, the file of its weights and the config it is built from.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pointformer.export.layouts import TensorSpec
from pointformer.models.heads.decode import DecodeSettings
from pointformer.models.heads.query_decode import KIND as QUERY_KIND
from pointformer.models.heads.query_decode import QueryDecodeSettings
from pointformer.utils.atomic import write_atomic

FORMAT = "pointformer-deploy/1"
SPEC_FILE, MODEL_FILE, PREFIX_FILE, ENGINE_FILE = "deploy.json", "model.onnx", "prefix.pt", "model.engine"
POINTS, BEV = "points", "bev"


@dataclass(frozen=True)
class DeploySpec:
    """The contents of ``deploy.json`` (module docstring).

    Attributes:
        part: ``"points"`` (the graph starts at the voxelized points) or ``"bev"`` (at the 3D
            backbone's output voxels; ``prefix`` then names what runs in PyTorch before it).
        reason: why the 3D backbone is not in the graph (``"bev"``), else "".
        point_cloud_range, voxel_size: metres; ``grid_shape`` ``(Z, Y, X)`` cells.
        max_points_per_voxel, max_voxels: the voxelization caps (-1: none).
        point_features, feature_transforms: the point columns the runtime expects (already
            transformed, as the dataset gives them to the model).
        class_names: label order.
        layout: the grouping layout spec (``"points"``), else None.
        bev_input: ``{"spatial_shape": (Z, Y, X), "stride": (z, y, x)}`` of the graph's input
            voxels (``"bev"``), else None.
        inputs, outputs: the graph's inputs (``TensorSpec``) and output names, in order.
        decode: the head's ``DecodeSettings`` (CenterHead) or ``QueryDecodeSettings`` (TransFusionHead,
            told apart by its ``kind``).
        precision: ``"fp32"`` or ``"fp16"``; opset: the ONNX opset.
        profile: per dynamic size ``{"min", "opt", "max"}`` (and the frames measured), or None.
        prefix: ``{"weights": file, "config": the resolved config}`` (``"bev"``), else None.
        source: ``{"config": ..., "checkpoint": ...}`` it was exported from.
    """

    part: str
    reason: str
    point_cloud_range: tuple[float, ...]
    voxel_size: tuple[float, ...]
    grid_shape: tuple[int, ...]
    max_points_per_voxel: int
    max_voxels: int
    point_features: tuple[str, ...]
    feature_transforms: dict[str, str]
    class_names: tuple[str, ...]
    layout: dict[str, Any] | None
    bev_input: dict[str, Any] | None
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[str, ...]
    decode: DecodeSettings | QueryDecodeSettings
    precision: str = "fp32"
    opset: int | None = None
    profile: dict[str, Any] | None = None
    prefix: dict[str, Any] | None = None
    source: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"format": FORMAT}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name == "inputs":
                value = [i.to_dict() for i in value]
            elif name == "decode":
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            data[name] = value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "deploy.json") -> DeploySpec:
        if data.get("format") != FORMAT:
            raise ValueError(f"{where}: not a pointformer deployment spec (format {data.get('format')!r}, "
                             f"expected {FORMAT!r})")  # fmt: skip
        missing = [n for n in _REQUIRED if n not in data]
        unknown = sorted(set(data) - set(cls.__dataclass_fields__) - {"format"})
        if missing or unknown:
            raise ValueError(f"{where}: missing keys {missing}, unknown keys {unknown}")
        values = {k: v for k, v in data.items() if k != "format"}
        try:
            values["inputs"] = tuple(TensorSpec.from_dict(i) for i in values["inputs"])
            query = isinstance(values["decode"], Mapping) and values["decode"].get("kind") == QUERY_KIND
            values["decode"] = (QueryDecodeSettings if query else DecodeSettings).from_dict(values["decode"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{where}: bad 'inputs' or 'decode': {e}") from e
        for k in ("point_cloud_range", "voxel_size", "grid_shape", "point_features", "class_names", "outputs"):
            values[k] = tuple(values[k])
        if values["part"] not in (POINTS, BEV):
            raise ValueError(f"{where}: 'part' must be {POINTS!r} or {BEV!r}, got {values['part']!r}")
        return cls(**values)

    def write(self, directory: str | os.PathLike) -> Path:
        """Writes ``<directory>/deploy.json`` atomically."""
        return write_atomic(Path(directory) / SPEC_FILE, (json.dumps(self.to_dict(), indent=2) + "\n").encode())

    @classmethod
    def read(cls, directory: str | os.PathLike) -> DeploySpec:
        """Reads ``<directory>/deploy.json``; errors name the file."""
        path = Path(directory) / SPEC_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no deployment spec (write one with tools/export.py)")
        try:
            data = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: invalid JSON: {e}") from e
        return cls.from_dict(data, str(path))


_REQUIRED = ("part", "reason", "point_cloud_range", "voxel_size", "grid_shape", "max_points_per_voxel", "max_voxels",
             "point_features", "feature_transforms", "class_names", "layout", "bev_input", "inputs", "outputs",
             "decode")  # fmt: skip
