"""The ``export`` benchmark: onnxruntime against PyTorch on the exported network of each config.

Per config: the detector (random weights from seed 0, BatchNorm and head scale as a trained model's,
see ``calibrated``) is exported with ``pointformer.export.export_onnx`` to a temporary directory,
and on one ray-cast Waymo-scale frame (``pointformer.runs.synthetic_frame.make_frame``) three rows are timed,
interleaved round by round:

* the network in PyTorch (``NetworkGraph`` eager, native ops, the Runtime's inputs);
* the same network on onnxruntime (CPUExecutionProvider; CUDAExecutionProvider with ``--device cuda``);
* the whole ``Runtime`` (voxelize + layouts + onnxruntime + decode + NMS) next to ``model(batch)``
  (the tools/test.py path), both from points to boxes.

The notes give the largest |onnxruntime - PyTorch| over the graph's outputs and the largest output.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from pointformer.benchmarks.core import Report, Row, RunConfig, load_average, load_note, with_speedups
from pointformer.config import load_config
from pointformer.export import NetworkGraph, Runtime, export_onnx
from pointformer.export.onnx_export import torch_outputs
from pointformer.models import build_detector
from pointformer.models.fastpath import fast_inference_copy
from pointformer.runs.synthetic_frame import make_frame

DEFAULT_CONFIGS = ("waymo_flatformer", "waymo_dsvt_pillar", "waymo_dsvt_voxel", "waymo_scatterformer",
                   "waymo_centerpoint")  # fmt: skip


@torch.no_grad()
def calibrated(model: nn.Module, points: torch.Tensor) -> nn.Module:
    """BatchNorm statistics from ``points`` and the regression branches' last convs scaled by 0.1:
    random weights otherwise blow outputs up to hundreds (ScatterFormer), where fp32 rounding alone
    exceeds 1e-4; a trained head's maps are of unit scale."""
    # CenterHead: per task ``heads``; TransFusionHead: one ``prediction_head``.
    towers = [task.heads for task in getattr(model.head, "task_heads", ())]
    towers += [model.head.prediction_head] if hasattr(model.head, "prediction_head") else []
    for heads in towers:
        for name, branch in heads.items():
            if name != "heatmap":
                branch[-1].weight.mul_(0.1)
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
            m.train()
    index = torch.zeros(points.shape[0], dtype=torch.int64, device=points.device)
    voxels = model.voxel_encoder(points, model.voxelize(points, index, 1))
    model.head(model.neck(model.backbone2d(model.bev(model.backbone3d(voxels)))))
    return model.eval()


def run_export(cfg: RunConfig, quick: bool, configs: Sequence[str] = DEFAULT_CONFIGS) -> Report:
    load_before = load_average()
    device = cfg.device.type
    report = Report()
    details = []
    for name in configs:
        conf = load_config(name)
        frame = make_frame(conf, quick, kind="raycast")
        points = frame.batch.points
        torch.manual_seed(0)
        model = calibrated(build_detector(conf), points)
        with tempfile.TemporaryDirectory() as out:
            result = export_onnx(model, conf, [points], out)
            runtime = Runtime(out, device=device, threads=torch.get_num_threads())
            model = model.to(cfg.device)
            graph = NetworkGraph(model).eval()
            fast = fast_inference_copy(model)
            fast_graph = NetworkGraph(fast).eval()
            inputs = runtime.inputs(points)
            args = tuple(inputs[n].to(cfg.device) for n in graph.input_names)
            size = os.path.getsize(Path(out) / "model.onnx") / 2**20

            def torch_net(graph=graph, args=args):
                with torch.no_grad():
                    return graph(*args)

            def fast_net(graph=fast_graph, args=args):
                with torch.no_grad():
                    return graph(*args)

            ours = runtime.run_graph(inputs)
            reference = torch_outputs(model, points.to(cfg.device))
            diff = max(float((o.float() - r.float().cpu()).abs().max()) for o, r in zip(ours, reference, strict=True))
            scale = max(float(r.abs().max()) for r in reference)
            batch = frame.batch.to(cfg.device)

            def torch_pipeline(model=model, batch=batch):
                with torch.no_grad():
                    return model(batch)

            def fast_pipeline(model=fast, batch=batch):
                with torch.no_grad():
                    return model(batch)

            timings = cfg.time_together([torch_net, fast_net, lambda rt=runtime, i=inputs: rt.run_graph(i)])
            provider = "CUDA" if device == "cuda" else "CPU"
            case = f"{name}: network ({result.spec.part} -> head maps)"
            note = f"max abs diff {diff:.1e} (outputs up to {scale:.1f})"
            rows = [Row(case, "PyTorch eager (native ops)", timings[0]),
                    Row(case, "PyTorch fast path (native ops)", timings[1]),
                    Row(case, f"onnxruntime {provider}", timings[2], note)]  # fmt: skip
            report.rows += with_speedups(rows, baseline=0)
            timings = cfg.time_together([torch_pipeline, fast_pipeline, lambda rt=runtime, p=points: rt(p)])
            case = f"{name}: points -> boxes"
            outside = "" if not result.outside else f"{' + '.join(result.outside)} in PyTorch"
            rows = [Row(case, "model(batch), eager", timings[0]),
                    Row(case, "fast path (tools/test.py path)", timings[1]),
                    Row(case, "Runtime (onnxruntime)", timings[2], outside)]  # fmt: skip
            report.rows += with_speedups(rows, baseline=0)
            voxels = inputs["coords"].shape[0]
            details.append(f"{name}: {points.shape[0]} points in range, {voxels} "
                           f"{'voxels' if result.spec.part == 'points' else 'voxels out of the 3D backbone'}, "
                           f"model.onnx {size:.1f} MiB (opset {result.spec.opset})")  # fmt: skip
    threads = torch.get_num_threads()
    report.footnotes += [
        "Weights random from seed 0, BatchNorm statistics from the frame and the regression branches' last convs "
        "scaled by 0.1 (`benchmarks.export.calibrated`), so that the outputs have a trained head's scale.",
        "Frame: one ray-cast synthetic Waymo frame (`make_frame`, five lasers, two returns"
        f"{', an eighth of the azimuth columns (--quick)' if quick else ''}), cropped to each config's range. "
        + "; ".join(details)
        + ".",
        f"PyTorch and onnxruntime on {threads} thread(s) each. 'network' rows time "
        "the graph on the same precomputed inputs; 'points -> boxes' rows include voxelization, the layouts "
        "(native ops), decode and NMS. ScatterFormer and CenterPoint export only their BEV part (spconv has no ONNX "
        "form): their Runtime runs the voxel encoder and 3D backbone in PyTorch.",
        "The exported graph is the fast path's (`export_onnx(fast_path=True)`: BatchNorm folded, the head's "
        "branches as one stacked and one grouped conv, NCHW); 'PyTorch fast path' is "
        "`pointformer.models.fastpath.fast_inference_copy` (also channels-last), what `tools/test.py` runs.",
        "CUDA provider: `--device cuda` (onnxruntime-gpu) times the same rows on the GPU; not measured here (no GPU)."
        if device == "cpu"
        else "CUDA: onnxruntime's CUDAExecutionProvider against PyTorch on CUDA.",
        load_note(load_before),
    ]
    return report
