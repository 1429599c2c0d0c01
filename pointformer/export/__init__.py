"""Export and deployment: the detector's network as ONNX (``export_onnx``, ``tools/export.py``),
the deployed pipeline (``Runtime``: points -> voxelize + partitions -> onnxruntime -> decode + NMS)
and TensorRT engines (``build_engine``).

Names load on first use, so that ``from pointformer.export import Runtime`` imports neither the
exporter's nor the training code's modules.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "BEV": "spec",
    "POINTS": "spec",
    "DeploySpec": "spec",
    "ExportResult": "onnx_export",
    "FP16_TOLERANCE": "onnx_export",
    "NetworkGraph": "graph",
    "Runtime": "runtime",
    "build_engine": "tensorrt",
    "export_onnx": "onnx_export",
    "exportable_part": "graph",
    "max_abs_difference": "onnx_export",
    "max_relative_difference": "onnx_export",
    "prepare_inputs": "runtime",
    "torch_outputs": "onnx_export",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
