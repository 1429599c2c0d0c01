"""``tools/eval.py nuscenes RESULTS.json --dataroot ROOT --version VERSION --split SPLIT
[--output-dir DIR]``: nuScenes detection metrics of a results JSON, printed as the devkit prints
them, and ``metrics_summary.json`` written into DIR (default: beside the results file)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pointformer.evaluation.nuscenes import evaluate_files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", type=Path, help="the results JSON (nuScenes detection submission format)")
    parser.add_argument("--dataroot", type=Path, required=True, help="nuScenes dataset root (holds VERSION/)")
    parser.add_argument("--version", default="v1.0-trainval", help="table folder, e.g. v1.0-mini (default %(default)s)")
    parser.add_argument("--split", required=True, help="mini_train, mini_val, or a split of VERSION/splits.json")
    parser.add_argument("--output-dir", type=Path, default=None, help="where metrics_summary.json goes "
                        "(default: the results file's folder)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Evaluates, prints the summary, writes ``metrics_summary.json``; bad inputs raise ``InputError``
    subclasses (``NuScenesEvalError``, ``DataFormatError``) that ``tools/eval.py``'s boundary reports."""
    metrics = evaluate_files(args.results, args.dataroot, args.version, args.split)
    print(metrics.summary())
    out_dir = args.output_dir if args.output_dir is not None else Path(args.results).parent
    path = metrics.write_summary(Path(out_dir) / "metrics_summary.json")
    print(f"\nwrote {path}")
    return 0
