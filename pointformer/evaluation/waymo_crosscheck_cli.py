"""``tools/crosscheck_waymo.py``: pointformer's Waymo metrics against the official TF op on
generated cases (``make crosscheck-waymo``), or on a pair of ``Objects`` files.

The official op runs in its own environment (TensorFlow 2.13, numpy < 2) as a subprocess,
``tools/waymo_official_op.py``, on a cases file this side writes; this side evaluates the same
cases with ``pointformer.evaluation.waymo`` and compares every breakdown and cutoff.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from pointformer.data.formats.waymo_objects import WaymoObjects, read_objects
from pointformer.evaluation.waymo import BREAKDOWN_NAMES, evaluate
from pointformer.evaluation.waymo_crosscheck import (
    KINDS,
    Case,
    compare,
    evaluate_case,
    generate_cases,
    write_cases,
)

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "tools" / "waymo_official_op.py"
# The regression set's official outputs (no precision arrays: the test rebuilds them from the counts).
REGRESSION_KEYS = ("ap", "aph", "tp", "fp", "fn", "sum_ha", "names")


def run_official(python: str, cases: list[Case], workdir: Path) -> dict[str, np.ndarray]:
    """The official op's outputs on ``cases`` (``tools/waymo_official_op.py`` under ``python``)."""
    cases_path, out_path = workdir / "cases.npz", workdir / "official.npz"
    write_cases(cases_path, cases)
    proc = subprocess.run([python, str(RUNNER), str(cases_path), str(out_path)], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"the official op failed (exit {proc.returncode}):\n{tail}")
    with np.load(out_path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def case_from_objects(predictions: WaymoObjects, ground_truth: WaymoObjects) -> Case:
    """One case from two ``Objects`` files: frames numbered in the official tool's key order
    (``"<context>_<camera>"``, timestamp); boxes rounded to float32 as the op reads them."""

    def keys(o: WaymoObjects) -> list[tuple[str, int]]:
        return [
            (f"{c}_{k}", int(t))
            for c, k, t in zip(o.context_names, o.camera_names.tolist(), o.frame_timestamps_micros, strict=True)
        ]

    pd_keys, gt_keys = keys(predictions), keys(ground_truth)
    index = {k: i for i, k in enumerate(sorted(set(pd_keys) | set(gt_keys)))}
    pd = {
        "boxes": predictions.boxes.astype(np.float32),
        "types": predictions.types.astype(np.uint8),
        "scores": predictions.scores.astype(np.float32),
        "frames": np.asarray([index[k] for k in pd_keys], np.int64),
        "nlz": predictions.overlap_with_nlz.astype(bool),
    }
    gt = {
        "boxes": ground_truth.boxes.astype(np.float32),
        "types": ground_truth.types.astype(np.uint8),
        "frames": np.asarray([index[k] for k in gt_keys], np.int64),
        "points": ground_truth.num_lidar_points_in_box.astype(np.int32),
        "difficulty": ground_truth.detection_difficulty.astype(np.uint8),
    }
    return Case("objects", 0, pd, gt)


def save_regression(path: Path, cases: list[Case], official: dict[str, np.ndarray], per_kind: int) -> int:
    """Writes the first ``per_kind`` cases of each kind with the op's counts, sums and APs."""
    chosen, seen = [], Counter()
    for c, case in enumerate(cases):
        if seen[case.kind] < per_kind:
            seen[case.kind] += 1
            chosen.append(c)
    pr = official["pr"][chosen]
    extra = {
        "ap": official["ap"][chosen],
        "aph": official["aph"][chosen],
        "tp": pr[..., 2].astype(np.int32),
        "fp": pr[..., 3].astype(np.int32),
        "fn": pr[..., 4].astype(np.int32),
        "sum_ha": official["sum_ha"][chosen].astype(np.float32),
        "names": np.asarray(official["names"], np.str_),
    }
    write_cases(path, [cases[c] for c in chosen], **extra)
    return len(chosen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-python", required=True, help="python of the environment with the official op")
    parser.add_argument("--cases", type=int, default=600, help="generated cases (default %(default)s)")
    parser.add_argument("--first-seed", type=int, default=0, help="seed of the first case (default %(default)s)")
    parser.add_argument("--tolerance", type=float, default=1e-6, help="largest allowed difference (default 1e-6)")
    parser.add_argument("--objects", nargs=2, type=Path, metavar=("PRED.bin", "GT.bin"),
                        help="compare on these Objects files instead of generated cases")  # fmt: skip
    parser.add_argument("--save-regression", type=Path, default=None,
                        help="write the first --per-kind cases of each kind with the op's outputs here")  # fmt: skip
    parser.add_argument("--per-kind", type=int, default=5, help="cases per kind in the regression set")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    if args.objects is not None:
        cases = [case_from_objects(read_objects(args.objects[0]), read_objects(args.objects[1]))]
    else:
        cases = generate_cases(range(args.first_seed, args.first_seed + args.cases))
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pointformer_crosscheck_") as folder:
        official = run_official(args.official_python, cases, Path(folder))
    t2 = time.perf_counter()
    ours = [evaluate_case(c) for c in cases]
    differences, worst = compare(cases, official, args.tolerance, ours)
    t3 = time.perf_counter()
    kinds = Counter(c.kind for c in cases)
    print(f"{len(cases)} cases ({', '.join(f'{k} {kinds[k]}' for k in (*KINDS, 'objects') if kinds[k])}); "
          f"{sum(len(c.pd['types']) for c in cases)} predictions, {sum(len(c.gt['types']) for c in cases)} "
          "ground-truth objects")  # fmt: skip
    print(f"generate {t1 - t0:.1f} s, official op {t2 - t1:.1f} s, pointformer + compare {t3 - t2:.1f} s")
    if args.objects is not None:
        # The official tool's lines (the op on float32 boxes) beside pointformer's on the files as read.
        exact = evaluate(read_objects(args.objects[0]), read_objects(args.objects[1]))
        for b, name in enumerate(BREAKDOWN_NAMES):
            print(f"{name}: official [mAP {official['ap'][0, b]:.6g}] [mAPH {official['aph'][0, b]:.6g}]  "
                  f"pointformer [mAP {exact.ap[b]:.6g}] [mAPH {exact.aph[b]:.6g}]")  # fmt: skip
    for d in differences:
        print(f"DIFFERENT {d}")
    print(f"largest difference over every case, breakdown and cutoff: {worst:.3g} (tolerance {args.tolerance:g})")
    if args.save_regression is not None:
        n = save_regression(args.save_regression, cases, official, args.per_kind)
        print(f"wrote {n} cases with the official outputs to {args.save_regression} "
              f"({args.save_regression.stat().st_size / 1024:.0f} KiB)")  # fmt: skip
    if differences:
        print(f"{len(differences)} differences larger than {args.tolerance:g}", file=sys.stderr)
        return 1
    print("pointformer equals the official op on every case")
    return 0
