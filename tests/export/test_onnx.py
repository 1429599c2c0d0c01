"""ONNX export of every Waymo config (reduced range): onnxruntime equals PyTorch (max |diff| < 1e-4
in fp32) on two frames and on a frame of three voxels, and the deployed ``Runtime`` returns the
boxes of the ``tools/test.py`` path (``pointformer.runs.inference.predict``) for the same weights."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from helpers import CONFIGS, REDUCED_HALF, few_voxels_frame, reduced_model, sample_frames  # noqa: E402
from test_detector import make_batch  # noqa: E402

from pointformer.export import Runtime, export_onnx, max_abs_difference  # noqa: E402
from pointformer.runs.inference import predict  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

TOLERANCE = 1e-4  # fp32


@pytest.fixture(scope="module", params=CONFIGS)
def exported(request, tmp_path_factory):
    """``(name, cfg, model, runtime)`` of one config, exported once for the module's tests."""
    torch.set_num_threads(1)
    name = request.param
    cfg, model = reduced_model(name)
    out = tmp_path_factory.mktemp(name)
    result = export_onnx(model, cfg, sample_frames(name), out)
    # Two onnxruntime threads: a racy scatter (ScatterND with repeated indices) once showed only so.
    return name, cfg, model, Runtime(out, threads=2), result


def test_onnxruntime_equals_pytorch(exported):
    name, _, model, runtime, result = exported
    frames = [*sample_frames(name), few_voxels_frame(REDUCED_HALF[name])]
    counts = []
    for points in frames:
        counts.append(model.voxelize(points, torch.zeros(points.shape[0], dtype=torch.int64), 1).num_voxels)
        diffs = max_abs_difference(runtime, model, points)
        assert max(diffs.values()) < TOLERANCE, (name, counts[-1], diffs)
    assert counts[-1] <= 4 and min(counts[:-1]) > 500  # frames of many voxels and one of three or four
    if name in ("waymo_scatterformer", "waymo_centerpoint"):
        assert result.spec.part == "bev" and result.outside == ("voxel_encoder", "backbone3d")
        assert "sparse convolution" in result.spec.reason
    else:
        assert result.spec.part == "points" and result.outside == ()


def test_runtime_boxes_equal_the_test_path(exported):
    """The same frames through ``predict`` (what tools/test.py runs) and through the Runtime."""
    name, _, model, runtime, _ = exported
    frames = [*sample_frames(name), few_voxels_frame(REDUCED_HALF[name])]
    batches = [make_batch([(p, torch.zeros(0, 9), torch.zeros(0, dtype=torch.int64))]) for p in frames]
    expected = predict(model, batches, "cpu", progress=False)
    for points, want in zip(frames, expected, strict=True):
        got = runtime(points)
        labels = torch.tensor([model.class_names.index(n) for n in want.names.tolist()], dtype=torch.int64)
        assert_same_detections(got, torch.from_numpy(want.boxes), torch.from_numpy(want.scores), labels)


def assert_same_detections(got, boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor) -> None:
    """Equal detections up to the order of near-equal scores (an untrained head scores many cells
    alike, and 1e-6 differences swap neighbours): same count per class, and every box has one box
    of its class in the other set at the same centre (2e-4 m: float32 offsets of up to ~75 m
    centres, from maps that differ by rounding) with the same sizes (relative 1e-4)
    and score (1e-4). Headings agree to 1e-2 rad: an untrained head's (sin, cos) pair is close to
    (0, 0), where atan2 turns the maps' 1e-5 differences into up to ~2e-3 rad (ScatterFormer)."""
    assert len(got) == boxes.shape[0] > 0
    assert torch.bincount(got.labels, minlength=3).tolist() == torch.bincount(labels, minlength=3).tolist()
    for k in labels.unique().tolist():
        a, b = got.boxes[got.labels == k], boxes[labels == k]
        distance = torch.cdist(a[:, :3].double(), b[:, :3].double(), p=float("inf"))
        nearest = distance.argmin(1)
        assert distance.min(1).values.max() < 2e-4
        assert nearest.unique().numel() == nearest.numel()  # one to one
        b = b[nearest]
        torch.testing.assert_close(a[:, 3:6], b[:, 3:6], atol=1e-4, rtol=1e-4)
        turn = torch.remainder(a[:, 6] - b[:, 6] + torch.pi, 2 * torch.pi) - torch.pi
        assert turn.abs().max() < 1e-2
        torch.testing.assert_close(got.scores[got.labels == k], scores[labels == k][nearest], atol=1e-4, rtol=1e-4)
