"""ONNX export of a TransFusionHead detector (the released nuScenes DSVT-P architecture on a reduced
range, fewer queries and a smaller query window): the query selection, the decoder layer and every
prediction branch are in the graph; onnxruntime equals PyTorch (max |diff| < 1e-4, fp32) and the
deployed ``Runtime`` returns the detections of the ``tools/test.py`` path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from helpers import calibrate, frame  # noqa: E402
from test_detector import make_batch  # noqa: E402
from test_onnx import assert_same_detections  # noqa: E402

from pointformer.config import load_config  # noqa: E402
from pointformer.export import Runtime, export_onnx, max_abs_difference  # noqa: E402
from pointformer.models import build_detector  # noqa: E402
from pointformer.runs.inference import predict  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]  # about 65 s on one thread
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

HALF = 9.0  # 60 pillars of 0.3 m: DSVT's 30 x 30 windows, BEV stages 60/30/15, a 30 x 30 head map
OVERRIDES = [
    f"voxelization.point_cloud_range=[{-HALF}, {-HALF}, -5, {HALF}, {HALF}, 3]",
    f"dataset.point_cloud_range=[{-HALF}, {-HALF}, -5, {HALF}, {HALF}, 3]",
    f"model.head.post_center_range=[{-HALF}, {-HALF}, -10, {HALF}, {HALF}, 10]",
    "model.backbone3d.num_blocks=[1]",
    "model.head.num_proposals=40",
    "model.head.query_radius=4",
]


def test_transfusion_exports(tmp_path):
    torch.set_num_threads(1)
    cfg = load_config("nuscenes_dsvt_pillar", OVERRIDES)
    torch.manual_seed(0)
    frames = [frame(HALF, 2000, 0), frame(HALF, 1500, 1)]
    model = calibrate(build_detector(cfg), frames)
    result = export_onnx(model, cfg, frames, tmp_path)
    assert result.spec.part == "points" and result.spec.decode.kind == "query"
    assert list(result.spec.outputs) == ["query_heatmap", "query_score", "query_labels", "query_code", "query_iou"]
    runtime = Runtime(tmp_path, threads=2)
    for points in frames:
        diffs = max_abs_difference(runtime, model, points)
        assert max(diffs.values()) < 1e-4, diffs
    batches = [make_batch([(p, torch.zeros(0, 9), torch.zeros(0, dtype=torch.int64))]) for p in frames]
    for points, want in zip(frames, predict(model, batches, "cpu", progress=False), strict=True):
        got = runtime(points)
        labels = torch.tensor([model.class_names.index(n) for n in want.names.tolist()], dtype=torch.int64)
        assert_same_detections(got, torch.from_numpy(want.boxes), torch.from_numpy(want.scores), labels)
