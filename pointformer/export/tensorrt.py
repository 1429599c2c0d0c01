"""TensorRT engines from an exported ONNX model, with the optimization profile taken from the size
statistics of ``deploy.json`` (``profile``: min / median / max of every dynamic size over frames).

Needs the ``tensorrt`` package and a CUDA GPU; ``unavailable_reason()`` says why an engine cannot
be built here, so callers can skip with that reason.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from pointformer.export.spec import ENGINE_FILE, MODEL_FILE, DeploySpec
from pointformer.utils.atomic import write_atomic

# The engine accepts sizes from min / MARGIN to max * MARGIN of the measured ones (frames busier or
# emptier than the measured frames still run); ``opt`` (the tuned size) is the median.
MARGIN = 1.5


def unavailable_reason() -> str | None:
    """None when an engine can be built here, else why not."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "the tensorrt package is not installed (pip install tensorrt; it needs an NVIDIA GPU and driver)"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is available (torch.cuda.is_available() is False)"
    return None


def engine_shapes(spec: DeploySpec, margin: float = MARGIN) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Per graph input, its ``(min, opt, max)`` shapes for the optimization profile."""
    if not spec.profile or not spec.profile.get("sizes"):
        raise ValueError("deploy.json has no size profile: export with frames (tools/export.py measures them)")
    sizes = spec.profile["sizes"]
    out = {}
    for i in spec.inputs:
        bounds = []
        for which in ("min", "opt", "max"):
            shape = []
            for size in i.shape:
                if isinstance(size, int):
                    shape.append(size)
                    continue
                if size not in sizes:
                    raise ValueError(f"deploy.json: the profile has no size {size!r} (input {i.name})")
                s = sizes[size]
                value = {"min": max(1, int(s["min"] / margin)), "opt": s["opt"],
                         "max": max(math.ceil(s["max"] * margin), s["opt"])}[which]  # fmt: skip
                shape.append(int(value))
            bounds.append(tuple(shape))
        out[i.name] = tuple(bounds)
    return out


def build_engine(directory: str | os.PathLike, fp16: bool = False, workspace_gib: float = 4.0) -> Path:
    """Builds ``<directory>/model.engine`` from ``model.onnx`` with one optimization profile
    (``engine_shapes``); raises RuntimeError with ``unavailable_reason()`` where it cannot."""
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"cannot build a TensorRT engine: {reason}")
    import tensorrt as trt

    directory = Path(directory)
    spec = DeploySpec.read(directory)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    explicit = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if hasattr(
        trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH") else 0  # fmt: skip
    network = builder.create_network(explicit)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(directory / MODEL_FILE)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{directory / MODEL_FILE}: TensorRT's ONNX parser failed: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2**30))
    if fp16 or spec.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in engine_shapes(spec).items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"{directory / MODEL_FILE}: TensorRT could not build an engine (see its log above)")
    return write_atomic(directory / ENGINE_FILE, bytes(serialized))
