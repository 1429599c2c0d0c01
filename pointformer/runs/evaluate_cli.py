"""``tools/test.py``: inference with a checkpoint, the official Waymo table or the nuScenes summary
(``eval.metric``), submission files and pictures."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from pointformer.config import load_config
from pointformer.engine.checkpoint import load_model_weights
from pointformer.models import build_detector
from pointformer.ops.cpu_cache import enable_from_env
from pointformer.runs.evaluate import evaluate_model, waymo_frames, write_predictions_json, write_submission
from pointformer.utils.cli import add_debug_argument


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--cfg", required=True, help="config path or name under configs/")
    p.add_argument("--ckpt", required=True, help="checkpoint written by tools/train.py")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--split", default=None, help="split to evaluate (default: dataset.val_split)")
    p.add_argument("--max-frames", type=int, default=None, help="evaluate the first N frames only")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out-dir", type=Path, default=None, help="where metrics.json (and, for nuScenes, the devkit's "
                   "metrics_summary.json), pictures and files go")  # fmt: skip
    p.add_argument("--submission", type=Path, default=None, help="write the predictions as a Waymo Objects .bin, "
                   "or with eval.metric nuscenes as the official nuScenes results JSON")  # fmt: skip
    p.add_argument("--gt-file", type=Path, default=None, help="write the evaluated ground truth as a Waymo .bin "
                   "(Waymo only: nuScenes ground truth is the dataroot's tables)")  # fmt: skip
    p.add_argument("--predictions-json", type=Path, default=None, help="write per-frame predictions as JSON")
    p.add_argument("--render", type=int, default=0, metavar="N", help="render N frames of detections to PNG")
    p.add_argument("--no-progress", action="store_true")
    add_debug_argument(p)
    p.add_argument("--no-fast-path", dest="fast_path", action="store_false",
                   help="run the eager model (default: the eval-mode fast path of the dense stages, folded "
                        "BatchNorm, fused head branches, channels-last; same outputs to float32 rounding)")  # fmt: skip
    return p


def load_weights(model: torch.nn.Module, path: str | Path, config: str | None = None) -> dict:
    """Loads a checkpoint's model weights (``weights_only``: a checkpoint cannot run code); see
    ``pointformer.engine.checkpoint.load_model_weights`` for the errors."""
    return load_model_weights(model, path, config=config)


def main(argv: list[str] | None = None) -> int:
    """Runs the command; bad inputs raise ``InputError`` subclasses (``tools/test.py``'s boundary reports them)."""
    p = parser()
    args = p.parse_args(argv)
    enable_from_env()  # large CPU blocks reused across frames (README 'CPU memory')
    cfg = load_config(args.cfg, args.overrides)
    nuscenes = cfg.eval.metric == "nuscenes"
    if args.gt_file and cfg.eval.metric != "waymo":
        p.error(f"--gt-file writes Waymo ground truth; with eval.metric {cfg.eval.metric} there is none to write"
                + (" (nuScenes ground truth is the dataroot's tables, which tools/eval.py nuscenes reads)"
                   if nuscenes else ""))  # fmt: skip
    if args.submission and cfg.eval.metric == "none":
        p.error("--submission needs eval.metric waymo or nuscenes (--set eval.metric=...)")
    model = build_detector(cfg)
    load_weights(model, args.ckpt, config=cfg.path or cfg.name)
    model.to(args.device)
    progress = not args.no_progress
    result = evaluate_model(model, cfg, args.split, args.device, args.max_frames, progress, args.fast_path)
    for line in result.lines:
        print(line)
    out_dir = args.out_dir
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "metrics.json").write_text(json.dumps(result.scalars, indent=2) + "\n")
        if nuscenes and result.metrics is not None:
            print(f"metrics summary: {result.metrics.write_summary(out_dir / 'metrics_summary.json')}")
    if args.submission and nuscenes:
        from pointformer.evaluation.nuscenes import write_results

        print(f"submission: {write_results(args.submission, result.nuscenes_results)}")
    need_frames = (args.submission and not nuscenes) or args.gt_file or args.render
    if need_frames:
        from pointformer.runs.data import build_dataset

        dataset = build_dataset(cfg, args.split or cfg.data.val_split, training=False)
        frames = waymo_frames(dataset.frames, cfg.grid.point_cloud_range, len(result.predictions))
    if args.submission and not nuscenes:
        print(f"submission: {write_submission(args.submission, frames, result.predictions)}")
    if args.gt_file:
        from pointformer.data.formats.waymo_objects import write_objects
        from pointformer.runs.inference import waymo_ground_truth

        write_objects(args.gt_file, waymo_ground_truth(frames, model.class_names))
        print(f"ground truth: {args.gt_file}")
    if args.predictions_json:
        print(f"predictions: {write_predictions_json(args.predictions_json, result.predictions)}")
    if args.render:
        from pointformer.runs.render import frames_with_boxes, render_detections

        pictures = render_detections(
            cfg.data.root,
            frames_with_boxes(frames, args.render),
            result.predictions,
            (out_dir or Path("outputs")) / "renders",
            point_cloud_range=cfg.grid.point_cloud_range,
        )
        for p in pictures:
            print(f"picture: {p}")
    return 0
