"""``make demo``: synthetic Waymo-format data -> conversion -> FlatFormer training on this machine ->
the official Waymo table -> pictures of detections next to ground truth.

Every step is idempotent: data that exists is reused, a finished training is resumed (nothing
left to do) rather than repeated, and outputs are rewritten.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from pointformer.config import load_config
from pointformer.ops.cpu_cache import enable_from_env
from pointformer.utils.threads import requested_threads

DEFAULT_CONFIG = "demo/waymo_flatformer_demo.yaml"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="The pointformer demo (make demo).")
    p.add_argument("--cfg", default=DEFAULT_CONFIG)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--raw", type=Path, default=Path("data/synthetic_waymo"), help="synthetic Waymo v1 files")
    p.add_argument("--train-sequences", type=int, default=30)
    p.add_argument("--val-sequences", type=int, default=2)
    p.add_argument("--frames", type=int, default=2, help="frames per training sequence")
    p.add_argument("--val-frames", type=int, default=10, help="frames per validation sequence")
    p.add_argument("--work-dir", type=Path, default=Path("work_dirs/demo"))
    p.add_argument("--out", type=Path, default=Path("outputs/demo"))
    p.add_argument("--render", type=int, default=3, help="frames to render")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--threads", default=None, metavar="N|auto",
                   help="CPU intra-op threads (default: POINTFORMER_THREADS, else OMP_NUM_THREADS, else auto: the "
                        "free CPUs, re-checked every few seconds; README 'CPU threads')")  # fmt: skip
    return p


def _has_split(root: Path, split: str) -> bool:
    from pointformer.data.layout import frame_table_path

    return (root / "meta.json").is_file() and frame_table_path(root, split).is_file()


def prepare_data(raw: Path, root: Path, splits: dict[str, tuple[int, int, int]], progress: bool) -> None:
    """Generates (``tools/make_synthetic.py``) and converts (``tools/create_data.py``) the splits
    that ``root`` lacks. ``splits``: split -> (sequences, frames per sequence, first seed)."""
    from pointformer.data.convert import main as create_data
    from pointformer.data.synthetic.cli import main as make_synthetic

    missing = [s for s in splits if not _has_split(root, s)]
    if not missing:
        print(f"[demo] data: {root} has {', '.join(splits)} (reused)")
        return
    for split in missing:
        sequences, frames, seed = splits[split]
        if not any((raw / split).glob("*.tfrecord")):
            print(f"[demo] generating {sequences} x {frames} synthetic Waymo v1 frames for {split} -> {raw}")
            args = ["--format", "waymo-v1", "--frames", str(frames), "--sequences", str(sequences), "--seed",
                    str(seed), "--split", split, "--out", str(raw)]  # fmt: skip
            make_synthetic(args + ([] if progress else ["--no-progress"]))
    print(f"[demo] converting {raw} -> {root}")
    args = ["--dataset", "waymo", "--root", str(raw), "--out", str(root), "--splits", *splits, "--workers", "2"]
    if create_data(args + ([] if progress else ["--no-progress"])) != 0:
        raise RuntimeError("conversion failed")


def loss_curve(work_dir: Path) -> list[tuple[int, float, float, float]]:
    """``(epoch, loss, loss_heatmap, loss_bbox)`` per epoch: the mean of the logged (window-averaged)
    training scalars in ``scalars.jsonl``."""
    by_epoch: dict[int, list[dict]] = {}
    path = work_dir / "scalars.jsonl"
    if not path.is_file():
        return []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if "train/loss" in row:
            by_epoch.setdefault(int(row["epoch"]), []).append(row)
    return [
        (e, *(sum(r.get(f"train/{k}", 0.0) for r in rows) / len(rows) for k in ("loss", "loss_heatmap", "loss_bbox")))
        for e, rows in sorted(by_epoch.items())
    ]


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        requested_threads(args.threads)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    enable_from_env()  # large CPU blocks reused across steps (README 'CPU memory')
    start = time.perf_counter()
    cfg = load_config(args.cfg, args.overrides)
    root = Path(cfg.data.root)
    progress = not args.no_progress
    # Many short training sequences: scenes differ far more between sequences than between the
    # frames of one (0.1 s apart), and diversity is what the model generalises from.
    splits = {
        cfg.data.train_split: (args.train_sequences, args.frames, 0),
        cfg.data.val_split: (args.val_sequences, args.val_frames, 1000),
    }
    prepare_data(args.raw, root, splits, progress)
    t_data = time.perf_counter()

    from pointformer.runs.train import run_training

    print(f"[demo] training {cfg.name} -> {args.work_dir}")
    run_training(cfg, args.work_dir, resume=True, device="cpu", progress=progress, threads=args.threads)
    t_train = time.perf_counter()

    from pointformer.engine import latest_checkpoint
    from pointformer.models import build_detector
    from pointformer.runs.evaluate import evaluate_model, waymo_frames, write_submission
    from pointformer.runs.evaluate_cli import load_weights
    from pointformer.runs.inference import waymo_ground_truth
    from pointformer.runs.render import frames_with_boxes, render_detections

    ckpt = latest_checkpoint(args.work_dir)
    model = build_detector(cfg)
    load_weights(model, ckpt)
    result = evaluate_model(model, cfg, device="cpu", progress=progress)
    t_eval = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    from pointformer.data.formats.waymo_objects import write_objects
    from pointformer.runs.data import build_dataset

    dataset = build_dataset(cfg, cfg.data.val_split, training=False)
    frames = waymo_frames(dataset.frames, cfg.grid.point_cloud_range, len(dataset))
    pred_bin = write_submission(args.out / "predictions.bin", frames, result.predictions)
    gt_bin = args.out / "ground_truth.bin"
    write_objects(gt_bin, waymo_ground_truth(frames, model.class_names))
    (args.out / "metrics.json").write_text(json.dumps(result.scalars, indent=2) + "\n")
    curve = loss_curve(args.work_dir)
    (args.out / "loss_curve.csv").write_text(
        "epoch,loss,loss_heatmap,loss_bbox\n" + "".join(f"{e},{a:.4f},{b:.4f},{c:.4f}\n" for e, a, b, c in curve)
    )
    pictures = render_detections(cfg.data.root, frames_with_boxes(frames, args.render), result.predictions,
                                 args.out / "renders", point_cloud_range=cfg.grid.point_cloud_range)  # fmt: skip
    end = time.perf_counter()

    print(f"\n[demo] Waymo metrics on {len(frames)} synthetic validation frames (boxes within the model's range):")
    for line in result.lines:
        print(line)
    print("\n[demo] training loss by epoch: " + ", ".join(f"{e}: {a:.2f}" for e, a, _, _ in curve))
    print("\n[demo] where everything is:")
    print(f"  converted data      {root}")
    print(f"  checkpoints, logs   {args.work_dir} (TensorBoard: tensorboard --logdir {args.work_dir / 'tensorboard'})")
    print(f"  submission files    {pred_bin}, {gt_bin} (python tools/eval.py waymo {pred_bin} {gt_bin})")
    print(f"  metrics             {args.out / 'metrics.json'}, loss curve {args.out / 'loss_curve.csv'}")
    for p in pictures:
        print(f"  picture             {p}")
    print(f"\n[demo] times: data {t_data - start:.0f} s, training {t_train - t_data:.0f} s, "
          f"evaluation {t_eval - t_train:.0f} s, total {end - start:.0f} s")  # fmt: skip
    return 0
