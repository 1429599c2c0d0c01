"""ONNX export of a detector's network (``NetworkGraph``), its ``deploy.json``, and the check that
onnxruntime gives PyTorch's outputs."""

from __future__ import annotations

import copy
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from pointformer.export.graph import NetworkGraph, flat_head_outputs, parts_in_graph
from pointformer.export.runtime import prepare_inputs
from pointformer.export.spec import BEV, MODEL_FILE, POINTS, PREFIX_FILE, DeploySpec
from pointformer.models.fastpath import fast_inference_copy
from pointformer.ops import export_mode
from pointformer.utils.atomic import atomic_file, atomic_path

# A float16 export against the float32 PyTorch model: max |difference| / max |PyTorch value|, per
# output. float16 rounds to 2^-11 (4.9e-4) relative; weights, inputs and every activation through
# the ~25 layers of the reduced FlatFormer (VFE, 8 attention sublayers, SECOND, FPN, head) gather
# 0.5-1.7% (onnxruntime's CPU provider) and 0.6-2.0% (float16 PyTorch itself): 5e-2 leaves a margin
# of 2.5x, and a float16 node that runs wrong (a segment max that came out all zeros: 16-210%)
# stays far above it.
FP16_TOLERANCE = 5e-2


def import_onnx_exporter():
    """Checks that ``torch.onnx.export``'s (dynamo) exporter can run: it needs onnx and onnxscript."""
    missing = []
    for name in ("onnx", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(f"ONNX export needs {' and '.join(missing)}: pip install onnx==1.23.1 onnxscript==0.7.2")


def deploy_spec(detector, cfg, graph: NetworkGraph, precision: str = "fp32", opset: int | None = None,
                source: dict[str, str] | None = None) -> DeploySpec:  # fmt: skip
    """The ``DeploySpec`` of ``graph`` (profile not yet measured)."""
    options = cfg.data.options
    inputs = tuple(replace(i, dtype="float16") if precision == "fp16" and i.dtype == "float32" else i
                   for i in graph.inputs)  # fmt: skip
    bev_input = None
    if graph.part == BEV:
        shape, stride = graph.bev_input_shape()
        bev_input = {"spatial_shape": list(shape), "stride": list(stride)}
    return DeploySpec(
        part=graph.part,
        reason=graph.reason,
        point_cloud_range=tuple(cfg.grid.point_cloud_range),
        voxel_size=tuple(cfg.grid.voxel_size),
        grid_shape=tuple(cfg.grid.shape),
        max_points_per_voxel=detector.max_points_per_voxel,
        max_voxels=detector.max_voxels,
        point_features=tuple(options.get("point_features", ("x", "y", "z", "intensity", "elongation"))),
        feature_transforms=dict(options.get("feature_transforms") or {}),
        class_names=tuple(detector.class_names),
        layout=graph.layout,
        bev_input=bev_input,
        inputs=inputs,
        outputs=tuple(graph.outputs),
        decode=detector.head.decode_settings(),
        precision=precision,
        opset=opset,
        prefix={"weights": PREFIX_FILE, "config": dict(cfg.raw)} if graph.part == BEV else None,
        source=dict(source or {}),
    )


def size_profile(spec: DeploySpec, frames: Sequence[torch.Tensor], prefix=None) -> dict:
    """Every dynamic size of the graph's inputs over ``frames``: ``{"frames": n, "sizes": {name:
    {"min", "opt" (median), "max"}}}`` (the optimization profile of a TensorRT engine)."""
    seen: dict[str, list[int]] = {}
    for points in frames:
        inputs = prepare_inputs(spec, points, prefix)
        frame = {size: int(inputs[i.name].shape[axis]) for i in spec.inputs for axis, size in enumerate(i.shape)
                 if isinstance(size, str)}  # fmt: skip
        for name, value in frame.items():
            seen.setdefault(name, []).append(value)
    sizes = {n: {"min": min(v), "opt": int(statistics.median(v)), "max": max(v)} for n, v in seen.items()}
    return {"frames": len(frames), "sizes": sizes}


@dataclass(frozen=True)
class ExportResult:
    """What ``export_onnx`` wrote: the directory, the spec, the parts in and out of the graph."""

    directory: Path
    spec: DeploySpec
    in_graph: tuple[str, ...]
    outside: tuple[str, ...]


def export_onnx(
    detector,
    cfg,
    frames: Sequence[torch.Tensor],
    out_dir: str | os.PathLike,
    fp16: bool = False,
    opset: int | None = None,
    source: dict[str, str] | None = None,
    fast_path: bool = True,
) -> ExportResult:
    """Exports ``detector`` (eval mode, CPU) to ``<out_dir>/model.onnx`` with ``deploy.json`` (and
    ``prefix.pt`` for a ``"bev"`` graph).

    Args:
        detector: the detector with its trained weights (left unchanged).
        cfg: its ``Config`` (range, features, and for ``"bev"`` the config saved for the runtime).
        frames: ``(N, F)`` point frames: the first is the tracing example, all give the size profile.
        fp16: export in float16 (weights and float inputs).
        opset: ONNX opset (None: the exporter's default).
        fast_path: export the eval-mode fast path of the dense stages
            (``pointformer.models.fastpath``: BatchNorm folded into the convs, the head's branches as
            one stacked and one grouped conv; plain NCHW layout, which the graph fixes anyway).
    """
    import_onnx_exporter()
    if not frames:
        raise ValueError("export_onnx: needs at least one frame of points (the tracing example)")
    if opset is not None and not 17 <= int(opset) <= 23:
        raise ValueError(f"export_onnx: opset must be between 17 and 23 (the dynamo exporter's range), got {opset}")
    out_dir = Path(out_dir)
    detector = detector.cpu().eval()
    precision = "fp16" if fp16 else "fp32"
    # NCHW (the graph's layout) and no oneDNN post-op calls (not ONNX ops; onnxruntime fuses conv + ReLU itself).
    network = (
        fast_inference_copy(detector, channels_last=False, fuse_heads=True, fuse_activations_=False)
        if fast_path
        else copy.deepcopy(detector)
    )
    graph = NetworkGraph(network).eval()
    if fp16:
        graph = graph.half()
    spec = deploy_spec(detector, cfg, graph, precision, opset, source)
    prefix = detector if spec.part == BEV else None
    example = prepare_inputs(spec, frames[0].cpu(), prefix)
    args = tuple(example[n] for n in graph.input_names)
    with export_mode(), torch.no_grad():
        program = torch.onnx.export(
            graph, args, dynamo=True, dynamic_shapes=(graph.dynamic_shapes(),), input_names=graph.input_names,
            output_names=graph.outputs, opset_version=opset, verbose=False,
        )  # fmt: skip
    with atomic_path(out_dir / MODEL_FILE) as tmp:
        program.save(str(tmp))
    opset_used = next((o.version for o in _opsets(out_dir / MODEL_FILE) if o.domain in ("", "ai.onnx")), opset)
    spec = replace(spec, opset=opset_used, profile=size_profile(spec, [f.cpu() for f in frames], prefix))
    if spec.part == BEV:
        state = {k: v for k, v in detector.state_dict().items() if k.split(".")[0] in ("voxel_encoder", "backbone3d")}
        with atomic_file(out_dir / PREFIX_FILE) as f:
            torch.save(state, f)
    spec.write(out_dir)
    in_graph = parts_in_graph(spec.part)
    outside = tuple(n for n in ("voxel_encoder", "backbone3d") if n not in in_graph)
    return ExportResult(out_dir, spec, in_graph, outside)


def _opsets(path: Path):
    import onnx

    return onnx.load(str(path), load_external_data=False).opset_import


@torch.no_grad()
def torch_outputs(detector, points: torch.Tensor) -> list[torch.Tensor]:
    """The detector's dense outputs for one frame, by its own eager path (native ops), in the
    graph's output order (``graph.head_output_names``)."""
    batch_index = torch.zeros(points.shape[0], dtype=torch.int64, device=points.device)
    voxels = detector.voxel_encoder(points, detector.voxelize(points, batch_index, 1))
    outputs = detector.head(detector.neck(detector.backbone2d(detector.bev(detector.backbone3d(voxels)))))
    return list(flat_head_outputs(detector.head, outputs))


def max_abs_difference(runtime, detector, points: torch.Tensor) -> dict[str, float]:
    """Per output, ``max |onnxruntime - PyTorch|`` for one frame (``runtime``: a ``Runtime`` of the
    export, ``detector``: the PyTorch model it was exported from, eval mode)."""
    return {name: diff for name, (diff, _) in _differences(runtime, detector, points).items()}


def max_relative_difference(runtime, detector, points: torch.Tensor) -> dict[str, float]:
    """Per output, ``max |onnxruntime - PyTorch| / max |PyTorch|`` for one frame: the measure for a
    float16 export, whose rounding error scales with the values (an output of zeros: the absolute
    difference)."""
    return {name: diff / scale if scale > 0 else diff
            for name, (diff, scale) in _differences(runtime, detector, points).items()}  # fmt: skip


def _differences(runtime, detector, points: torch.Tensor) -> dict[str, tuple[float, float]]:
    """Per output, ``(max |onnxruntime - PyTorch|, max |PyTorch|)``."""
    ours = runtime.run_graph(runtime.inputs(points))
    reference = torch_outputs(detector.eval(), points.to(next(detector.parameters()).device))
    return {
        name: (float((o.float() - r.float().cpu()).abs().max()), float(r.float().abs().max())) if o.numel()
        else (0.0, 0.0)
        for name, o, r in zip(runtime.spec.outputs, ours, reference, strict=True)
    }  # fmt: skip


__all__ = ["FP16_TOLERANCE", "POINTS", "BEV", "ExportResult", "deploy_spec", "export_onnx", "max_abs_difference",
           "max_relative_difference", "size_profile", "torch_outputs"]  # fmt: skip
