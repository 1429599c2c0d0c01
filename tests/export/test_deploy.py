"""The network under torch.export (native ops through their fake kernels) and the model under
torch.compile (CPU); tools/export.py end to end on a tiny checkpoint; bad inputs; the Runtime
imports no training code; --tensorrt skips with its reason where TensorRT or a GPU is missing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from helpers import reduced_model, reduced_overrides, sample_frames  # noqa: E402
from test_detector import make_batch  # noqa: E402
from test_onnx import assert_same_detections  # noqa: E402

from pointformer.engine.checkpoint import save_checkpoint  # noqa: E402
from pointformer.export import NetworkGraph, prepare_inputs  # noqa: E402
from pointformer.export.cli import main as export_main  # noqa: E402
from pointformer.export.onnx_export import deploy_spec  # noqa: E402
from pointformer.export.tensorrt import engine_shapes, unavailable_reason  # noqa: E402
from pointformer.ops import export_mode  # noqa: E402
from pointformer.utils.cli import run_tool  # noqa: E402

ROOT = Path(__file__).parents[2]

pytestmark = pytest.mark.usefixtures("one_thread")


def graph_and_inputs(name: str):
    cfg, model = reduced_model(name)
    graph = NetworkGraph(model).eval()
    spec = deploy_spec(model, cfg, graph)
    prefix = model if spec.part == "bev" else None
    frames = [prepare_inputs(spec, p, prefix) for p in sample_frames(name)]
    return graph, [tuple(f[n] for n in graph.input_names) for f in frames]


@pytest.mark.parametrize("name", ["waymo_flatformer", "waymo_dsvt_pillar"])
def test_torch_export_with_native_ops(name):
    """The graph keeps pointformer's native ops (the VFE's segment_reduce) through their fake
    kernels, with the voxel and group counts dynamic: a second frame of other sizes runs too."""
    graph, (first, second) = graph_and_inputs(name)
    program = torch.export.export(graph, first, dynamic_shapes=(graph.dynamic_shapes(),))
    ops = {str(n.target) for n in program.graph.nodes if "pointformer" in str(n.target)}
    assert "pointformer.segment_reduce.default" in ops
    assert first[0].shape != second[0].shape
    with torch.no_grad():
        for args in (first, second):
            for got, want in zip(program.module()(*args), graph(*args), strict=True):
                torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_torch_export_in_export_mode_has_no_native_op():
    graph, (first, _) = graph_and_inputs("waymo_dsvt_voxel")
    with export_mode():
        program = torch.export.export(graph, first, dynamic_shapes=(graph.dynamic_shapes(),))
    assert not [n for n in program.graph.nodes if "pointformer" in str(n.target)]


def test_torch_compile_detector_matches_eager():
    """torch.compile (CPU, aot_eager: dynamo + AOT tracing through the fake kernels, graph breaks at
    the data-dependent ops) of the whole detector gives eager's detections."""
    name = "waymo_flatformer"
    _, model = reduced_model(name)
    batch = make_batch([(sample_frames(name)[0], torch.zeros(0, 9), torch.zeros(0, dtype=torch.int64))])
    compiled = torch.compile(model, backend="aot_eager")
    with torch.no_grad():
        (want,) = model(batch)
        (got,) = compiled(batch)
    assert_same_detections(got, want.boxes, want.scores, want.labels)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tools/train.py-format checkpoint of the reduced DSVT-P (weights from seed 0)."""
    torch.set_num_threads(1)
    _, model = reduced_model("waymo_dsvt_pillar")
    path = tmp_path_factory.mktemp("ckpt") / "epoch_001.pth"
    save_checkpoint({"model": model.state_dict(), "epoch": 1, "iteration": 1, "config": {}}, path)
    return path


def cli(*args) -> list[str]:
    return ["--cfg", "waymo_dsvt_pillar", *[a for o in reduced_overrides("waymo_dsvt_pillar") for a in ("--set", o)],
            "--set", "dataset.root=/nonexistent/waymo", *args]  # fmt: skip


def test_export_tool_end_to_end(checkpoint, tmp_path, capsys):
    out = tmp_path / "deploy"
    assert export_main(cli("--ckpt", str(checkpoint), "--out", str(out), "--tensorrt")) == 0
    text = capsys.readouterr().out
    assert "synthetic ray-cast Waymo-scale frame" in text
    assert "parts in the ONNX model: voxel_encoder, backbone3d, bev, backbone2d, neck, head" in text
    worst = float(text.split("max |difference| ")[1].split()[0])
    assert worst < 1e-4
    if unavailable_reason() is not None:
        assert f"tensorrt: skipped: {unavailable_reason()}" in text
    assert sorted(p.name for p in out.iterdir()) == ["deploy.json", "model.onnx"]
    spec = json.loads((out / "deploy.json").read_text())
    assert spec["part"] == "points" and spec["layout"]["kind"] == "dsvt" and spec["decode"]["task_sizes"] == [3]
    assert spec["profile"]["frames"] == 1 and spec["profile"]["sizes"]["voxels"]["max"] > 100


def test_export_tool_bad_inputs(checkpoint, tmp_path, capsys):
    # Through the tool's error boundary (tools/export.py): one line on stderr, exit 2.
    out = tmp_path / "x"
    assert run_tool(export_main, cli("--ckpt", str(tmp_path / "missing.pth"), "--out", str(out))) == 2
    assert f"checkpoint {tmp_path / 'missing.pth'}: not found" in capsys.readouterr().err
    assert run_tool(export_main, cli("--ckpt", str(checkpoint), "--out", str(out), "--opset", "9")) == 2
    assert "--opset must be between 17 and 23" in capsys.readouterr().err
    bad = tmp_path / "bad.pth"
    torch.save({"weights": {}}, bad)
    assert run_tool(export_main, cli("--ckpt", str(bad), "--out", str(out))) == 2
    assert f"checkpoint {bad}: no 'model' state dict" in capsys.readouterr().err
    other = tmp_path / "other.pth"
    torch.save({"model": {"head.nothing": torch.zeros(1)}}, other)
    assert run_tool(export_main, cli("--ckpt", str(other), "--out", str(out))) == 2
    err = capsys.readouterr().err
    assert "the weights do not fit the model of" in err and "unexpected keys: head.nothing" in err
    assert not out.exists()


def test_runtime_imports_no_training_code(tmp_path):
    """A fresh interpreter: ``Runtime`` on an export, one frame, and no training module loaded."""
    from pointformer.export import export_onnx

    cfg, model = reduced_model("waymo_flatformer")
    export_onnx(model, cfg, sample_frames("waymo_flatformer")[:1], tmp_path)
    torch.save(sample_frames("waymo_flatformer")[0], tmp_path / "frame.pt")
    code = f"""
import sys, torch
from pointformer.export import Runtime
runtime = Runtime({str(tmp_path)!r}, threads=1)
detections = runtime(torch.load({str(tmp_path / "frame.pt")!r}))
assert len(detections) > 0
training = ("pointformer.engine", "pointformer.runs", "pointformer.data.dataset", "pointformer.data.augment",
            "pointformer.data.gt_sampling", "pointformer.models.heads.losses", "pointformer.models.heads.targets",
            "pointformer.models.heads.center_head", "onnxscript", "tensorrt")
print(sorted(m for m in sys.modules if m.startswith(training)))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_tensorrt_profile_and_skip_reason(monkeypatch):
    """Engine shapes from the size profile (min / margin, median, max * margin); without the
    tensorrt package the reason names it."""
    from pointformer.export.layouts import TensorSpec
    from pointformer.export.spec import DeploySpec

    cfg, model = reduced_model("waymo_flatformer")
    spec = deploy_spec(model, cfg, NetworkGraph(model))
    spec = DeploySpec(**{**spec.__dict__, "profile": {"frames": 3, "sizes": {
        "points": {"min": 100, "opt": 150, "max": 200}, "voxels": {"min": 90, "opt": 120, "max": 160},
        **{f"groups_{o}": {"min": 2, "opt": 3, "max": 4} for o in ("x", "x_shift", "y", "y_shift")}}}})  # fmt: skip
    shapes = engine_shapes(spec)
    assert shapes["points"] == ((66, 5), (150, 5), (300, 5))
    assert shapes["x_group_index"] == ((1, 144), (3, 144), (6, 144))  # groups of 144
    assert isinstance(spec.inputs[0], TensorSpec)
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    assert "tensorrt package is not installed" in unavailable_reason()


def test_deploy_spec_errors_name_the_file(tmp_path):
    from pointformer.export.spec import DeploySpec

    with pytest.raises(FileNotFoundError, match="deploy.json: no deployment spec"):
        DeploySpec.read(tmp_path)
    (tmp_path / "deploy.json").write_text(json.dumps({"format": "pointformer-deploy/1", "part": "points"}))
    with pytest.raises(ValueError, match=r"deploy.json: missing keys \['reason'"):
        DeploySpec.read(tmp_path)


def test_benchmark_export_smoke(capsys):
    """``tools/benchmark.py export`` on the demo config (quick frame, one repeat): six rows (eager,
    fast path, onnxruntime per case) with the onnxruntime difference in the notes."""
    from pointformer.benchmarks.cli import main as benchmark_main

    cfg = "demo/waymo_flatformer_demo.yaml"
    assert benchmark_main(["export", "--quick", "--cfg", cfg, "--repeats", "1", "--warmup", "0"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {cfg}")]
    assert len(rows) == 6 and "PyTorch fast path" in rows[1] and "onnxruntime CPU" in rows[2]
    assert "fast path (tools/test.py path)" in rows[4] and "Runtime (onnxruntime)" in rows[5]
    assert float(rows[2].split("max abs diff ")[1].split()[0]) < 1e-4
