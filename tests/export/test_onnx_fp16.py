"""A float16 export (``export_onnx(..., fp16=True)``) of the reduced demo FlatFormer on
onnxruntime's CPU provider agrees with the float32 PyTorch model to ``FP16_TOLERANCE`` (5e-2 of
each output's largest |value|; the reasoning is at its definition) on two frames and on a frame of
three voxels."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from helpers import DEMO, REDUCED_HALF, few_voxels_frame, reduced_model, sample_frames  # noqa: E402

from pointformer.export import FP16_TOLERANCE, Runtime, export_onnx, max_relative_difference  # noqa: E402

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def test_fp16_export_agrees_with_float32_pytorch(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg, model = reduced_model(DEMO)
        result = export_onnx(model, cfg, sample_frames(DEMO), tmp_path, fp16=True)
        runtime = Runtime(tmp_path, threads=1)
        assert result.spec.precision == "fp16"
        assert all(i.dtype == "float16" for i in result.spec.inputs if i.dtype.startswith("float"))
        for points in [*sample_frames(DEMO), few_voxels_frame(REDUCED_HALF[DEMO])]:
            diffs = max_relative_difference(runtime, model, points)
            assert max(diffs.values()) < FP16_TOLERANCE, (points.shape[0], diffs)
    finally:
        torch.set_num_threads(threads)
