"""Benchmark: the nuScenes evaluation as a user runs it, ``tools/eval.py nuscenes`` as a whole
process, against a whole process that loads nuscenes-devkit 1.2.0's ``NuScenes`` tables and runs
``DetectionEval`` on the same results file.

Both sides are timed as new processes (interpreter start, imports, loading native code, table and
results parsing, metrics, output), run in turns (devkit, ours, ours, devkit, ...) so that the
load of a shared machine falls on both; each process reports its own split (tables, results,
metrics; the rest of its wall time is start-up: interpreter, imports, output). A first, untimed
round of each comes first (file cache, shown apart).

Input: a keyframes-only nuScenes dataset written straight as the devkit's tables (A.6 of the
formats reference; no point files: neither evaluation reads them): scenes of 10 samples at 2 Hz,
an ego driving along x, ``gt_per_sample`` random boxes of the ten detection classes (and a few
bicycle racks) within 60 m, instances chained over the scene for velocities; predictions: each
ground-truth box perturbed (kept with probability 0.7) plus random boxes up to
``preds_per_sample``. Both evaluations read the same results JSON and split (``splits.json``).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pointformer.benchmarks.core import Report, Row, RunConfig, Timing, with_speedups
from pointformer.data.formats.nuscenes_tables import (
    ATTRIBUTE_NAMES,
    CATEGORY_TO_DETECTION,
    DETECTION_NAMES,
    VISIBILITY_LEVELS,
    yaw_to_quaternion,
)
from pointformer.data.formats.nuscenes_writer import LIDAR_TOP_SENSOR_TOKEN, tiny_png, token
from pointformer.evaluation.nuscenes_results import default_attribute

VERSION = "v1.0-mini"
SPLIT = "bench"
SAMPLES_PER_SCENE = 10
TARGET_SPEEDUP = 10.0
# One general category per detection class (and the rack) for the synthetic annotations.
_CATEGORY = {d: next(c for c, n in CATEGORY_TO_DETECTION.items() if n == d) for d in DETECTION_NAMES}
_RACK = "static_object.bicycle_rack"


@dataclass(frozen=True)
class EvalSizes:
    samples: int
    gt_per_sample: int
    preds_per_sample: int

    @classmethod
    def for_run(cls, quick: bool) -> EvalSizes:
        return cls(50, 40, 400) if quick else cls(1000, 40, 400)


def write_eval_dataset(root: Path, sizes: EvalSizes, seed: int = 0) -> tuple[Path, int, int]:
    """Writes the tables and a results JSON (see the module docstring); returns the results path
    and the numbers of ground-truth and predicted boxes."""
    rng = np.random.default_rng(seed)
    table_root = root / VERSION
    table_root.mkdir(parents=True, exist_ok=True)
    (root / "maps").mkdir(exist_ok=True)
    (root / "maps" / "bench.png").write_bytes(tiny_png())
    cats = {n: token("category", n) for n in [*_CATEGORY.values(), _RACK]}
    attrs = {n: token("attribute", n) for n in ATTRIBUTE_NAMES}
    t: dict[str, list[dict]] = {k: [] for k in ("log", "scene", "sample", "sample_data", "ego_pose", "instance",
                                                "sample_annotation")}  # fmt: skip
    t["category"] = [{"token": tok, "name": n, "description": n} for n, tok in cats.items()]
    t["attribute"] = [{"token": tok, "name": n, "description": n} for n, tok in attrs.items()]
    t["visibility"] = [{"token": k, "level": v, "description": v} for k, v in VISIBILITY_LEVELS.items()]
    t["sensor"] = [{"token": LIDAR_TOP_SENSOR_TOKEN, "channel": "LIDAR_TOP", "modality": "lidar"}]
    t["calibrated_sensor"] = [{"token": token("cs"), "sensor_token": LIDAR_TOP_SENSOR_TOKEN,
                               "translation": [0.94, 0.0, 1.84], "rotation": [0.7071, 0, 0, -0.7071],
                               "camera_intrinsic": []}]  # fmt: skip
    results: dict[str, list[dict]] = {}
    scene_names, n_gt = [], 0
    num_scenes = math.ceil(sizes.samples / SAMPLES_PER_SCENE)
    for sc in range(num_scenes):
        log, scene = token("log", sc), token("scene", sc)
        t["log"].append({"token": log, "logfile": f"bench-{sc}", "vehicle": "v", "date_captured": "2018-01-01",
                         "location": "bench"})  # fmt: skip
        n = min(SAMPLES_PER_SCENE, sizes.samples - sc * SAMPLES_PER_SCENE)
        samples = [token("sample", sc, k) for k in range(n)]
        name = f"scene-{3000 + sc}"
        scene_names.append(name)
        t["scene"].append({"token": scene, "name": name, "description": "", "log_token": log, "nbr_samples": n,
                           "first_sample_token": samples[0], "last_sample_token": samples[-1]})  # fmt: skip
        # Objects of the scene: class, start position, velocity, size, yaw.
        m = sizes.gt_per_sample
        cls = rng.integers(len(DETECTION_NAMES), size=m)
        pos0 = rng.uniform(-50, 50, (m, 2)) + [20.0, 0.0]
        vel = rng.normal(0, 2, (m, 2)) * (rng.random((m, 1)) < 0.5)
        size = rng.uniform(0.5, 5.0, (m, 3))
        yaw = rng.uniform(-math.pi, math.pi, m)
        inst = [token("instance", sc, j) for j in range(m)]
        prev_ann: dict[int, dict] = {}
        for k, s_tok in enumerate(samples):
            ts = 1_500_000_000_000_000 + sc * 100_000_000 + k * 500_000
            ego = np.array([10.0 * k * 0.5, 0.0])
            sd = token("sd", sc, k)
            t["sample"].append({"token": s_tok, "timestamp": ts, "scene_token": scene,
                                "prev": samples[k - 1] if k else "",
                                "next": samples[k + 1] if k + 1 < n else ""})  # fmt: skip
            t["ego_pose"].append({"token": sd, "timestamp": ts, "translation": [*ego.tolist(), 0.0],
                                  "rotation": [1.0, 0.0, 0.0, 0.0]})  # fmt: skip
            t["sample_data"].append({"token": sd, "sample_token": s_tok, "ego_pose_token": sd,
                                     "calibrated_sensor_token": token("cs"),
                                     "filename": f"samples/LIDAR_TOP/{sd}.pcd.bin",
                                     "fileformat": "pcd", "width": 0, "height": 0, "timestamp": ts,
                                     "is_key_frame": True, "prev": token("sd", sc, k - 1) if k else "",
                                     "next": token("sd", sc, k + 1) if k + 1 < n else ""})  # fmt: skip
            pos = pos0 + vel * 0.5 * k
            preds = []
            for j in range(m):
                name_j = DETECTION_NAMES[cls[j]]
                attr = default_attribute(name_j, vel[j])
                ann = {"token": token("ann", sc, k, j), "sample_token": s_tok, "instance_token": inst[j],
                       "visibility_token": "4", "attribute_tokens": [attrs[attr]] if attr else [],
                       "translation": [*pos[j].tolist(), 1.0], "size": size[j].tolist(),
                       "rotation": yaw_to_quaternion(yaw[j]).tolist(), "prev": "", "next": "",
                       "num_lidar_pts": int(rng.integers(0, 50)), "num_radar_pts": 0}  # fmt: skip
                if j in prev_ann:
                    prev_ann[j]["next"], ann["prev"] = ann["token"], prev_ann[j]["token"]
                prev_ann[j] = ann
                t["sample_annotation"].append(ann)
                n_gt += 1
                if rng.random() < 0.7:
                    v = (vel[j] + rng.normal(0, 0.3, 2)).tolist()
                    preds.append({"sample_token": s_tok,
                                  "translation": (np.array(ann["translation"]) + rng.normal(0, 0.4, 3)).tolist(),
                                  "size": (size[j] * np.exp(rng.normal(0, 0.1, 3))).tolist(),
                                  "rotation": yaw_to_quaternion(yaw[j] + rng.normal(0, 0.2)).tolist(),
                                  "velocity": v, "detection_name": name_j,
                                  "detection_score": float(rng.uniform(0.3, 1.0)),
                                  "attribute_name": default_attribute(name_j, v)})  # fmt: skip
            # A bicycle rack per sample, somewhere in the scene.
            rack = {"token": token("rack", sc, k), "sample_token": s_tok, "instance_token": token("rack-inst", sc, k),
                    "visibility_token": "4", "attribute_tokens": [],
                    "translation": [*(ego + rng.uniform(-30, 30, 2)).tolist(), 1.0], "size": [3.0, 6.0, 2.0],
                    "rotation": yaw_to_quaternion(rng.uniform(-math.pi, math.pi)).tolist(), "prev": "", "next": "",
                    "num_lidar_pts": 10, "num_radar_pts": 0}  # fmt: skip
            t["instance"].append({"token": rack["instance_token"], "category_token": cats[_RACK],
                                  "nbr_annotations": 1, "first_annotation_token": rack["token"],
                                  "last_annotation_token": rack["token"]})  # fmt: skip
            t["sample_annotation"].append(rack)
            while len(preds) < sizes.preds_per_sample:
                name_j = DETECTION_NAMES[rng.integers(len(DETECTION_NAMES))]
                v = rng.normal(0, 2, 2).tolist()
                preds.append({"sample_token": s_tok,
                              "translation": [*(ego + rng.uniform(-55, 55, 2)).tolist(), 1.0],
                              "size": rng.uniform(0.5, 5.0, 3).tolist(),
                              "rotation": yaw_to_quaternion(rng.uniform(-math.pi, math.pi)).tolist(),
                              "velocity": v, "detection_name": name_j, "detection_score": float(rng.random() * 0.6),
                              "attribute_name": default_attribute(name_j, v)})  # fmt: skip
            results[s_tok] = preds[: sizes.preds_per_sample]
        for j in range(m):
            chain = [a for a in t["sample_annotation"][-(m + 1) * n :] if a["instance_token"] == inst[j]]
            t["instance"].append({"token": inst[j], "category_token": cats[_CATEGORY[DETECTION_NAMES[cls[j]]]],
                                  "nbr_annotations": len(chain), "first_annotation_token": chain[0]["token"],
                                  "last_annotation_token": chain[-1]["token"]})  # fmt: skip
    t["map"] = [{"token": token("map"), "log_tokens": [r["token"] for r in t["log"]], "category": "semantic_prior",
                 "filename": "maps/bench.png"}]  # fmt: skip
    for name, records in t.items():
        (table_root / f"{name}.json").write_text(json.dumps(records))
    (table_root / "splits.json").write_text(json.dumps({SPLIT: scene_names}))
    path = root / "results.json"
    meta = {"use_camera": False, "use_lidar": True, "use_radar": False, "use_map": False, "use_external": False}
    path.write_text(json.dumps({"meta": meta, "results": results}))
    return path, n_gt, sum(len(v) for v in results.values())


# The devkit side: one process, as a devkit user evaluates (tables, DetectionEval, evaluate); it
# prints its split and the serialized metrics as JSON on its last line.
DEVKIT_SCRIPT = """
import json, sys, time
t0 = time.perf_counter()
from nuscenes import NuScenes
from nuscenes.eval.detection.config import config_factory
from nuscenes.eval.detection.evaluate import DetectionEval
root, results, out, version, split = sys.argv[1:6]
t1 = time.perf_counter()
nusc = NuScenes(version=version, dataroot=root, verbose=False)
t2 = time.perf_counter()
ev = DetectionEval(nusc, config_factory("detection_cvpr_2019"), results, eval_set=split, output_dir=out, verbose=False)
t3 = time.perf_counter()
metrics = ev.evaluate()[0].serialize()
t4 = time.perf_counter()
split_s = {"imports": t1 - t0, "tables": t2 - t1, "results": t3 - t2, "metrics": t4 - t3}
print(json.dumps({"split": split_s, "metrics": metrics}))
"""
ROOT = Path(__file__).resolve().parents[2]
PHASES = ("tables", "results", "metrics")


@dataclass(frozen=True)
class ProcessRun:
    """One whole-process evaluation: wall seconds, its own split (seconds per phase), the metrics."""

    wall_s: float
    split: dict[str, float]
    metrics: dict


def _run(command: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return wall, proc


def run_devkit(root: Path, results: Path, out: Path) -> ProcessRun:
    wall, proc = _run([sys.executable, "-c", DEVKIT_SCRIPT, str(root), str(results), str(out), VERSION, SPLIT])
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return ProcessRun(wall, data["split"], data["metrics"])


def run_ours(root: Path, results: Path, out: Path) -> ProcessRun:
    command = [sys.executable, str(ROOT / "tools" / "eval.py"), "nuscenes", str(results), "--dataroot", str(root),
               "--version", VERSION, "--split", SPLIT, "--output-dir", str(out), "--timings"]  # fmt: skip
    wall, proc = _run(command)
    line = next(x for x in proc.stderr.splitlines() if x.startswith("timings: "))
    split = {}
    for part in line.removeprefix("timings: ").split(", "):
        name, seconds, _ = part.split(" ")
        split[name] = float(seconds)
    metrics = json.loads((out / "metrics_summary.json").read_text())
    return ProcessRun(wall, split, metrics)


def devkit_available() -> str:
    """'' when nuscenes-devkit imports, else why not."""
    try:
        import nuscenes.eval.detection.evaluate  # noqa: F401
    except ImportError as e:
        return f"nuscenes-devkit not installed ({e.name})"
    return ""


def metrics_difference(ours: dict, theirs: dict) -> float:
    """Largest absolute difference over mAP, NDS, per-class APs and TP errors (NaN equal to NaN)."""
    pairs = [(ours["mean_ap"], theirs["mean_ap"]), (ours["nd_score"], theirs["nd_score"])]
    for c, per in theirs["label_aps"].items():
        pairs += [(ours["label_aps"][c][d], v) for d, v in per.items()]
    for c, per in theirs["label_tp_errors"].items():
        pairs += [(ours["label_tp_errors"][c][k], v) for k, v in per.items()]
    worst = 0.0
    for a, b in pairs:
        if a is None or b is None or (math.isnan(a) and math.isnan(b)):
            if (a is None) != (b is None):
                return math.inf
            continue
        worst = max(worst, abs(a - b))
    return worst


def _timing(runs: list[ProcessRun]) -> Timing:
    walls = [r.wall_s * 1e3 for r in runs]
    return Timing(statistics.median(walls), min(walls), len(walls))


def _split_note(runs: list[ProcessRun]) -> str:
    """Median seconds per phase, and the rest of the wall time (start-up: interpreter, imports,
    output). Ours reads the tables and the results at the same time: its ``inputs`` phase is the
    wall time of both, shown with each one's own time."""
    if "inputs" in runs[0].split:
        med = {k: statistics.median(r.split[k] for r in runs) for k in ("inputs", "tables", "results", "metrics")}
        rest = statistics.median(r.wall_s - r.split["inputs"] - r.split["metrics"] for r in runs)
        return (f"start-up {rest:.2f} s, inputs {med['inputs']:.2f} s (tables {med['tables']:.2f} s and results "
                f"{med['results']:.2f} s at the same time), metrics {med['metrics']:.2f} s")  # fmt: skip
    med = {k: statistics.median(r.split.get(k, 0.0) for r in runs) for k in PHASES}
    rest = statistics.median(r.wall_s - sum(r.split.get(k, 0.0) for k in PHASES) for r in runs)
    return f"start-up {rest:.2f} s, " + ", ".join(f"{k} {v:.2f} s" for k, v in med.items())


def nuscenes_eval_report(cfg: RunConfig, quick: bool) -> Report:
    """``tools/eval.py nuscenes`` against the devkit, both as whole processes, in turns. CPU only."""
    sizes = EvalSizes.for_run(quick)
    report = Report()
    rounds = 1 if quick else max(1, min(cfg.repeats, 5))
    with tempfile.TemporaryDirectory(prefix="pointformer_bench_eval_nusc_") as folder:
        root = Path(folder)
        results, n_gt, n_pred = write_eval_dataset(root, sizes)
        case = f"nuScenes eval {sizes.samples} samples x {sizes.preds_per_sample} preds ({n_gt} GT), whole process"
        why = devkit_available()
        out_ours, out_devkit = root / "ours_out", root / "devkit_out"
        loads = [os.getloadavg()[0]]
        size_mb = results.stat().st_size / 1e6
        first_ours = run_ours(root, results, out_ours) if cfg.warmup else None
        first_devkit = run_devkit(root, results, out_devkit) if cfg.warmup and not why else None
        ours_runs: list[ProcessRun] = []
        devkit_runs: list[ProcessRun] = []
        ratios = []
        for r in range(rounds):
            loads.append(os.getloadavg()[0])
            order = (0, 1) if r % 2 == 0 else (1, 0)  # devkit first, then ours first, ...
            pair: dict[int, ProcessRun] = {}
            for side in order:
                if side == 0 and not why:
                    pair[0] = run_devkit(root, results, out_devkit)
                elif side == 1:
                    pair[1] = run_ours(root, results, out_ours)
            ours_runs.append(pair[1])
            if 0 in pair:
                devkit_runs.append(pair[0])
                ratios.append(pair[0].wall_s / pair[1].wall_s)
        loads.append(os.getloadavg()[0])
    devkit_timing = _timing(devkit_runs) if devkit_runs else None
    rows = [
        Row(case, "nuscenes-devkit 1.2.0: NuScenes tables + DetectionEval", devkit_timing,
            _split_note(devkit_runs) if devkit_runs else why),
        Row(case, "pointformer: tools/eval.py nuscenes", _timing(ours_runs), _split_note(ours_runs)),
    ]  # fmt: skip
    report.rows += with_speedups(rows, 0)
    ours_m = ours_runs[-1].metrics
    if devkit_runs:
        diff = metrics_difference(ours_m, devkit_runs[-1].metrics)
        x = rows[0].timing.median_ms / rows[1].timing.median_ms
        agree = (f"NDS {ours_m['nd_score']:.6f} / devkit {devkit_runs[-1].metrics['nd_score']:.6f}, mAP "
                 f"{ours_m['mean_ap']:.6f}; largest |difference| over mAP, NDS, every class AP and TP error "
                 f"{diff:.1e} ({'equal to 1e-6' if diff <= 1e-6 else 'NOT equal'})")  # fmt: skip
        speed = (f"Whole process: speedup {x:.1f}x (median wall / median wall; per round "
                 f"{min(ratios):.1f}x-{max(ratios):.1f}x), target >= {TARGET_SPEEDUP:g}x "
                 f"{'met' if x >= TARGET_SPEEDUP else 'NOT met'}.")  # fmt: skip
    else:
        agree, speed = f"NDS {ours_m['nd_score']:.6f} (devkit not run: {why})", ""
    first = []
    if first_ours is not None:
        first.append(f"ours {first_ours.wall_s:.2f} s")
    if first_devkit is not None:
        first.append(f"devkit {first_devkit.wall_s:.2f} s")
    report.footnotes += [
        f"Inputs: synthetic keyframes-only nuScenes tables ({sizes.samples} samples, {n_gt} ground-truth boxes of "
        f"the ten classes, a bicycle rack per sample) and {n_pred} predictions (perturbed ground truth plus random "
        f"boxes) in one results JSON ({size_mb:.0f} MB); custom split via splits.json; both read the same "
        "files.",
        "Whole processes, as a user runs them: `python tools/eval.py nuscenes RESULTS --dataroot ROOT --version "
        f"{VERSION} --split {SPLIT}` (which imports no torch) against `python -c` loading `NuScenes(...)` and running "
        f"`DetectionEval(...).evaluate()`; {rounds} round(s) in turns (devkit first in even rounds, ours first in odd "
        "ones), after an untimed first round" + (f" ({', '.join(first)})" if first else "") + ". Notes give each "
        "side's median split as the process measured it; start-up is the rest of the wall time (interpreter, "
        "imports, output).",
        f"{speed} {agree}.",
        f"Load average (1 min) on {os.cpu_count()} cores during the nuScenes rows: "
        f"{', '.join(f'{v:.1f}' for v in loads)} (before, at each round, after): other work on the machine slows "
        "both tools and moves the ratio from run to run.",
    ]
    return report
