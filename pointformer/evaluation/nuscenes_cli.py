"""``tools/eval.py nuscenes RESULTS.json --dataroot ROOT --version VERSION --split SPLIT
[--output-dir DIR]``: nuScenes detection metrics of a results JSON, printed as the devkit prints
them, and ``metrics_summary.json`` written into DIR (default: beside the results file)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from pointformer.evaluation.nuscenes import evaluate, load_inputs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", type=Path, help="the results JSON (nuScenes detection submission format)")
    parser.add_argument("--dataroot", type=Path, required=True, help="nuScenes dataset root (holds VERSION/)")
    parser.add_argument("--version", default="v1.0-trainval", help="table folder, e.g. v1.0-mini (default %(default)s)")
    parser.add_argument("--split", required=True, help="mini_train, mini_val, or a split of VERSION/splits.json")
    parser.add_argument("--output-dir", type=Path, default=None, help="where metrics_summary.json goes "
                        "(default: the results file's folder)")  # fmt: skip
    parser.add_argument("--timings", action="store_true", help="print the seconds of each step to stderr "
                        "(the inputs: tables and results read at the same time; the metrics)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Evaluates, prints the summary, writes ``metrics_summary.json``; bad inputs raise ``InputError``
    subclasses (``NuScenesEvalError``, ``DataFormatError``) or a missing file's ``FileNotFoundError``,
    which ``tools/eval.py``'s error boundary reports (one line on stderr, exit status 2)."""
    t0 = time.perf_counter()
    gt, results, load = load_inputs(args.results, args.dataroot, args.version, args.split)
    t1 = time.perf_counter()
    metrics = evaluate(gt, results)
    t2 = time.perf_counter()
    metrics = dataclasses.replace(metrics, eval_time=t2 - t0)  # as evaluate_files: both loads included
    if args.timings:
        print(f"timings: inputs {t1 - t0:.3f} s, metrics {t2 - t1:.3f} s, tables {load.tables:.3f} s, "
              f"results {load.results:.3f} s", file=sys.stderr)  # fmt: skip
    print(metrics.summary())
    out_dir = args.output_dir if args.output_dir is not None else Path(args.results).parent
    path = metrics.write_summary(Path(out_dir) / "metrics_summary.json")
    print(f"\nwrote {path}")
    return 0
