"""``tools/eval.py waymo PRED.bin GT.bin [--json OUT]``: the official Waymo detection metrics of an
``Objects`` prediction file against an ``Objects`` ground-truth file, printed as the official
``compute_detection_metrics_main`` prints them (one ``<breakdown>: [mAP x] [mAPH y]`` line per
breakdown, OBJECT_TYPE then RANGE)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pointformer.data.formats.errors import DataFormatError
from pointformer.data.formats.waymo_objects import read_objects
from pointformer.evaluation.waymo import evaluate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("predictions", type=Path, help="predictions: a waymo.open_dataset.Objects .bin file")
    parser.add_argument("ground_truth", type=Path, help="ground truth: a waymo.open_dataset.Objects .bin file")
    parser.add_argument("--json", type=Path, default=None, help="also write {'<breakdown>/AP': ..., '/APH': ...} here")


def run(args: argparse.Namespace) -> int:
    predictions = read_objects(args.predictions)
    ground_truth = read_objects(args.ground_truth)
    try:
        metrics = evaluate(predictions, ground_truth)
    except DataFormatError as e:  # an input check: name the files
        raise DataFormatError(f"{e} [predictions {args.predictions}, ground truth {args.ground_truth}]") from None
    print(f"{metrics.num_frames} examples found.\n")
    for line in metrics.lines():
        print(line)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(metrics.as_dict(), indent=2) + "\n")
    return 0
