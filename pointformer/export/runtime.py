"""``Runtime``: the deployed pipeline of one exported detector.

points -> voxelize + grouping layouts (pointformer ops) -> the ONNX model (onnxruntime, CPU or
CUDA provider) -> decode + NMS (pointformer ops) -> ``Detections``.

Nothing of the training code is imported (engine, optimizers, losses, targets, datasets): the
graph and ``deploy.json`` (``pointformer.export.spec``) are all it reads. Where the 3D backbone is
not in the graph (``part == "bev"``: sparse convolution), the voxel encoder and 3D backbone run in
PyTorch from ``prefix.pt`` (their weights only) and the config saved in ``deploy.json``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pointformer.export.layouts import LAYOUTS
from pointformer.export.spec import BEV, MODEL_FILE, POINTS, PREFIX_FILE, DeploySpec
from pointformer.models.heads.decode import decode_detections
from pointformer.models.heads.query_decode import QueryDecodeSettings, decode_queries
from pointformer.models.outputs import Detections
from pointformer.ops import voxelize
from pointformer.structures import VoxelGrid

PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}
_NUMPY = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32, "bool": np.bool_}


def import_onnxruntime():
    """``onnxruntime``, or an ImportError naming the package to install."""
    try:
        import onnxruntime
    except ImportError as e:
        raise ImportError(
            "pointformer.export needs onnxruntime to run an exported model: pip install onnxruntime==1.30.0 "
            "(onnxruntime-gpu for the CUDA provider)"
        ) from e
    return onnxruntime


def load_prefix(spec: DeploySpec, directory: str | os.PathLike, device: str | torch.device = "cpu"):
    """The detector parts that run before the graph (``part == "bev"``): built from the saved
    config, voxel encoder and 3D backbone weights from ``prefix.pt`` (``weights_only``)."""
    from pointformer.config import load_config
    from pointformer.models import build_detector

    path = Path(directory) / (spec.prefix or {}).get("weights", PREFIX_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the weights of the parts outside the graph are missing")
    model = build_detector(load_config(spec.prefix["config"]))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for name in ("voxel_encoder", "backbone3d"):
        part = {k[len(name) + 1 :]: v for k, v in state.items() if k.startswith(name + ".")}
        getattr(model, name).load_state_dict(part)
    return model.to(device).eval()


@torch.no_grad()
def prepare_inputs(spec: DeploySpec, points: torch.Tensor, prefix=None) -> dict[str, torch.Tensor]:
    """The graph's inputs for one frame of ``(N, F)`` points (the model's point features).

    ``"points"``: voxelize, keep the points inside a voxel, and compute the grouping layout by
    pointformer's ops. ``"bev"``: voxelize and run ``prefix`` (``load_prefix``) up to the 3D
    backbone's output voxels. Float inputs are cast to float16 for an fp16 graph."""
    if points.dim() != 2 or points.shape[1] != len(spec.point_features):
        raise ValueError(
            f"Runtime: points must be (N, {len(spec.point_features)}) with columns {list(spec.point_features)}, "
            f"got {tuple(points.shape)}"
        )
    points = points.float()
    grid = VoxelGrid.from_config(spec.point_cloud_range, spec.voxel_size)
    batch_index = torch.zeros(points.shape[0], dtype=torch.int64, device=points.device)
    voxels = voxelize(points, grid.voxel_size, grid.point_cloud_range, batch_index=batch_index,
                      max_points_per_voxel=spec.max_points_per_voxel, max_voxels=spec.max_voxels,
                      batch_size=1)  # fmt: skip
    if spec.part == POINTS:
        kept = torch.nonzero(voxels.point_to_voxel >= 0).squeeze(1)
        inputs = {"points": points[kept], "point_to_voxel": voxels.point_to_voxel[kept], "coords": voxels.coords}
        inputs.update(LAYOUTS[spec.layout["kind"]].compute(spec.layout, voxels.coords, grid.shape))
    else:
        if prefix is None:
            raise ValueError("Runtime: a 'bev' graph needs the PyTorch prefix (load_prefix)")
        sparse = prefix.backbone3d(prefix.voxel_encoder(points, voxels))
        inputs = {"features": sparse.features, "coords": sparse.coords}
    if spec.precision == "fp16":
        inputs = {k: v.half() if v.is_floating_point() else v for k, v in inputs.items()}
    return inputs


def num_voxels(inputs: dict[str, torch.Tensor]) -> int:
    return inputs["coords"].shape[0]


class Runtime:
    """An exported detector, ready to run on raw frames.

    Args:
        directory: what ``tools/export.py --out`` wrote (``deploy.json``, ``model.onnx``, and
            ``prefix.pt`` for a ``"bev"`` graph).
        device: ``"cpu"`` (CPUExecutionProvider) or ``"cuda"`` (CUDAExecutionProvider, falling
            back to the CPU for nodes it lacks); also where the pointformer ops run.
        threads: onnxruntime intra-op threads (None: onnxruntime's default).

    ``runtime(points)`` takes one frame's ``(N, F)`` float32 points in ``spec.point_features`` order
    (with the dataset's feature transforms applied, as the model was trained) and returns its
    ``Detections``. A frame without any voxel returns no detections.
    """

    def __init__(self, directory: str | os.PathLike, device: str = "cpu", threads: int | None = None) -> None:
        if device not in PROVIDERS:
            raise ValueError(f"Runtime: device must be one of {sorted(PROVIDERS)}, got {device!r}")
        self.directory = Path(directory)
        self.spec = DeploySpec.read(self.directory)
        self.device = torch.device(device)
        ort = import_onnxruntime()
        model = self.directory / MODEL_FILE
        if not model.is_file():
            raise FileNotFoundError(f"{model}: no ONNX model (write one with tools/export.py)")
        if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError("Runtime: device 'cuda' needs onnxruntime-gpu (CUDAExecutionProvider is not available)")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(str(model), options, providers=PROVIDERS[device])
        names = [i.name for i in self.session.get_inputs()]
        expected = [i.name for i in self.spec.inputs]
        if names != expected:
            raise ValueError(f"{model}: inputs {names} do not match deploy.json's {expected}")
        self.prefix = load_prefix(self.spec, self.directory, self.device) if self.spec.part == BEV else None

    def inputs(self, points: torch.Tensor) -> dict[str, torch.Tensor]:
        """The graph inputs of one frame (see ``prepare_inputs``)."""
        return prepare_inputs(self.spec, points.to(self.device), self.prefix)

    def run_graph(self, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """The graph's outputs (``spec.outputs`` order) for ``inputs``, as CPU tensors."""
        feed = {i.name: inputs[i.name].detach().cpu().numpy().astype(_NUMPY[i.dtype], copy=False)
                for i in self.spec.inputs}  # fmt: skip
        return [torch.from_numpy(o) for o in self.session.run(list(self.spec.outputs), feed)]

    def decode(self, outputs: Sequence[torch.Tensor]) -> list[Detections]:
        """Decode + NMS of the graph's outputs (one ``Detections`` per frame)."""
        named = dict(zip(self.spec.outputs, outputs, strict=True))
        if isinstance(self.spec.decode, QueryDecodeSettings):
            return decode_queries({k: v.to(self.device) for k, v in named.items()}, self.spec.decode)
        maps = [
            (named[f"task{t}_heatmap"].to(self.device), named[f"task{t}_code"].to(self.device),
             named[f"task{t}_iou"].to(self.device) if f"task{t}_iou" in named else None)
            for t in range(len(self.spec.decode.task_sizes))
        ]  # fmt: skip
        return decode_detections(maps, self.spec.decode)

    def __call__(self, points: torch.Tensor) -> Detections:
        inputs = self.inputs(points)
        if num_voxels(inputs) == 0:
            return Detections.empty(9 if self._velocity() else 7, self.device)
        (detections,) = self.decode(self.run_graph(inputs))
        return detections

    def _velocity(self) -> bool:
        code = next(o for o in self.session.get_outputs() if o.name in ("task0_code", "query_code"))
        return code.shape[1] == 10
