"""``tools/export.py``: a trained detector -> ONNX model + ``deploy.json`` (+ a TensorRT engine).

The frames that trace the graph and give the size profile (min / median / max voxels and groups)
are the first ``--frames`` frames of the config's validation split when it is converted, else one
ray-cast synthetic Waymo-scale frame (said in the output). After writing, the tool runs the export
on onnxruntime against the PyTorch model on the first frame and prints the largest difference.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from pointformer.config import load_config
from pointformer.engine.checkpoint import load_model_weights
from pointformer.ops.cpu_cache import enable_from_env
from pointformer.utils.cli import add_debug_argument
from pointformer.utils.errors import InputError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Export a detector to ONNX for deployment (tools/export.py).")
    p.add_argument("--cfg", required=True, help="config path, or a name under configs/")
    p.add_argument("--ckpt", required=True, type=Path, help="checkpoint written by tools/train.py")
    p.add_argument("--out", required=True, type=Path, help="output directory (model.onnx, deploy.json, ...)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (as for tools/train.py)")  # fmt: skip
    p.add_argument("--fp16", action="store_true", help="export weights and float inputs in float16")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset, 17-23 (default: the exporter's)")
    p.add_argument("--frames", type=int, default=8, help="frames of the validation split measured (default 8)")
    p.add_argument("--split", default=None, help="split the frames come from (default: dataset.val_split)")
    p.add_argument("--tensorrt", action="store_true", help="also build a TensorRT engine (needs tensorrt and a GPU)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime-vs-PyTorch check")
    add_debug_argument(p)
    return p


class ExportError(InputError):
    """A bad input the tool reports as ``error: ...`` (exit status 2)."""


def load_weights(model: torch.nn.Module, path: Path, config: str | None = None) -> None:
    """The checkpoint's model weights (``weights_only=True``); ``CheckpointError`` names the file
    (``pointformer.engine.checkpoint.load_model_weights``, the loader of every command)."""
    load_model_weights(model, path, config=config)


def example_frames(cfg, count: int, split: str | None) -> tuple[list[torch.Tensor], str]:
    """Point frames for tracing and the size profile, and where they come from."""
    from pointformer.runs.data import DatasetMissingError, build_dataset

    split = split or cfg.data.val_split
    try:
        dataset = build_dataset(cfg, split, training=False)
    except DatasetMissingError:
        from pointformer.runs.synthetic_frame import make_frame

        frame = make_frame(cfg, quick=False, kind="raycast")
        return [frame.batch.points], (f"one synthetic ray-cast Waymo-scale frame (no converted {split!r} split "
                                      f"under {cfg.data.root})")  # fmt: skip
    n = min(count, len(dataset))
    if n == 0:
        raise ExportError(f"split {split!r} under {cfg.data.root} has no frames")
    frames = [torch.from_numpy(dataset[i].points) for i in range(n)]
    return frames, f"the first {n} frames of {cfg.data.root} {split!r}"


def main(argv: list[str] | None = None) -> int:
    """Runs the command; bad inputs raise ``InputError`` subclasses (``tools/export.py``'s boundary reports them)."""
    return _run(parser().parse_args(argv))


def _run(args: argparse.Namespace) -> int:
    enable_from_env()  # large CPU blocks reused across the checks' forwards (README 'CPU memory')
    from pointformer.export.onnx_export import (
        FP16_TOLERANCE,
        export_onnx,
        import_onnx_exporter,
        max_abs_difference,
        max_relative_difference,
    )
    from pointformer.models import build_detector

    if args.opset is not None and not 17 <= args.opset <= 23:
        raise ExportError(f"--opset must be between 17 and 23 (the dynamo exporter's range), got {args.opset}")
    if args.frames < 1:
        raise ExportError(f"--frames must be >= 1, got {args.frames}")
    try:
        import_onnx_exporter()
    except ImportError as e:  # a missing optional dependency: the message says what to install
        raise ExportError(str(e)) from e
    cfg = load_config(args.cfg, args.overrides)
    model = build_detector(cfg)
    load_weights(model, args.ckpt, config=cfg.path or cfg.name)
    model.eval()
    frames, source = example_frames(cfg, args.frames, args.split)
    print(f"frames: {source}")
    result = export_onnx(model, cfg, frames, args.out, fp16=args.fp16, opset=args.opset,
                         source={"config": cfg.path or cfg.name, "checkpoint": str(args.ckpt)})  # fmt: skip
    spec = result.spec
    print(f"graph: {spec.part} -> head maps; parts in the ONNX model: {', '.join(result.in_graph)}")
    if result.outside:
        print(f"NOT EXPORTED (run by pointformer.export.Runtime in PyTorch, weights in prefix.pt): "
              f"{', '.join(result.outside)}: {spec.reason}")  # fmt: skip
    model_file = args.out / "model.onnx"
    print(f"wrote {model_file} ({model_file.stat().st_size / 2**20:.1f} MiB, opset {spec.opset}, {spec.precision}), "
          f"{args.out / 'deploy.json'}" + (f", {args.out / 'prefix.pt'}" if result.outside else ""))  # fmt: skip
    sizes = ", ".join(f"{k} {v['min']}/{v['opt']}/{v['max']}" for k, v in spec.profile["sizes"].items())
    print(f"size profile (min/median/max over {spec.profile['frames']} frames): {sizes}")
    if not args.no_check:
        from pointformer.export.runtime import Runtime

        if args.fp16:
            # float16 rounding scales with the values: relative to each output's largest |value|.
            diffs = max_relative_difference(Runtime(args.out), model, frames[0])
            measure, tolerance = "max |difference| / max |PyTorch|", FP16_TOLERANCE
        else:
            diffs = max_abs_difference(Runtime(args.out), model, frames[0])
            measure, tolerance = "max |difference|", 1e-4
        worst = max(diffs.values())
        print(f"check, onnxruntime (CPU) vs PyTorch on the first frame: {measure} {worst:.3g} "
              f"({', '.join(f'{k} {v:.2g}' for k, v in diffs.items())})")  # fmt: skip
        if worst > tolerance:
            print(f"WARNING: the difference exceeds {tolerance:g}: do not deploy this export unchecked")
    if args.tensorrt:
        from pointformer.export.tensorrt import build_engine, unavailable_reason

        reason = unavailable_reason()
        if reason is not None:
            print(f"tensorrt: skipped: {reason}")
        else:
            print(f"tensorrt: wrote {build_engine(args.out, fp16=args.fp16)}")
    return 0
